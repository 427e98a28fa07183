//go:build linux

package e2e

import (
	"context"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeEgressRuleset is the node of the outbound sidecar test (newTopology's proxy namespace):
// the pod's connections leave through source NAT (masquerade) toward the server network, and
// nothing from outside opens a connection into the pod network. No FTP conntrack helper.
const nodeEgressRuleset = `
table inet kube {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		oifname "c0" counter drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "s0" masquerade
	}
}
`

// TestClusterOutboundSidecar: an application in a pod (newTopology's client namespace)
// downloads from a server outside (the server namespace), which it reaches only through the
// node's source NAT (the proxy namespace). Without ftpgate an active-mode download fails: the
// server sees the node's address, not the one the client's PORT names, and could not reach the
// pod anyway. With ftpgate beside the application in --mode redirect --intercept-output, the
// pod's own outgoing FTP is caught in the output hook, and passive and active downloads over
// IPv4 and IPv6 all arrive whole, while the client believes it talks to the server directly.
// ftpgate does not catch its own connections: each client session is one "session start", and
// its upstream connection reaches the server from the node's address.
func TestClusterOutboundSidecar(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := nftLoad(ctx, tp.Proxy, nodeEgressRuleset); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, tp, vsftpd)
	app := curlClient{ns: tp.Client}
	dir := t.TempDir()

	t.Run("without-ftpgate", func(t *testing.T) {
		local := filepath.Join(dir, "direct-passive.bin")
		if err := app.Get(ctx, directV4(), modeEPSV, oneFile, local); err != nil {
			t.Fatalf("passive download through the node's NAT: %v", err)
		}
		if err := sameFile(local, oneFile); err != nil {
			t.Fatal(err)
		}
		_, err := app.run(ctx, directV4(), modePORT, "--max-time", "10", "-o", filepath.Join(dir, "direct-active.bin"), directV4().url(oneFile))
		if err == nil {
			t.Fatal("an active-mode download through the node's NAT worked without ftpgate: the test's NAT is not in the way")
		}
		t.Logf("active mode without ftpgate fails, as it should: %.200s", strings.ReplaceAll(err.Error(), "\n", " | "))
	})
	connectsBefore, err := vsftpdConnects(srv)
	if err != nil {
		t.Fatal(err)
	}

	g := startGate(t, &topology{Prefix: tp.Prefix, Proxy: tp.Client, Client: tp.Client, Server: tp.Server, Host: tp.Host},
		gateConfig{Mode: "redirect", Extra: []string{"--intercept-output"}})
	cases := []struct {
		ep   endpoint
		mode dataMode
	}{
		{directV4(), modeEPSV},
		{directV4(), modePASV},
		{directV4(), modePASVIP},
		{directV4(), modeEPRT},
		{directV4(), modePORT},
		{directV6(), modeEPSV},
		{directV6(), modeEPRT},
	}
	t.Run("through-ftpgate", func(t *testing.T) {
		for _, tc := range cases {
			fam := "ipv4"
			if tc.ep.v6() {
				fam = "ipv6"
			}
			t.Run(fam+"-"+string(tc.mode), func(t *testing.T) {
				t.Parallel()
				local := filepath.Join(dir, fam+"-"+string(tc.mode)+".bin")
				if err := app.Get(ctx, tc.ep, tc.mode, bigFile, local); err != nil {
					t.Fatal(tp.diagnose(err))
				}
				if err := sameFile(local, bigFile); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	// One session per client session, each from the application's own address to the server's.
	var starts, ends []logRecord
	for range 50 {
		if starts, ends = g.logs.Records("session start"), g.logs.Records("session end"); len(ends) >= len(cases) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(starts) != len(cases) || len(ends) != len(cases) {
		t.Errorf(`%d "session start" and %d "session end" records for %d client sessions; want one each:%s`,
			len(starts), len(ends), len(cases), "\n"+excerpt(starts, 10))
	}
	for _, r := range ends {
		client, server := recordHost(r, "client"), recordHost(r, "server")
		if !(client == clientV4 && server == serverV4 || client == clientV6 && server == serverV6) {
			t.Errorf(`"session end" from %s to %s; want the application %s or %s to the server %s or %s: %s`,
				client, server, clientV4, clientV6, serverV4, serverV6, r)
		}
	}
	if loops := g.logs.Records("connection to ftpgate itself refused"); len(loops) > 0 {
		t.Errorf("ftpgate caught a connection to itself:\n%s", excerpt(loops, 3))
	}
	// The upstream connections reached the server, from the node's address (source NAT).
	connects, err := vsftpdConnects(srv)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range connects[len(connectsBefore):] {
		got[c]++
	}
	want := map[string]int{proxyServerV4: len(cases) - 2, proxyServerV6: 2}
	if !maps.Equal(got, want) {
		t.Errorf("the server saw control connections from %v; want %v (the node's addresses, once per client session)", got, want)
	}
}
