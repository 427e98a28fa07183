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
	AllowLowActivePorts bool `yaml:"allow_low_active_ports"`
	// TrustedDataSources are networks (for example a load balancer that
	// rewrites source addresses) whose data connections are accepted for any
	// session, in addition to the session's own peer. This is a weaker check.
	TrustedDataSources []netip.Prefix `yaml:"trusted_data_sources"`

	// AllowDestinations, when not empty, are the only networks whose
	// servers may be reached; DenyDestinations are never reached, even when
	// an allow entry covers them. DestinationPorts, when not empty, are the
	// only server ports that may be reached. They matter in the transparent
	// and explicit modes, where the client names the server; in explicit
	// mode an empty DestinationPorts means port 21 only (see
	// ExplicitDestination).
	AllowDestinations []netip.Prefix `yaml:"allow_destinations"`
	DenyDestinations  []netip.Prefix `yaml:"deny_destinations"`
	DestinationPorts  []uint16       `yaml:"destination_ports"`

	// Clients decide which client networks may open a session on which
	// listener (see Session). Empty: every client on every listener.
	Clients []ClientRule `yaml:"clients"`
	// Commands is the command policy (see Command). Zero: every command is
	// allowed.
	Commands Commands `yaml:"commands"`
	// RequireClientTLS makes the control connection's TLS and PROT P
	// mandatory (see Command): USER before AUTH TLS gets 530 and a transfer
	// without PROT P gets 521. It is the only defence against a data-port
	// thief that shares the client's address (NAT, CGNAT).
	RequireClientTLS bool `yaml:"require_client_tls"`
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
	for i, r := range c.Clients {
		if err := r.validate(); err != nil {
			return fmt.Errorf("client rule %s: %w", ruleLabel(r.Name, i), err)
		}
	}
	if err := c.Commands.Validate(); err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	return nil
}

// Destination decides whether a session may reach the server at dst. A
// denial names its Rule ("deny_destinations", "allow_destinations" or
// "destination_ports"); the caller picks the reply.
func (c Config) Destination(dst netip.AddrPort) Decision {
	addr := dst.Addr().Unmap()
	for _, p := range c.DenyDestinations {
		if p.Contains(addr) {
			d := deny("destination %s is in denied network %s", addr, p)
			d.Rule = "deny_destinations"
			return d
		}
	}
	if len(c.AllowDestinations) > 0 && !slices.ContainsFunc(c.AllowDestinations, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		d := deny("destination %s is outside the allowed networks", addr)
		d.Rule = "allow_destinations"
		return d
	}
	if len(c.DestinationPorts) > 0 && !slices.Contains(c.DestinationPorts, dst.Port()) {
		d := deny("destination port %d is not an allowed FTP port", dst.Port())
		d.Rule = "destination_ports"
		return d
	}
	return allow()
}

// Decision is the answer to one question. A denial carries what to tell the
// client (Code and Text; zero for the older questions Destination,
// ActiveTarget and DataPeer, whose callers pick their own reply), why (Reason,
// for the log line and the audit record) and which rule decided (Rule, a
// human-readable name such as `preset "read-only"`, `rule "anon"` or
// "require_client_tls"). An allowing Decision may name its Rule too.
type Decision struct {
	Allow  bool
	Reason string
	Code   int    // FTP reply code to send when denied, e.g. 421, 500, 502, 521, 530, 550
	Text   string // reply text to send when denied; no CR or LF
	Rule   string // the rule that decided; "" for the built-in default
}

func allow() Decision { return Decision{Allow: true} }

func deny(format string, args ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, args...)}
}

// refuse builds a denial with its reply.
func refuse(rule string, code int, text, reason string) Decision {
	return Decision{Code: code, Text: text, Rule: rule, Reason: reason}
}

// ruleLabel names a rule for errors and audit records: its name, or its
// position in the list.
func ruleLabel(name string, i int) string {
	if name != "" {
		return fmt.Sprintf("%q", name)
	}
	return fmt.Sprintf("#%d", i+1)
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
