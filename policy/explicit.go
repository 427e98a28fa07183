package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// FTPPort is the port an explicit-mode destination gets when the client
// names none, and the only port allowed there unless
// Config.DestinationPorts says otherwise.
const FTPPort = 21

// ExplicitDestination decides whether an explicit-mode session may reach
// the server its client named: host as the client gave it (for the reason
// text), addrs what it resolved to (once per session; an IP literal is its
// own single address), port as given (0: FTPPort).
//
// The rules are those of Destination, with DestinationPorts defaulting to
// FTPPort alone, and two more that always hold: the gateway itself (the
// address and port the client connected to, f.ListenerAddr) is never a
// destination, and neither is a loopback, unspecified, link-local or
// multicast address unless an AllowDestinations entry names it explicitly.
// Every address must pass: a name that resolves to one denied address is
// refused whole, so that a DNS answer cannot put a denied address next to
// an allowed one. No addresses is a denial too. A denial is 530 (the reply
// to the USER, OPEN or SITE that named the server, as ProFTPD mod_proxy
// answers) with the Rule that decided; when allowed, dial addrs in order.
func (c Config) ExplicitDestination(f SessionFacts, host string, addrs []netip.Addr, port uint16) Decision {
	if port == 0 {
		port = FTPPort
	}
	name := printable(host, 80)
	if len(addrs) == 0 {
		return refuse("explicit.resolve", 530, "Unable to connect to "+name+": no address.",
			fmt.Sprintf("destination %q resolved to no address", name))
	}
	if len(c.DestinationPorts) == 0 {
		c.DestinationPorts = []uint16{FTPPort}
	}
	for _, a := range addrs {
		a = a.Unmap()
		dst := netip.AddrPortFrom(a, port)
		d := Decision{Allow: true}
		switch {
		case f.ListenerAddr.IsValid() && a == f.ListenerAddr.Addr().Unmap() && port == f.ListenerAddr.Port():
			d = deny("destination %s is the gateway itself", dst)
			d.Rule = "explicit.self"
		case special(a) && !c.allowsExplicitly(a):
			d = deny("destination %s is a loopback, link-local, multicast or unspecified address", dst)
			d.Rule = "explicit.special_address"
		default:
			d = c.Destination(dst)
		}
		if !d.Allow {
			if a.String() != host {
				d.Reason = fmt.Sprintf("%s (%q resolved to %s)", d.Reason, name, a)
			}
			d.Code, d.Text = 530, "Unable to connect to "+name+": destination not allowed."
			return d
		}
	}
	return allow()
}

func special(a netip.Addr) bool {
	return a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// allowsExplicitly reports whether an AllowDestinations entry other than a
// catch-all (0.0.0.0/0, ::/0) covers a.
func (c Config) allowsExplicitly(a netip.Addr) bool {
	return slices.ContainsFunc(c.AllowDestinations, func(p netip.Prefix) bool { return p.Bits() > 0 && p.Contains(a) })
}
