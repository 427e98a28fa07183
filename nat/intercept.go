package nat

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// InterceptMode selects how forwarded FTP control connections reach
// ftpgate on a router (the transparent edge gateway).
type InterceptMode string

const (
	// InterceptNone: ftpgate installs no interception rules.
	InterceptNone InterceptMode = ""
	// InterceptRedirect: a nat prerouting rule redirects caught
	// connections to ListenPort on the address of the incoming interface;
	// the proxy learns the original destination with OriginalDst.
	InterceptRedirect InterceptMode = "redirect"
	// InterceptTProxy: a mangle prerouting rule hands caught connections
	// to a listener with IP_TRANSPARENT (SocketOptions.Transparent) on
	// ListenPort, whose accepted connections' local address is the
	// original destination. A policy-routing rule (fwmark TProxyMark
	// lookup RouteTable) and a local default route in RouteTable deliver
	// the marked packets locally; ftpgate adds both at New and removes
	// them at Shutdown.
	InterceptTProxy InterceptMode = "tproxy"
)

// Defaults of the Intercept fields whose zero value means "default".
const (
	// DefaultInterceptPort is the destination port caught when
	// Intercept.Ports is empty.
	DefaultInterceptPort uint16 = 21
	// DefaultLoopMark is the SO_MARK of ftpgate's own outgoing sockets
	// ("FT"): the output-hook interception never catches them.
	DefaultLoopMark uint32 = 0x4654
	// DefaultTProxyMark is the fwmark that routes tproxy'd packets to the
	// local host.
	DefaultTProxyMark uint32 = 0x4655
	// DefaultRouteTable is the routing table that holds tproxy's local
	// default route.
	DefaultRouteTable = 2121
)

// Intercept says which forwarded connections ftpgate catches and where
// they go. Its rules live in the owned table inet ftpgate in own-table and
// external-set mode (in external-set mode that table holds only the
// interception chains and the divert maps; pinhole elements still go to
// the operator's sets). With firewall mode none the operator installs
// interception rules; Validate rejects an Intercept there.
//
// A connection is caught when all of these hold: its destination port is
// in Ports; it came in on one of Interfaces (if any); its source lies in
// one of Sources (if any; a family without any source prefix is never
// caught); its destination is not an address of this host (fib daddr
// type local) and lies in none of Exclude. Interfaces and Sources apply
// to forwarded traffic only; the output hook (Output) checks the loop
// mark, the local-destination test, Exclude and Ports.
type Intercept struct {
	Mode       InterceptMode
	ListenPort uint16         // ftpgate's control listener port (redirect to :ListenPort / tproxy to :ListenPort)
	Ports      []uint16       // destination ports caught; empty means DefaultInterceptPort (21)
	Interfaces []string       // incoming interfaces (iifname, exact names); empty means any
	Sources    []netip.Prefix // source networks; empty means any
	Exclude    []netip.Prefix // destinations never caught; this host's own addresses are always excluded
	Output     bool           // redirect mode: also catch this host's own outgoing connections (output hook)
	LoopMark   uint32         // SO_MARK on ftpgate's own outgoing sockets; zero means DefaultLoopMark
	TProxyMark uint32         // fwmark for tproxy policy routing; zero means DefaultTProxyMark
	RouteTable int            // routing table for tproxy's local route; zero means DefaultRouteTable
}

// Enabled reports whether i asks for interception rules.
func (i Intercept) Enabled() bool { return i.Mode != InterceptNone }

// withDefaults returns i with every zero field that has a default filled
// in (only when a mode is set).
func (i Intercept) withDefaults() Intercept {
	if !i.Enabled() {
		return i
	}
	if len(i.Ports) == 0 {
		i.Ports = []uint16{DefaultInterceptPort}
	}
	if i.LoopMark == 0 {
		i.LoopMark = DefaultLoopMark
	}
	if i.Mode == InterceptTProxy {
		if i.TProxyMark == 0 {
			i.TProxyMark = DefaultTProxyMark
		}
		if i.RouteTable == 0 {
			i.RouteTable = DefaultRouteTable
		}
	}
	return i
}

