// Package policy decides what a session may do: which data-connection targets a
// client may name (FTP bounce protection) and which peers may open a data
// connection. Its functions are pure: they look only at the configuration and
// the facts handed in, and never do I/O.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// MinActivePort is the lowest port a client may name in PORT, EPRT or LPRT
// unless Config.AllowLowActivePorts is set (RFC 2577 §3).
const MinActivePort = 1024

// Config is the operator's policy. The zero value is the safe default: active
// targets must be the client itself on a port >= 1024, and data connections
// are accepted only from the control connection's peer.
type Config struct {
	// AllowLowActivePorts lets PORT/EPRT/LPRT name ports below 1024.
	AllowLowActivePorts bool
	// TrustedDataSources are networks (for example a load balancer that
	// rewrites source addresses) whose data connections are accepted for any
	// session, in addition to the session's own peer. This is a weaker check.
	TrustedDataSources []netip.Prefix

	// AllowDestinations, when not empty, are the only networks whose
	// servers may be reached; DenyDestinations are never reached, even when
	// an allow entry covers them. DestinationPorts, when not empty, are the
	// only server ports that may be reached. They matter in the transparent
	// modes, where the client names the server.
	AllowDestinations []netip.Prefix
	DenyDestinations  []netip.Prefix
	DestinationPorts  []uint16
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	for _, list := range []struct {
		name string
		ps   []netip.Prefix
	}{{"trusted data source", c.TrustedDataSources}, {"allowed destination", c.AllowDestinations},
		{"denied destination", c.DenyDestinations}} {
		for _, p := range list.ps {
			if !p.IsValid() {
				return fmt.Errorf("%s %v is not a valid network", list.name, p)
			}
		}
	}
	for _, p := range c.DestinationPorts {
		if p == 0 {
			return fmt.Errorf("destination port 0 is not a valid port")
		}
	}
	return nil
}

// Destination decides whether a session may reach the server at dst.
func (c Config) Destination(dst netip.AddrPort) Decision {
	addr := dst.Addr().Unmap()
	for _, p := range c.DenyDestinations {
		if p.Contains(addr) {
			return deny("destination %s is in denied network %s", addr, p)
		}
	}
	if len(c.AllowDestinations) > 0 {
		allowed := false
		for _, p := range c.AllowDestinations {
			if p.Contains(addr) {
				allowed = true
				break
			}
		}
		if !allowed {
			return deny("destination %s is outside the allowed networks", addr)
		}
	}
	if len(c.DestinationPorts) > 0 && !slices.Contains(c.DestinationPorts, dst.Port()) {
		return deny("destination port %d is not an allowed FTP port", dst.Port())
	}
	return allow()
}

// Decision is the answer to one question, with a reason fit for a log line
// and an FTP reply.
type Decision struct {
	Allow  bool
	Reason string
}

func allow() Decision { return Decision{Allow: true} }

func deny(format string, args ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, args...)}
}

// ActiveTarget decides whether a client whose control connection comes from
// peer may ask for an active data connection to target.
func (c Config) ActiveTarget(peer netip.Addr, target netip.AddrPort) Decision {
	peer, addr := peer.Unmap(), target.Addr().Unmap()
	if addr != peer {
		return deny("data address %s is not the client's own address %s (FTP bounce)", addr, peer)
	}
	if target.Port() < MinActivePort && !c.AllowLowActivePorts {
		return deny("data port %d is below %d (FTP bounce)", target.Port(), MinActivePort)
	}
	return allow()
}

// DataPeer decides whether a data connection from `from` may serve a session
// whose expected peer is want (the control connection's peer, or the server).
func (c Config) DataPeer(want, from netip.Addr) Decision {
	want, from = want.Unmap(), from.Unmap()
	if from == want {
		return allow()
	}
	for _, p := range c.TrustedDataSources {
		if p.Contains(from) {
			return Decision{Allow: true, Reason: fmt.Sprintf("trusted data source %s", p)}
		}
	}
	return deny("data connection from %s, expected %s", from, want)
}
