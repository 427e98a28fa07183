package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ftpgate/ftpgate/nat"
)

// What a passive reply tells the client: the address and port it should
// connect to. The rules are a pure function of the configuration, the client
// and the listener, so that split horizon can be tested as a table.

// AdvertiseRule chooses what passive replies tell clients from some
// networks (split horizon: in-cluster clients get the pod or ClusterIP
// address, outside clients the load balancer's), and optionally maps the
// advertised port for balancers that publish other ports than ftpgate
// listens on.
type AdvertiseRule struct {
	Clients    []netip.Prefix    // client networks the rule is for
	Addr       nat.AddrSource    // the address to advertise; nil keeps the default
	PortOffset int               // added to the data port, unless Ports maps it
	Ports      map[uint16]uint16 // explicit data port -> advertised port
}

func (r AdvertiseRule) matches(client netip.Addr) bool { return inPrefixes(r.Clients, client) }

// inPrefixes reports whether a (unmapped) lies in one of ps.
func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

func (r AdvertiseRule) mapPort(p uint16) uint16 {
	if m, ok := r.Ports[p]; ok {
		return m
	}
	return uint16(int(p) + r.PortOffset)
}

// validate reports whether every port the rule can produce is a real port.
func (r AdvertiseRule) validate(data [2]uint16) error {
	if len(r.Clients) == 0 {
		return errors.New("advertise rule without client networks")
	}
	for from, to := range r.Ports {
		if from == 0 || to == 0 {
			return fmt.Errorf("advertise rule port map %d -> %d: port 0", from, to)
		}
	}
	if r.PortOffset != 0 && data[0] != 0 {
		lo, hi := int(data[0])+r.PortOffset, int(data[1])+r.PortOffset
		if lo < 1 || hi > 65535 {
			return fmt.Errorf("advertise rule port offset %d moves data ports %d-%d out of range", r.PortOffset, data[0], data[1])
		}
	}
	return nil
}

// advertiseInput is what the advertised address depends on.
type advertiseInput struct {
	Client netip.Addr     // the real client (after a trusted PROXY header)
	Local  netip.AddrPort // the data listener the client is to reach
	// Server is the session's server; with Divert (transparent modes with
	// DivertData) clients expect the server's own address in passive
	// replies, and the firewall diverts their connection to Local.
	Server netip.Addr
	Divert bool
}

// advertise returns the address and port a passive reply tells the client,
// and whether the firewall must divert the client's connection to it. The
// first rule whose networks hold the client decides (split horizon): its
// address, if it has one, and its port mapping; then def; then, when
// diverting, the server's address; then the listener's own.
func advertise(def nat.AddrSource, rules []AdvertiseRule, in advertiseInput) (netip.AddrPort, bool) {
	v6 := in.Local.Addr().Is6()
	src := def
	port := in.Local.Port()
	for _, r := range rules {
		if r.matches(in.Client) {
			if r.Addr != nil {
				src = r.Addr
			}
			port = r.mapPort(port)
			break
		}
	}
	if src != nil {
		if a, ok := src.Addr(v6); ok {
			return netip.AddrPortFrom(a, port), false
		}
	}
	if in.Divert {
		if srv := in.Server.Unmap(); srv.IsValid() && srv.Is6() == v6 {
			return netip.AddrPortFrom(srv, port), true
		}
	}
	return netip.AddrPortFrom(in.Local.Addr(), port), false
}

// advertised is advertise for this session and a data listener on local.
func (s *session) advertised(local netip.AddrPort) (netip.AddrPort, bool) {
	cfg := s.cfg
	return advertise(cfg.Advertise, cfg.AdvertiseRules, advertiseInput{
		Client: s.clientPeer.Addr(),
		Local:  local,
		Server: s.serverPeer.Addr(),
		Divert: cfg.Mode.Transparent() && cfg.DivertData,
	})
}
