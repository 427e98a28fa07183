//go:build linux

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The transparent edge gateway of issue #5 is a topology (harness_netns_linux_test.go) whose proxy
// namespace is an operator's router:
//
//	client ns (LAN) ──c0── gateway ns (ftpgate) ──s0── server ns
//	                          └──h0── host ns (another server, outside the allowed networks)
//
// The client and the servers route through the gateway and address each other directly; the
// operator's table "edge" drops new connections on input and forward by default, masquerades
// toward the servers, and has no ct helper. It admits exactly what ftpgate needs: the
// intercepted control connections and the elements of its two pinhole sets, which ftpgate
// fills in external-set mode. ftpgate installs the interception in its own table.
const (
	lanIf     = "c0" // the gateway's interface toward the client
	wanIf     = "s0" // toward the server
	edgeTable = "edge"
	edgeSet4  = "pin4"
	edgeSet6  = "pin6"

	gatewayListenPort = 8021   // ftpgate's listen port in the transparent modes (its default)
	tproxyMark        = 0x4655 // nat.DefaultTProxyMark: tproxy'd packets carry it
	loopMark          = 0x4654 // nat.DefaultLoopMark: ftpgate's own outgoing sockets carry it
	tproxyRouteTable  = 2121   // nat.DefaultRouteTable
)

// edgeRuleset is the operator's ruleset of the gateway namespace.
var edgeRuleset = fmt.Sprintf(`
table inet edge {
	set pin4 {
		type ipv4_addr . ipv4_addr . inet_service
		flags timeout
	}
	set pin6 {
		type ipv6_addr . ipv6_addr . inet_service
		flags timeout
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lo" accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept
		# Control connections ftpgate intercepted: redirected to its port, or tproxy'd with its mark.
		ct status dnat tcp dport %[1]d accept
		meta mark %#[2]x accept
		# Data connections ftpgate expects: exact pinholes, nothing else.
		tcp dport 40000-40099 ip saddr . ip daddr . tcp dport @pin4 accept
		tcp dport 40000-40099 ip6 saddr . ip6 daddr . tcp dport @pin6 accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		# ftpgate's own connections keep their source address: with --preserve-client-address
		# that is the client's, on purpose.
		meta mark %#[3]x return
		oifname "%[4]s" masquerade
	}
}
`, gatewayListenPort, tproxyMark, loopMark, wanIf)

// edgePinholeSets are the operator's pinhole sets, which ftpgate fills.
var edgePinholeSets = pinholeSets{edgeTable, edgeSet4, edgeSet6}

// makeGateway loads the operator's ruleset into tp's proxy namespace. Servers must be started
// before: from then on nothing is forwarded, and the harness checks them from the client.
func makeGateway(t testing.TB, tp *topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nftLoad(ctx, tp.Proxy, edgeRuleset); err != nil {
		t.Fatal(err)
	}
}

// gatewayConfig is ftpgate on the gateway: transparent mode (redirect or tproxy), catching
// connections that come in on the LAN interface, with its pinholes in the operator's sets.
func gatewayConfig(mode string, extra ...string) gateConfig {
	return gateConfig{
		Mode:     mode,
		Firewall: "external-set",
		Extra: append([]string{
			"--firewall-table", edgeTable, "--firewall-set4", edgeSet4, "--firewall-set6", edgeSet6,
			"--intercept-interfaces", lanIf,
		}, extra...),
	}
}

// viaGatewayV4 and viaGatewayV6 are the server's own addresses, as a client behind the
// gateway addresses them. Passive replies carry them too, so data connections go there.
func viaGatewayV4() endpoint { return endpoint{"gateway", serverV4, 21, serverV4} }

func viaGatewayV6() endpoint { return endpoint{"gateway", serverV6, 21, serverV6} }
