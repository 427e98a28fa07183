//go:build linux

package e2e

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Issue #6's acceptance tests for ftpgate in Kubernetes, on a cluster simulated with network
// namespaces (harness_cluster_linux_test.go): the inbound sidecar of
// deploy/kubernetes/inbound-sidecar.yaml behind kube-proxy's translation (this file and
// splithorizon_linux_test.go), and the outbound sidecar of
// deploy/kubernetes/outbound-sidecar.yaml behind the node's source NAT
// (sidecar_outbound_linux_test.go). The load balancer speaking the PROXY protocol is
// proxyprotocol_linux_test.go's.

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
	startSidecarVsftpd(t, c.Pod)
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
			if v, err := g.counters(ctx); err == nil {
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
			_, verbose, err := curlClient{ns: ns}.runBoth(ctx, ep, m, "-o", local, ep.url(oneFile))
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
