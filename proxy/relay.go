package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// The relay: once both data legs are up, bytes flow from one to the other
// until the source ends. Two plain legs are *net.TCPConn and io.Copy splices
// them in the kernel (no wrapper may hide ReadFrom/WriteTo, or the copy falls
// back to user space); a TLS leg is copied in user space.

// relayResult is what one relay reports when its source is drained.
type relayResult struct {
	n   int64
	err error
}

// relay copies src to dst until src ends, then closes dst's write side. Two
// plain legs go through relayData, which splices in the kernel; a TLS leg
// cannot, and is copied here in user space. toServer says that dst is the
// server's leg (an upload).
// limit, when positive, cuts the copy after that many bytes (an upload size
// cap): a source with more to send ends the relay with errOverLimit.
func relay(dst, src net.Conn, toServer bool, limit int64, done chan<- relayResult) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			relayData(d, s, limit, done)
			return
		}
	}
	relayStream(dst, src, toServer, limit, done)
}

// copyCapped is io.Copy that stops after limit bytes (limit <= 0: none). An
// *io.LimitedReader over a *net.TCPConn still splices. When limit bytes have
// come, one more byte is read to tell "exactly the limit" (EOF) from "more"
// (errOverLimit); that byte is not passed on.
func copyCapped(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	if limit <= 0 {
		return io.Copy(dst, src)
	}
	n, err := io.Copy(dst, &io.LimitedReader{R: src, N: limit})
	if err != nil || n < limit {
		return n, err
	}
	var b [1]byte
	m, rerr := src.Read(b[:])
	switch {
	case m > 0:
		return n, errOverLimit
	case errors.Is(rerr, io.EOF):
		return n, nil
	}
	return n, rerr
}

// relayData copies src to dst until src ends, then half-closes dst so the
// receiver sees end-of-file (endWrite). Both are *net.TCPConn, so io.Copy
// splices in the kernel; the byte count comes from io.Copy itself.
func relayData(dst, src *net.TCPConn, limit int64, done chan<- relayResult) {
	n, err := copyCapped(dst, src, limit)
	done <- relayResult{n: n, err: endWrite(dst, err)}
}

// endWrite ends dst's side of a data connection once the copy into it ended
// with err: a half-close after a complete copy, so that the receiver sees
// end-of-file; a reset when the source broke (a reset, a timeout) or an
// upload went over its size cap, so that the receiver knows the data is
// incomplete, as it would without ftpgate between. A leg the session closed
// (ABOR, a stalled transfer cut) is the session's to end. It returns the
// error the relay reports.
func endWrite(dst net.Conn, err error) error {
	if errors.Is(err, net.ErrClosed) {
		return err
	}
	if err != nil {
		// SO_LINGER 0: the close sends a reset, not a FIN.
		if t, ok := dst.(*tls.Conn); ok {
			dst = t.NetConn()
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		dst.Close()
		return err
	}
	if cerr := closeWrite(dst); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return cerr
	}
	return nil
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
func relayStream(dst, src net.Conn, drainDst bool, limit int64, done chan<- relayResult) {
	n, err := copyCapped(dst, src, limit)
	if err = endWrite(dst, err); err != nil {
		done <- relayResult{n: n, err: err}
		return
	}
	if t, ok := src.(*tls.Conn); ok {
		_ = t.CloseWrite() // best effort: the copy is over
	}
	if t, ok := dst.(*tls.Conn); ok && drainDst {
		t.SetReadDeadline(time.Now().Add(drainTimeout))
		_, _ = io.Copy(io.Discard, t) // until the server's close_notify or close
	}
	done <- relayResult{n: n, err: err}
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
