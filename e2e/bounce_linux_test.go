//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBounceRefused: PORT and EPRT naming a third host (or a privileged port on the client)
// are answered with a 5xx reply and logged, and no connection reaches the named host.
func TestBounceRefused(t *testing.T) {
	requirePrereqs(t, needVsftpd, needPython, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	g := startGate(t, tp, gateConfig{Firewall: "none"})

	// A listener on the third host records any connection ftpgate might make to it.
	const bouncePort = 51201
	targets := map[string]*countingServer{}
	for _, addr := range []string{hostPort(hostV4, bouncePort), hostPort(hostV6, bouncePort)} {
		targets[addr] = startCountingServer(t, tp.Host, addr)
	}

	cases := []struct {
		name     string
		ep       endpoint
		command  string
		thirdSet bool // names a third address (logged as a bounce attempt)
	}{
		{"PORT-third-host", gateV4(), fmt.Sprintf("PORT 198,18,2,2,%d,%d", bouncePort>>8, bouncePort&0xff), true},
		{"EPRT-third-host-ipv4", gateV4(), fmt.Sprintf("EPRT |1|%s|%d|", hostV4, bouncePort), true},
		{"EPRT-third-host-ipv6", gateV6(), fmt.Sprintf("EPRT |2|%s|%d|", hostV6, bouncePort), true},
		{"EPRT-server", gateV4(), fmt.Sprintf("EPRT |1|%s|%d|", serverV4, bouncePort), true},
		{"PORT-client-privileged-port", gateV4(), "PORT 198,18,0,2,0,25", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			before := len(g.logs.Records("bounce attempt refused"))
			out, transcript, err := runIn(ctx, tp.Client, python3Bin, ftplibArgs(tc.ep, modePORT, "raw", tc.command, "LIST")...)
			if err != nil {
				t.Fatalf("ftpclient.py raw: %v\n%s\n%s", err, out, transcript)
			}
			var replies []ftplibResult
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var r ftplibResult
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("client output %q: %v", line, err)
				}
				replies = append(replies, r)
			}
			if len(replies) != 2 {
				t.Fatalf("want replies to %s and LIST, got %+v\ntranscript:\n%s", tc.command, replies, transcript)
			}
			if r := replies[0].Reply; !strings.HasPrefix(r, "5") {
				t.Errorf("%s: reply %q, want 5xx", tc.command, r)
			}
			if r := replies[1].Reply; strings.HasPrefix(r, "1") || strings.HasPrefix(r, "2") {
				t.Errorf("LIST after a refused %s: reply %q, want no transfer", tc.command, r)
			}
			if tc.thirdSet {
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				defer wcancel()
				for len(g.logs.Records("bounce attempt refused")) <= before {
					select {
					case <-wctx.Done():
						t.Fatalf(`ftpgate did not log "bounce attempt refused" for %s\nlog tail:\n%s`, tc.command, g.logs.Tail(10))
					case <-time.After(50 * time.Millisecond):
					}
				}
				recs := g.logs.Records("bounce attempt refused")
				if lvl := recs[len(recs)-1].str("level"); lvl != "warn" {
					t.Errorf(`"bounce attempt refused" at %q, want warn: %s`, lvl, recs[len(recs)-1])
				}
			}
		})
	}
	// A bounce connection, had one been made, would have been attempted by now.
	time.Sleep(300 * time.Millisecond)
	for addr, s := range targets {
		if from := s.Accepted(); len(from) != 0 {
			t.Errorf("connections reached the bounce target %s: from %v", addr, from)
		}
	}
}
