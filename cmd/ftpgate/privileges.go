package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
)

// capability is a Linux capability ftpgate may need (bit numbers from
// linux/capability.h, a stable kernel ABI).
type capability uint

const (
	capNetBindService capability = 10
	capNetAdmin       capability = 12
)

func (c capability) String() string {
	switch c {
	case capNetBindService:
		return "CAP_NET_BIND_SERVICE"
	case capNetAdmin:
		return "CAP_NET_ADMIN"
	}
	return "capability " + strconv.Itoa(int(c))
}

// capNeed is one capability the configuration needs, and what for.
type capNeed struct {
	cap capability
	why string
}

// capabilityNeeds lists the capabilities a configuration needs, each once,
// CAP_NET_ADMIN first. portStart is the lowest port an unprivileged process
// may bind. CAP_NET_RAW is never needed: IP_TRANSPARENT and SO_MARK accept
// CAP_NET_ADMIN as well.
func capabilityNeeds(pc proxy.Config, nc nat.Config, adminListen string, portStart int) []capNeed {
	var admin, bind []string
	if nc.Mode != nat.ModeNone {
		mode := nc.Mode
		if mode == "" {
			mode = nat.ModeOwnTable
		}
		admin = append(admin, fmt.Sprintf("firewall mode %s writes nftables", mode))
	}
	switch pc.Mode {
	case proxy.ModeTProxy:
		admin = append(admin, "mode tproxy opens IP_TRANSPARENT sockets and marks its own (SO_MARK)")
	case proxy.ModeRedirect:
		admin = append(admin, "mode redirect marks its own sockets (SO_MARK) so that they are not intercepted")
	}
	low := func(what, addr string) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return // Validate reports it
		}
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < portStart {
			bind = append(bind, fmt.Sprintf("%s %s is below port %d", what, addr, portStart))
		}
	}
	for _, l := range pc.Listen {
		low("listen", l)
	}
	for _, l := range pc.TLS.ImplicitListen {
		low("implicit_listen", l)
	}
	if adminListen != "" {
		low("admin_listen", adminListen)
	}
	if r := pc.PassivePorts; r != (nat.PortRange{}) && int(r.Lo) < portStart {
		bind = append(bind, fmt.Sprintf("passive_ports %s start below port %d", r, portStart))
	}
	var needs []capNeed
	if len(admin) > 0 {
		needs = append(needs, capNeed{capNetAdmin, strings.Join(admin, "; ")})
	}
	if len(bind) > 0 {
		needs = append(needs, capNeed{capNetBindService, strings.Join(bind, "; ")})
	}
	return needs
}

// checkCapabilities reports, in one error that names each, the needed
// capabilities missing from the effective set that effective returns (a
// bit mask by capability number).
func checkCapabilities(needs []capNeed, effective func() (uint64, error)) error {
	if len(needs) == 0 {
		return nil
	}
	have, err := effective()
	if err != nil {
		return fmt.Errorf("read this process's capabilities: %w", err)
	}
	var missing, caps, short []string
	for _, n := range needs {
		if have&(1<<n.cap) == 0 {
			missing = append(missing, fmt.Sprintf("%s (%s)", n.cap, n.why))
			caps = append(caps, n.cap.String())
			short = append(short, "+"+strings.ToLower(strings.TrimPrefix(n.cap.String(), "CAP_")))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	word := "capability"
	if len(missing) > 1 {
		word = "capabilities"
	}
	return fmt.Errorf("missing %s %s; run as root or grant %s: systemd AmbientCapabilities=%s, "+
		"setpriv --inh-caps=%s --ambient-caps=%s, or setcap %s+ep on the binary",
		word, strings.Join(missing, ", "), word, strings.Join(caps, " "),
		strings.Join(short, ","), strings.Join(short, ","), strings.ToLower(strings.Join(caps, ",")))
}