// validate reports the first thing wrong with i, given the firewall mode.
func (i Intercept) validate(fw FirewallMode) error {
	switch i.Mode {
	case InterceptNone:
		if i.ListenPort != 0 || len(i.Ports) > 0 || len(i.Interfaces) > 0 || len(i.Sources) > 0 ||
			len(i.Exclude) > 0 || i.Output || i.LoopMark != 0 || i.TProxyMark != 0 || i.RouteTable != 0 {
			return fmt.Errorf("intercept settings given without an intercept mode: set mode %s or %s, or remove them",
				InterceptRedirect, InterceptTProxy)
		}
		return nil
	case InterceptRedirect, InterceptTProxy:
	default:
		return fmt.Errorf("intercept mode %q: want %q or %q (or empty for none)", i.Mode, InterceptRedirect, InterceptTProxy)
	}
	if fw == ModeNone {
		return fmt.Errorf("intercept mode %s with firewall mode %s: ftpgate changes no kernel state in mode %s, "+
			"so install the %s rules yourself (examples in deploy/firewall/) and leave the intercept mode empty, "+
			"or use firewall mode %s or %s", i.Mode, ModeNone, ModeNone, i.Mode, ModeOwnTable, ModeExternalSet)
	}
	if i.ListenPort == 0 {
		return fmt.Errorf("intercept mode %s needs the listen port of ftpgate's control listener", i.Mode)
	}
	for j, p := range i.Ports {
		if p == 0 {
			return fmt.Errorf("intercept port %d: port 0 is not a port", j+1)
		}
		if slices.Contains(i.Ports[:j], p) {
			return fmt.Errorf("intercept port %d is listed twice", p)
		}
	}
	for j, name := range i.Interfaces {
		if err := validateIfName(name); err != nil {
			return fmt.Errorf("intercept interface %q: %w", name, err)
		}
		if slices.Contains(i.Interfaces[:j], name) {
			return fmt.Errorf("intercept interface %q is listed twice", name)
		}
	}
	if err := validatePrefixes("intercept source", i.Sources); err != nil {
		return err
	}
	if err := validatePrefixes("intercept exclude", i.Exclude); err != nil {
		return err
	}
	if i.Output && i.Mode != InterceptRedirect {
		return fmt.Errorf("intercept output needs intercept mode %s: tproxy works only on forwarded (prerouting) traffic",
			InterceptRedirect)
	}
	if i.Mode != InterceptTProxy {
		if i.TProxyMark != 0 {
			return fmt.Errorf("intercept tproxy mark %#x: only used with intercept mode %s", i.TProxyMark, InterceptTProxy)
		}
		if i.RouteTable != 0 {
			return fmt.Errorf("intercept route table %d: only used with intercept mode %s", i.RouteTable, InterceptTProxy)
		}
		return nil
	}
	switch d := i.withDefaults(); {
	case d.RouteTable < 0 || int64(d.RouteTable) > 0xffffffff:
		return fmt.Errorf("intercept route table %d: want 1 to 4294967295 (0 means %d)", i.RouteTable, DefaultRouteTable)
	case d.RouteTable >= 253 && d.RouteTable <= 255:
		return fmt.Errorf("intercept route table %d is one of the kernel's (default, main, local): pick a table of ftpgate's own",
			i.RouteTable)
	case d.LoopMark == d.TProxyMark:
		return fmt.Errorf("intercept loop mark and tproxy mark are both %#x: ftpgate's own sockets would be routed to itself",
			d.LoopMark)
	}
	return nil
}

// validateIfName accepts what Linux accepts as an interface name
// (dev_valid_name) and nft can print in quotes.
func validateIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty interface name")
	case len(s) > 15:
		return fmt.Errorf("longer than 15 bytes")
	case s == "." || s == "..":
		return fmt.Errorf("not an interface name")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r > 0x7e || strings.ContainsRune(`/:"'\*`, r) {
			return fmt.Errorf("character %q is not allowed in an interface name (wildcards are not supported)", r)
		}
	}
	return nil
}

func validatePrefixes(what string, ps []netip.Prefix) error {
	for _, p := range ps {
		switch {
		case !p.IsValid():
			return fmt.Errorf("%s %s: not a valid prefix", what, p)
		case p.Addr().Is4In6():
			return fmt.Errorf("%s %s: write IPv4-mapped networks in IPv4 form", what, p)
		case p.Masked() != p:
			return fmt.Errorf("%s %s has host bits set: write %s", what, p, p.Masked())
		}
	}
	return nil
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ first, last netip.Addr }

// mergePrefixes returns the prefixes of one family (v6 or not) as sorted,
// non-overlapping, non-adjacent ranges: what an nftables interval set
// holds.
func mergePrefixes(ps []netip.Prefix, v6 bool) []addrRange {
	var rs []addrRange
	for _, p := range ps {
		if p.Addr().Is6() != v6 {
			continue
		}
		p = p.Masked()
		rs = append(rs, addrRange{first: p.Addr(), last: lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int {
		return cmp.Or(a.first.Compare(b.first), a.last.Compare(b.last))
	})
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			next := prev.last.Next()
			if !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(prev.last) > 0 {
					prev.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// lastAddr returns the last address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
