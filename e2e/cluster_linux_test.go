//go:build linux

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue #6's acceptance tests for ftpgate in Kubernetes, on a cluster simulated with network
// namespaces (cluster_topology_linux_test.go): the inbound sidecar of
// deploy/kubernetes/inbound-sidecar.yaml behind kube-proxy's translation, and the outbound
// sidecar of deploy/kubernetes/outbound-sidecar.yaml behind the node's source NAT. The load
// balancer speaking the PROXY protocol is haproxy_linux_test.go's.

// clusterAdvertiseRules is the split horizon of deploy/kubernetes/ftpgate-config/inbound.yaml
// with the test's networks: pods are told the pod's own address, everyone else the load
// balancer's.
var clusterAdvertiseRules = fmt.Sprintf(`advertise_rules:
  - clients: [%s]
    address: interface:eth0
  - clients: [0.0.0.0/0]
    address: %s
`, clusterPodNet, clusterLBV4)

// clusterConcurrent is how many transfers the load test runs at once, from four client
// addresses through the eight data ports.
const clusterConcurrent = 100

// TestClusterInboundSidecar: ftpgate in the FTP server's pod, in front of vsftpd on the pod's
// loopback (no passive address or port range configured), behind a node that translates the
// Service's load-balancer address and ClusterIP to the pod on port 21 and the eight data ports
// 40000-40007, as kube-proxy does. A client pod reaching the ClusterIP and a client outside
// reaching the load balancer are told different data addresses and both transfer; then 100
// transfers from four outside client addresses run at once through the eight data ports, all
// with the right checksum; afterwards ftpgate is back to its idle resources.
func TestClusterInboundSidecar(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	c := newCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := nftLoad(ctx, c.Node, kubeProxyRuleset); err != nil {
		t.Fatal(err)
	}
	startLocalVsftpd(t, c.Pod, clusterServerAddr)
	cfg := filepath.Join(t.TempDir(), "ftpgate.yaml")
	writeFile(t, cfg, clusterAdvertiseRules)
	// A long pinhole lifetime: a pinhole gone right after its client connected was deleted.
	g := startGate(t, c.view(c.Pod, c.Outside[0]), sidecarGate("--config", cfg, "--pinhole-ttl", "60s"))

	t.Run("split-horizon", func(t *testing.T) { testSplitHorizon(ctx, t, c, g) })
	if t.Failed() {
		return
	}
	base := idleBaseline(ctx, t, g)
	t.Logf("ftpgate idle before the load: %s", base)
	t.Run(fmt.Sprintf("concurrent-%d", clusterConcurrent), func(t *testing.T) {
		testClusterLoad(ctx, t, c, g, clusterConcurrent)
	})
	t.Run("settled", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		start := time.Now()
		// Go pools splice pipes until a garbage collection: drive two, then compare.
		if err := collectGarbage(sctx, g, 2); err != nil {
			t.Fatal(err)
		}
		v, err := g.waitSettled(sctx, base)
		if err != nil {
			t.Errorf("ftpgate did not return to its idle resources after the load: %v\n before: %s\n after:  %s", err, base, v)
		} else {
			t.Logf("ftpgate idle again %s after the load: %s", time.Since(start).Round(time.Millisecond), v)
		}
	})
}

