package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// recordHeaderLen is the length of a TLS record header: type, version,
// length.
const recordHeaderLen = 5

// recordConn is the connection under a control channel's TLS layer. Its
// reads never go past the end of the current TLS record, so that after CCC
// whatever the peer sends in clear text is still in the socket for the
// clear-text reader. crypto/tls alone reads ahead into its own buffer. It
// costs two reads per record, which control traffic does not notice; data
// connections do not use it.
type recordConn struct {
	net.Conn
	hdr    [recordHeaderLen]byte
	nhdr   int    // header bytes read of the current record
	left   int    // body bytes still to read of the current record
	peeked []byte // read from the socket by peek, not yet by Read
	clear  bool   // past the TLS records: reads pass through
}

func (c *recordConn) Read(p []byte) (int, error) {
	if !c.clear {
		limit := c.left
		if c.nhdr < recordHeaderLen {
			limit = recordHeaderLen - c.nhdr
		}
		p = p[:min(len(p), limit)]
	}
	var n int
	var err error
	if len(c.peeked) > 0 {
		n = copy(p, c.peeked)
		c.peeked = c.peeked[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if c.clear {
		return n, err
	}
	if c.nhdr < recordHeaderLen {
		copy(c.hdr[c.nhdr:], p[:n])
		c.nhdr += n
		if c.nhdr == recordHeaderLen {
			c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
			if c.left == 0 {
				c.nhdr = 0
			}
		}
		return n, err
	}
	c.left -= n
	if c.left == 0 {
		c.nhdr = 0
	}
	return n, err
}

// peek returns the next byte without consuming it.
func (c *recordConn) peek() (byte, error) {
	if len(c.peeked) == 0 {
		var b [1]byte
		if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
			return 0, err
		}
		c.peeked = b[:]
	}
	return c.peeked[0], nil
}

// cccConn is what the client reader reads after CCC: the client's
// close_notify if it sends one, then clear text. RFC 4217 has both sides
// exchange close_notify, but curl by default (--ftp-ssl-ccc-mode passive)
// only reads ftpgate's and goes on in clear text, so the first byte decides:
// a TLS record type (20 to 23; TLS 1.3 sends its alerts as application data)
// or the start of a command.
type cccConn struct {
	*recordConn
	tls     *tls.Conn
	checked bool
}

func (c *cccConn) Read(p []byte) (int, error) {
	if !c.checked {
		b, err := c.recordConn.peek()
		if err != nil {
			return 0, err
		}
		if b >= 20 && b <= 23 {
			if err := awaitCloseNotify(c.tls); err != nil {
				return 0, fmt.Errorf("after CCC: %w", err)
			}
		}
		c.checked, c.recordConn.clear = true, true
	}
	return c.recordConn.Read(p)
}

// handshakeDeadline sets a deadline on c for one handshake and returns the
// function that lifts it.
func handshakeDeadline(c net.Conn, d time.Duration) func() {
	c.SetDeadline(time.Now().Add(d))
	return func() { c.SetDeadline(time.Time{}) }
}

// tlsState is what a log record says about one TLS connection.
type tlsState struct {
	version, cipher, alpn string
	resumed               bool
}

func stateOf(cs tls.ConnectionState) *tlsState {
	return &tlsState{
		version: tls.VersionName(cs.Version),
		cipher:  tls.CipherSuiteName(cs.CipherSuite),
		alpn:    cs.NegotiatedProtocol,
		resumed: cs.DidResume,
	}
}

// MarshalLogObject writes the state as a nested log object.
func (t *tlsState) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("version", t.version)
	enc.AddString("cipher", t.cipher)
	if t.alpn != "" {
		enc.AddString("alpn", t.alpn)
	}
	enc.AddBool("resumed", t.resumed)
	return nil
}

func (t *tlsState) String() string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("%s %s", t.version, t.cipher)
}

// tlsField logs a leg's TLS state under key, or "none" for a clear leg.
func tlsField(key string, t *tlsState) zap.Field {
	if t == nil {
		return zap.String(key, "none")
	}
	return zap.Object(key, t)
}
