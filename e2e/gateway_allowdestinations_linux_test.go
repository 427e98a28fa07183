//go:build linux

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestGatewayAllowDestinations: with --allow-destinations naming the server network, a client
// behind the gateway that addresses a server elsewhere (the third host) gets 421 and ftpgate
// attempts no connection to it; the allowed server is reached.
func TestGatewayAllowDestinations(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needFtpgate)
	tp := newTopology(t)
	allowed := map[string]*countingServer{}
	refused := map[string]*countingServer{}
	for _, a := range []string{serverV4, serverV6} {
		allowed[a] = startCountingServer(t, tp.Server, hostPort(a, 21))
	}
	for _, a := range []string{hostV4, hostV6} {
		refused[a] = startCountingServer(t, tp.Host, hostPort(a, 21))
	}
	makeGateway(t, tp)
	g := startGate(t, tp, gatewayConfig("redirect", "--allow-destinations", "198.18.1.0/24,fd00:0:0:2::/64"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, dst := range []string{hostV4, hostV6} {
		ctl, greeting, err := dialCtl(ctx, tp.Client, hostPort(dst, 21))
		if err != nil {
			t.Fatalf("to %s: %v", dst, err)
		}
		ctl.Close()
		if greeting.Code != 421 {
			t.Errorf("to %s, outside the allowed networks: greeting %q, want 421", dst, greeting)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		rec, err := g.logs.Wait(wctx, "destination refused", func(r logRecord) bool { return r.str("destination") == hostPort(dst, 21) })
		wcancel()
		if err != nil {
			t.Errorf("ftpgate did not log the refusal of %s: %v", dst, err)
		} else if lvl := rec.str("level"); lvl != "warn" {
			t.Errorf(`"destination refused" logged at %q, want warn: %s`, lvl, rec)
		}
	}
	for _, dst := range []string{serverV4, serverV6} {
		ctl, greeting, err := dialCtl(ctx, tp.Client, hostPort(dst, 21))
		if err != nil {
			t.Fatalf("to %s: %v", dst, err)
		}
		ctl.Close()
		if greeting.Code != 220 || !strings.Contains(greeting.Text, "counting server") {
			t.Errorf("to %s, inside the allowed networks: greeting %q, want the server's 220", dst, greeting)
		}
	}
	// By now the refused sessions are long over; a connection ftpgate made for them would be in.
	for a, s := range refused {
		if got := s.Accepted(); len(got) != 0 {
			t.Errorf("the server on %s outside the allowed networks was connected to: %v", a, got)
		}
	}
	for a, s := range allowed {
		if got := s.Accepted(); len(got) != 1 {
			t.Errorf("the allowed server on %s accepted %v; want one connection, from ftpgate", a, got)
		}
	}
}