// testSplitHorizon: an in-cluster client connects to the ClusterIP, an outside client to the
// load balancer; PASV tells the first the pod's address and the second the load balancer's,
// EPSV tells both a data port of the Service. The pinhole is keyed by the client's own address
// and the pod's (the translated destination), whatever address the client was told. Every
// transfer arrives whole.
func testSplitHorizon(ctx context.Context, t *testing.T, c *cluster, g *gate) {
	cases := []struct {
		name    string
		ns      string
		control string // where the client connects
		client  string // its address
		verb    string
		// where the data connection goes: the advertised address for PASV, the control
		// connection's peer for EPSV.
		wantData string
	}{
		{"in-cluster-PASV", c.InPod, clusterClusterIPV4, clusterInPodV4, "PASV", clusterPodV4},
		{"in-cluster-EPSV", c.InPod, clusterClusterIPV4, clusterInPodV4, "EPSV", clusterClusterIPV4},
		{"outside-PASV", c.Outside[0], clusterLBV4, clusterOutsideV4(0), "PASV", clusterLBV4},
		{"outside-EPSV", c.Outside[1], clusterLBV4, clusterOutsideV4(1), "EPSV", clusterLBV4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl, err := dialLogin(ctx, tc.ns, hostPort(tc.control, 21))
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			target, err := ctl.passive(tc.verb)
			if err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			if target.Addr().String() != tc.wantData || target.Port() < clusterDataLo || target.Port() > clusterDataHi {
				t.Errorf("%s from %s: data address %s, want %s on a port of %s\n%s",
					tc.verb, tc.client, target, tc.wantData, clusterDataPorts, ctl.Transcript())
			}
			want := pinholeKey(tc.client, clusterPodV4, int(target.Port()))
			els, err := nftSetElements(ctx, c.Pod, "inet", ownTable, ownPinholes4, ownPinholes6)
			if err != nil {
				t.Fatal(err)
			}
			if len(els) != 1 || !slices.Equal(els[0].Key, want) {
				t.Errorf("while the transfer is pending the pod's table inet ftpgate holds %v; want exactly %s",
					els, strings.Join(want, " . "))
			}
			if err := retrieve(ctx, ctl, tc.ns, target, oneFile); err != nil {
				t.Fatal(err)
			}
			if err := ctl.quit(); err != nil {
				t.Error(err)
			}
		})
	}
	// The node kept the clients' addresses: ftpgate saw each client as itself.
	clients := map[string]bool{}
	for _, r := range g.logs.Records("session start") {
		clients[recordHost(r, "client")] = true
	}
	for _, tc := range cases {
		if !clients[tc.client] {
			t.Errorf(`no "session start" with client %s; clients seen: %v`, tc.client, slices.Sorted(maps.Keys(clients)))
		}
	}
}

