// Package policy decides what a session may do: which data-connection targets a
// client may name (FTP bounce protection) and which peers may open a data
// connection. Its functions are pure: they look only at the configuration and
// the facts handed in, and never do I/O.
package policy

import (
	"fmt"
	"net/netip"
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
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	for _, p := range c.TrustedDataSources {
		if !p.IsValid() {
			return fmt.Errorf("trusted data source %v is not a valid network", p)
		}
	}
	return nil
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
