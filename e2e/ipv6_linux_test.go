//go:build linux

package e2e

import (
	"testing"
)

// TestIPv6EndToEnd runs IPv6 clients through ftpgate to the servers' IPv6 addresses.
func TestIPv6EndToEnd(t *testing.T) {
	t.Parallel()
	for _, kind := range serverKinds {
		for _, sm := range serverModes {
			t.Run(kind+"/server-"+sm, func(t *testing.T) {
				t.Parallel()
				requirePrereqs(t, serverNeed(kind), needCurl, needPython, needFtpgate)
				tp := newTopology(t)
				srv := startServer(t, tp, kind)
				g := startGate(t, tp, gateConfig{
					Listen:     []string{hostPort(proxyClientV6, 21)},
					Upstream:   hostPort(serverV6, 21),
					ServerMode: sm,
				})
				base := warmUp(t, tp, g, gateV6())
				t.Run("load", func(t *testing.T) { runMatrix(t, tp, srv, g, gateV6()) })
				t.Run("settled", func(t *testing.T) { checkSettled(t, g, base, sm) })
			})
		}
	}
}
