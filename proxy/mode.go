package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Mode is how control connections reach ftpgate and how it finds their server.
type Mode string

// Modes.
const (
	// ModeReverse: clients connect to ftpgate; every session goes to Upstream.
	ModeReverse Mode = "reverse"
	// ModeRedirect: forwarded connections are caught by an nftables redirect;
	// the server is the original destination (SO_ORIGINAL_DST).
	ModeRedirect Mode = "redirect"
	// ModeTProxy: forwarded connections are caught by nftables tproxy on an
	// IP_TRANSPARENT listener; the server is the connection's local address.
	ModeTProxy Mode = "tproxy"
)

// Transparent reports whether the mode intercepts connections addressed to
// servers (as opposed to clients addressing ftpgate).
func (m Mode) Transparent() bool { return m == ModeRedirect || m == ModeTProxy }

// AddrSource yields an address of the asked family, perhaps one that changes
// (an interface's current address, a re-resolved name).
type AddrSource interface {
	Addr(v6 bool) (netip.Addr, bool)
}

// StaticAddr is an AddrSource of one fixed address.
type StaticAddr netip.Addr

// Addr returns the address if it is of the asked family.
func (a StaticAddr) Addr(v6 bool) (netip.Addr, bool) {
	ad := netip.Addr(a).Unmap()
	return ad, ad.IsValid() && ad.Is6() == v6
}

// String returns the address.
func (a StaticAddr) String() string { return netip.Addr(a).String() }

// Hooks are the kernel helpers the transparent modes need. cmd fills them
// from package nat; tests may fake them. Nil hooks are not used.
type Hooks struct {
	// OriginalDst returns where a redirected connection was addressed.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// ListenControl sets socket options on control listeners (IP_TRANSPARENT
	// in tproxy mode).
	ListenControl func(network, address string, c syscall.RawConn) error
	// DialControl sets socket options on connections ftpgate opens to servers
	// (the loop-guard mark).
	DialControl func(network, address string, c syscall.RawConn) error
	// TransparentDialControl is DialControl for connections that leave from
	// a non-local address (tproxy with PreserveClientAddress).
	TransparentDialControl func(network, address string, c syscall.RawConn) error
	// LocalToward returns this host's address toward peer (a route lookup).
	LocalToward func(peer netip.Addr) (netip.Addr, error)
	// IsLocal reports whether addr is one of this host's addresses.
	IsLocal func(addr netip.Addr) bool
}

// listenNetwork picks tcp4 or tcp6 for a literal IP address, so that an
// IPv6 wildcard listener does not also take IPv4 (tproxy needs one listener
// per family), and plain tcp for names.
func listenNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "tcp"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "tcp"
	}
	if ip.Is4() {
		return "tcp4"
	}
	return "tcp6"
}

// target decides which server a new session goes to.
func (s *session) target() (string, error) {
	cfg := &s.srv.cfg
	var dst netip.AddrPort
	switch cfg.Mode {
	case ModeReverse, "":
		return cfg.Upstream, nil
	case ModeRedirect:
		if cfg.Hooks.OriginalDst == nil {
			return "", fmt.Errorf("redirect mode without an original-destination lookup")
		}
		var err error
		dst, err = cfg.Hooks.OriginalDst(s.ctl.client)
		if err != nil {
			return "", fmt.Errorf("original destination: %w", err)
		}
	case ModeTProxy:
		dst = s.clientLocal
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if s.isSelf(dst) {
		return "", errLoop
	}
	if d := cfg.Policy.Destination(dst); !d.Allow {
		return "", &destinationError{dst: dst, reason: d.Reason}
	}
	return dst.String(), nil
}

// isSelf reports whether dst is one of ftpgate's own control listeners: a
// client that connected to the proxy port directly, whose "original
// destination" is the listener itself.
func (s *session) isSelf(dst netip.AddrPort) bool {
	if dst == s.clientLocal && s.srv.cfg.Mode == ModeRedirect {
		return true // not redirected at all
	}
	for _, lp := range s.srv.Addrs() {
		if lp.Port() != dst.Port() {
			continue
		}
		if lp.Addr() == dst.Addr() || lp.Addr().IsUnspecified() && s.isLocal(dst.Addr()) {
			return true
		}
	}
	return false
}

func (s *session) isLocal(a netip.Addr) bool {
	if h := s.srv.cfg.Hooks.IsLocal; h != nil {
		return h(a)
	}
	return a.IsLoopback()
}
