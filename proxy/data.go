package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/zap"
)

// pinhole is a firewall pinhole this process opened, or none.
type pinhole struct {
	p    nat.Pinhole
	open bool
}

// expectData reserves a data port on ip for one connection from peer,
// arriving from hop (peer itself, or the balancer in front of it).
func (s *Server) expectData(ctx context.Context, ip, peer, hop netip.Addr) (*dataListener, error) {
	dl, err := s.hub.expect(ctx, ip, peer)
	if err != nil {
		return nil, fmt.Errorf("data port on %s for %s: %w", ip, peer, err)
	}
	dl.hop = hop.Unmap()
	return dl, nil
}

// pinFor opens the pinhole that admits the expected peer to this listener
// (and, in the transparent modes, diverts its connection here).
func (s *Server) pinFor(ctx context.Context, dl *dataListener) error {
	p := nat.Pinhole{Peer: dl.hop, Local: dl.addr, Intercept: dl.divert}
	if err := s.openPinhole(ctx, p); err != nil {
		return err
	}
	dl.pin = pinhole{p: p, open: true}
	return nil
}

// unpin closes the pinhole, if open.
func (s *Server) unpin(ctx context.Context, dl *dataListener, log *zap.Logger) {
	if dl != nil && dl.pin.open {
		dl.pin.open = false
		s.closePinhole(ctx, dl.pin.p, log)
	}
}

// closeData ends the expectation and closes its pinhole; nil is fine.
func (s *Server) closeData(ctx context.Context, dl *dataListener, log *zap.Logger) {
	if dl == nil {
		return
	}
	s.unpin(ctx, dl, log)
	s.hub.release(dl)
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