// testClusterLoad runs n curl downloads of the 1 MiB file at once, from the four outside
// client addresses in turn, through the load balancer's address, half with EPSV and half with
// PASV (connecting to the address in the 227 reply, which must be the load balancer's). Every
// data connection uses one of the eight data ports; ftpgate's session logs show more sessions
// open at once than there are data ports, and its listener count, sampled meanwhile, never
// exceeds the control listener and the eight data listeners.
func testClusterLoad(ctx context.Context, t *testing.T, c *cluster, g *gate, n int) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	ep := endpoint{Name: "load-balancer", Host: clusterLBV4, Port: 21, DataPeer: clusterLBV4}
	dir := t.TempDir()
	transfersBefore := len(g.logs.Records("transfer"))

	// Sample the listener count until the load is over (a sample can miss a peak, never
	// invent one).
	maxListeners, samples := 0, 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v, err := gateCounters(ctx, g); err == nil {
				samples++
				maxListeners = max(maxListeners, v.Listeners)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	type result struct {
		client string
		port   int
		err    error
	}
	results := make([]result, n)
	modes := []dataMode{modeEPSV, modePASVIP}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			ns, m := c.Outside[i%len(c.Outside)], modes[(i/len(c.Outside))%len(modes)]
			results[i].client = clusterOutsideV4(i % len(c.Outside))
			local := filepath.Join(dir, fmt.Sprintf("one-%03d.bin", i))
			_, verbose, err := curlClient{ns}.runBoth(ctx, ep, m, "-o", local, ep.url(oneFile))
			if err == nil {
				err = sameFile(local, oneFile)
			}
			if err != nil {
				results[i].err = fmt.Errorf("transfer %d from %s (%s): %w", i, results[i].client, m, err)
				return
			}
			results[i].port = curlDataPort(verbose)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled

	var failed []error
	byPort := map[int]map[string]int{} // data port -> client -> transfers
	for _, r := range results {
		if r.err != nil {
			failed = append(failed, r.err)
			continue
		}
		if byPort[r.port] == nil {
			byPort[r.port] = map[string]int{}
		}
		byPort[r.port][r.client]++
	}
	overlap, err := maxOverlap(g.logs.Records("session start"), g.logs.Records("session end"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d transfers from %d clients in %s; at most %d sessions at once; at most %d listeners in %d samples",
		n, len(c.Outside), elapsed.Round(time.Millisecond), overlap, maxListeners, samples)
	for _, p := range slices.Sorted(maps.Keys(byPort)) {
		t.Logf("  data port %d: %v", p, byPort[p])
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d transfers failed; first: %v", len(failed), n, failed[0])
		for _, err := range failed[1:min(len(failed), 3)] {
			t.Errorf("also: %v", err)
		}
	}
	for p := range byPort {
		if p < clusterDataLo || p > clusterDataHi {
			t.Errorf("a transfer used data port %d, outside the Service's %s", p, clusterDataPorts)
		}
	}
	// One control listener and at most one listener per data port, however many sessions.
	if maxListeners > 1+(clusterDataHi-clusterDataLo+1) {
		t.Errorf("ftpgate had %d listeners open at once; want at most the control listener and %d data ports",
			maxListeners, clusterDataHi-clusterDataLo+1)
	}
	if overlap <= clusterDataHi-clusterDataLo+1 {
		t.Errorf("at most %d sessions were open at once: the load never had more sessions than data ports", overlap)
	}
	// ftpgate logged each transfer whole, and saw the clients' own addresses.
	var transfers []logRecord
	for range 50 {
		if transfers = g.logs.Records("transfer")[transfersBefore:]; len(transfers) >= n-len(failed) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(transfers) != n-len(failed) {
		t.Errorf(`%d "transfer" records for %d transfers`, len(transfers), n-len(failed))
	}
	for _, r := range transfers {
		if b, ok := r.num("bytes"); !ok || b != oneSize || r.str("code") != "226" {
			t.Errorf("transfer record: %s; want %d bytes and code 226", r, oneSize)
			break
		}
	}
	if refused := g.logs.Records("data connection refused"); len(refused) > 0 {
		t.Errorf("ftpgate refused data connections:\n%s", excerpt(refused, 5))
	}
}

// maxOverlap returns how many sessions were open at once at most, from the timestamps of
// their "session start" and "session end" records (joined by the session field).
func maxOverlap(starts, ends []logRecord) (int, error) {
	type event struct {
		at    time.Time
		delta int
	}
	var events []event
	for _, recs := range []struct {
		list  []logRecord
		delta int
	}{{starts, 1}, {ends, -1}} {
		for _, r := range recs.list {
			at, err := time.Parse("2006-01-02T15:04:05.000Z0700", r.str("ts"))
			if err != nil {
				return 0, fmt.Errorf("log record time: %w: %s", err, r)
			}
			events = append(events, event{at, recs.delta})
		}
	}
	// At equal times ends go first: a count never includes a session that had ended.
	slices.SortFunc(events, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	open, most := 0, 0
	for _, e := range events {
		open += e.delta
		most = max(most, open)
	}
	return most, nil
}

// curlDataPort returns the port of the data connection curl opened (the first connection not
// to port 21), from its -v output, or 0.
func curlDataPort(verbose []byte) int {
	for _, line := range strings.Split(string(verbose), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimLeft(line, "* "), "Trying ")
		if !ok {
			continue
		}
		ap, err := netip.ParseAddrPort(strings.TrimSuffix(rest, "..."))
		if err == nil && ap.Port() != 21 {
			return int(ap.Port())
		}
	}
	return 0
}

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
	app := curlClient{tp.Client}
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

// vsftpdConnects returns the client address of each CONNECT line in a vsftpd log, in order.
func vsftpdConnects(s *ftpServer) ([]string, error) {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return nil, fmt.Errorf("vsftpd log: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(line, "CONNECT: Client \"")
		if !ok {
			continue
		}
		addr, _, _ := strings.Cut(rest, "\"")
		if a, err := netip.ParseAddr(addr); err == nil {
			addr = a.Unmap().String()
		}
		out = append(out, addr)
	}
	return out, nil
}
