package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/zap"
)

// dataListener is a listening socket for one expected data connection, with
// the pinhole that admits its peer.
type dataListener struct {
	ln     *net.TCPListener
	addr   netip.AddrPort
	divert netip.AddrPort // the address the peer will connect to, when the firewall diverts it here
	pin    nat.Pinhole
	pinned bool
}

// listenData opens a listener on ip with a port picked at random among the
// free ones of the configured range.
func (s *Server) listenData(ip netip.Addr) (*dataListener, error) {
	r := s.cfg.PassivePorts
	if r.Lo == 0 {
		return s.listenDataPort(ip, 0)
	}
	n := int(r.Hi) - int(r.Lo) + 1
	start := rand.IntN(n)
	for i := range n {
		port := uint16(int(r.Lo) + (start+i)%n)
		dl, err := s.listenDataPort(ip, port)
		if err == nil {
			return dl, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free data port on %s in %d-%d", ip, r.Lo, r.Hi)
}

func (s *Server) listenDataPort(ip netip.Addr, port uint16) (*dataListener, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	if err != nil {
		return nil, err
	}
	s.lns.Add(1)
	return &dataListener{ln: ln, addr: addrPortOf(ln.Addr())}, nil
}

// pinFor opens the pinhole that admits peer to this listener.
func (s *Server) pinFor(ctx context.Context, dl *dataListener, peer netip.Addr) error {
	dl.pin = nat.Pinhole{Peer: peer, Local: dl.addr, Intercept: dl.divert}
	if err := s.openPinhole(ctx, dl.pin); err != nil {
		return err
	}
	dl.pinned = true
	return nil
}

// unpin closes the pinhole, if open.
func (s *Server) unpin(ctx context.Context, dl *dataListener, log *zap.Logger) {
	if dl != nil && dl.pinned {
		dl.pinned = false
		s.closePinhole(ctx, dl.pin, log)
	}
}

// closeData closes the listener and its pinhole; nil is fine.
func (s *Server) closeData(ctx context.Context, dl *dataListener, log *zap.Logger) {
	if dl == nil {
		return
	}
	s.unpin(ctx, dl, log)
	if dl.ln != nil {
		dl.ln.Close()
		dl.ln = nil
		s.lns.Add(-1)
	}
}

// errDataTimeout means the expected data connection did not arrive in time.
var errDataTimeout = errors.New("data connection did not arrive in time")

// accept waits for a data connection from want until the deadline. Any other
// peer is logged and closed, and the wait goes on.
func (s *Server) accept(ctx context.Context, dl *dataListener, want netip.Addr, deadline time.Time, log *zap.Logger) (*net.TCPConn, error) {
	dl.ln.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { dl.ln.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		c, err := dl.ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errDataTimeout
			}
			return nil, err
		}
		from := addrPortOf(c.RemoteAddr())
		if d := s.cfg.Policy.DataPeer(want, from.Addr()); !d.Allow {
			log.Warn("data connection refused", zap.Stringer("from", from), zap.Stringer("want", want),
				zap.Stringer("listener", dl.addr), zap.String("reason", d.Reason))
			c.Close()
			continue
		} else if d.Reason != "" {
			log.Info("data connection from trusted source", zap.Stringer("from", from), zap.String("reason", d.Reason))
		}
		return c, nil
	}
}

// dial opens a data connection to target from our local address src
// (invalid: the kernel's choice). transparent allows a non-local src.
func (s *Server) dial(ctx context.Context, src netip.Addr, target netip.AddrPort, transparent bool) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: -1, Control: s.cfg.Hooks.DialControl}
	if transparent {
		d.Control = s.cfg.Hooks.TransparentDialControl
	}
	if src.IsValid() && src.Is4() == target.Addr().Is4() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// relayResult is what one relay reports when its source is drained.
type relayResult struct {
	n   int64
	err error
}

// relayData copies src to dst until src ends, then half-closes dst so the
// receiver sees end-of-file. Both are *net.TCPConn, so io.Copy splices in the
// kernel; the byte count comes from io.Copy itself.
func relayData(dst, src *net.TCPConn, done chan<- relayResult) {
	n, err := io.Copy(dst, src)
	if cerr := dst.CloseWrite(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	done <- relayResult{n: n, err: err}
}

// upstreamSource is the configured source address toward upstream
// ("host:port" or "ip:port"), or invalid for the kernel's choice.
func (s *Server) upstreamSource(upstream string) netip.Addr {
	if s.cfg.UpstreamSource == nil {
		return netip.Addr{}
	}
	v6 := false
	if ap, err := netip.ParseAddrPort(upstream); err == nil {
		v6 = ap.Addr().Unmap().Is6()
	}
	a, ok := s.cfg.UpstreamSource.Addr(v6)
	if !ok {
		return netip.Addr{}
	}
	return a
}

// addrPortOf turns a net.Addr of a TCP socket into an unmapped AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
