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
// reads never go past the end of the current TLS record, so that after the
// peer's close_notify (CCC) whatever the peer sends next in clear text is
// still in the socket for the clear-text reader. crypto/tls alone reads
// ahead into its own buffer. It costs two reads per record, which control
// traffic does not notice; data connections do not use it.
type recordConn struct {
	net.Conn
	hdr  [recordHeaderLen]byte
	nhdr int // header bytes read of the current record
	left int // body bytes still to read of the current record
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.nhdr < recordHeaderLen {
		n, err := c.Conn.Read(p[:min(len(p), recordHeaderLen-c.nhdr)])
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
	n, err := c.Conn.Read(p[:min(len(p), c.left)])
	c.left -= n
	if c.left == 0 {
		c.nhdr = 0
	}
	return n, err
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
// cannot, and is copied here in user space.
func relay(dst, src net.Conn, done chan<- relayResult) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			relayData(d, s, done)
			return
		}
	}
	relayStream(dst, src, done)
}

// relayStream is relayData for TLS legs. Every TLS data leg ends with a
// close_notify: dst's after the copy, and src's too, so a server that waits
// for one in both directions is not left waiting.
func relayStream(dst, src net.Conn, done chan<- relayResult) {
	n, err := io.Copy(dst, src)
	if cerr := closeWrite(dst); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	if t, ok := src.(*tls.Conn); ok {
		_ = t.CloseWrite() // best effort: the copy is over
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
