//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The transparent edge gateway of issue #5 is a topology (netns_linux_test.go) whose proxy
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

// startVsftpdOn starts vsftpd in tp's server namespace on another port than 21, with its own
// passive port range, and waits until it answers there (from the server namespace itself, so
// that the gateway's rules do not matter).
func startVsftpdOn(t testing.TB, tp *topology, port, pasvLo, pasvHi int) *ftpServer {
	t.Helper()
	u, err := user.Lookup(e2eUser)
	if err != nil {
		t.Fatalf("test user: %v (%s)", err, installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	conf := t.TempDir()
	root := servedDir(t)
	if err := linkFixtures(root); err != nil {
		t.Fatalf("fill served directory: %v", err)
	}
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatalf("chown served directory: %v", err)
	}
	empty := filepath.Join(conf, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &ftpServer{Kind: vsftpd, Root: root, log: filepath.Join(conf, "vsftpd.log")}
	cfg := vsftpdConfig(root, empty, s.log)
	for _, r := range []struct{ from, to string }{
		{"\nlisten_port=21\n", fmt.Sprintf("\nlisten_port=%d\n", port)},
		{fmt.Sprintf("\npasv_min_port=%d\n", serverPassiveLo), fmt.Sprintf("\npasv_min_port=%d\n", pasvLo)},
		{fmt.Sprintf("\npasv_max_port=%d\n", serverPassiveHi), fmt.Sprintf("\npasv_max_port=%d\n", pasvHi)},
	} {
		if !strings.Contains(cfg, r.from) {
			t.Fatalf("vsftpd config has no %q to change", strings.TrimSpace(r.from))
		}
		cfg = strings.Replace(cfg, r.from, r.to, 1)
	}
	cfgPath := filepath.Join(conf, "vsftpd.conf")
	writeFile(t, cfgPath, cfg)
	out, err := os.Create(filepath.Join(conf, "vsftpd.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd := nsCommand(context.Background(), tp.Server, vsftpdBin, cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	s.proc = startProcess(t, fmt.Sprintf("vsftpd:%d", port), cmd)
	t.Cleanup(func() {
		_ = s.proc.Stop(5 * time.Second)
		if t.Failed() {
			for _, f := range []string{out.Name(), s.log} {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					t.Logf("vsftpd on port %d, %s (tail):\n%s", port, filepath.Base(f), tail(b, 30))
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitPort(ctx, tp.Server, hostPort(serverV4, port), "220", s.proc); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("vsftpd on port %d not ready: %v\noutput:\n%s", port, err, tail(b, 30))
	}
	return s
}

// serverLogLines returns the lines of a server's own log that contain every one of subs.
func serverLogLines(s *ftpServer, subs ...string) ([]string, error) {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			out = append(out, line)
		}
	}
	return out, nil
}

// lftpGetPut has lftp, in the client namespace, download a fixture and upload the copy under
// another name, in passive (EPSV) or active (PORT, or EPRT over IPv6) mode, and checks from
// its debug output that the mode's data command was used.
func lftpGetPut(ctx context.Context, ns string, ep endpoint, passive bool, fixture, local, remote string) error {
	settings := []string{
		"set cmd:fail-exit yes",
		"set ftp:ssl-allow no",
		"set net:max-retries 2",
		"set net:reconnect-interval-base 1",
		"set net:timeout 20",
		"set xfer:clobber on",
		"set ftp:passive-mode " + map[bool]string{true: "on", false: "off"}[passive],
		"set ftp:prefer-epsv " + map[bool]string{true: "yes", false: "no"}[passive],
	}
	steps := []string{"get " + fixture + " -o " + local, "put " + local + " -o " + remote, "bye"}
	script := strings.Join(append(settings, steps...), "; ")
	out, debug, err := runIn(ctx, ns, "lftp", "-d", "-u", e2eUser+","+e2ePassword, "-e", script, "ftp://"+urlHost(ep.Host, ep.Port))
	if err != nil {
		return fmt.Errorf("lftp get/put via %s: %w\n%s\n%s", ep.Name, err, out, tail(debug, 30))
	}
	want := "---> EPSV"
	switch {
	case !passive && ep.v6():
		want = "---> EPRT"
	case !passive:
		want = "---> PORT"
	}
	if n := bytes.Count(debug, []byte(want)); n < 2 {
		return fmt.Errorf("lftp get/put via %s: %d %q in its debug output, want one per transfer\n%s", ep.Name, n, want, tail(debug, 30))
	}
	return nil
}
