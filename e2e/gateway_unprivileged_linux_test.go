//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestGatewayUnprivileged: the transparent edge gateway in tproxy mode (IP_TRANSPARENT, socket
// marks, policy routing, its own nftables table) runs as the user nobody with only the ambient
// capabilities CAP_NET_ADMIN and CAP_NET_BIND_SERVICE, no CAP_NET_RAW, and carries every data
// mode as it does as root.
func TestGatewayUnprivileged(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needLftp, needFtpgate)
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	makeGateway(t, tp)
	cfg := gatewayConfig("tproxy")
	cfg.Unprivileged = true
	g := startGate(t, tp, cfg)

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.proc.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	// CAP_NET_BIND_SERVICE is bit 10, CAP_NET_ADMIN bit 12.
	if uid := strings.Fields(fields["Uid"]); len(uid) == 0 || uid[0] == "0" || uid[1] == "0" {
		t.Fatalf("ftpgate runs as uid %q, want nobody", fields["Uid"])
	}
	if fields["CapEff"] != "0000000000001400" {
		t.Fatalf("ftpgate's effective capabilities %s, want exactly CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (0x1400)", fields["CapEff"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if has, err := hasTable(ctx, tp.Proxy, "inet "+ownTable); err != nil || !has {
		t.Fatalf("unprivileged ftpgate created no table inet ftpgate (err %v)", err)
	}
	runGatewayMatrix(t, tp, srv, g, "tproxy")
}
