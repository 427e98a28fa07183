package proxy

import (
	"net"
	"net/netip"
)

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
