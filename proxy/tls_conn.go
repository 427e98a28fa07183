package proxy

import (
	"crypto/tls"
	"errors"
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

// closeWrite ends the write side of a data leg: close_notify and then a TCP
// half-close for a TLS leg, a half-close for a plain one.
func closeWrite(c net.Conn) error {
	switch c := c.(type) {
	case *tls.Conn:
		err := c.CloseWrite()
		if tc, ok := c.NetConn().(*net.TCPConn); ok {
			if cerr := tc.CloseWrite(); err == nil {
				err = cerr
			}
		}
		return err
	case *net.TCPConn:
		return c.CloseWrite()
	}
	return nil
}

// relay copies src to dst until src ends, then closes dst's write side. Two
// plain legs go through relayData, which splices in the kernel; a TLS leg
// cannot, and is copied here in user space. toServer says that dst is the
// server's leg (an upload).
func relay(dst, src net.Conn, toServer bool, done chan<- relayResult) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			relayData(d, s, done)
			return
		}
	}
	relayStream(dst, src, toServer, done)
}

// drainTimeout bounds how long a protected upload waits for the server to
// close its data connection after ftpgate's close_notify.
const drainTimeout = 10 * time.Second

// relayStream is relayData for TLS legs. Every TLS data leg ends with a
// close_notify: dst's after the copy, and src's too, so a peer that waits
// for one in both directions is not left waiting.
//
// On an upload the server's TLS connection is read until the server closes
// it. A TLS 1.3 server sends session tickets that nobody reads while ftpgate
// only writes, and closing a socket with unread data resets the connection
// at once, dropping the end of the upload still queued for the server.
func relayStream(dst, src net.Conn, drainDst bool, done chan<- relayResult) {
	n, err := io.Copy(dst, src)
	if cerr := closeWrite(dst); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	if t, ok := src.(*tls.Conn); ok {
		_ = t.CloseWrite() // best effort: the copy is over
	}
	if t, ok := dst.(*tls.Conn); ok && drainDst && err == nil {
		t.SetReadDeadline(time.Now().Add(drainTimeout))
		_, _ = io.Copy(io.Discard, t) // until the server's close_notify or close
	}
	done <- relayResult{n: n, err: err}
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
