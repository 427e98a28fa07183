//go:build linux

package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// The split horizon of the inbound sidecar: clients in the pod network are told the pod's own
// address, everyone else the load balancer's. It runs as TestClusterInboundSidecar's first
// subtest, split-horizon (sidecar_inbound_linux_test.go), whose load test takes ftpgate's
// resources after it as the idle baseline.

// clusterAdvertiseRules is the split horizon of deploy/kubernetes/ftpgate-config/inbound.yaml
// with the test's networks: pods are told the pod's own address, everyone else the load
// balancer's.
var clusterAdvertiseRules = fmt.Sprintf(`advertise_rules:
  - clients: [%s]
    address: interface:eth0
  - clients: [0.0.0.0/0]
    address: %s
`, clusterPodNet, clusterLBV4)

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
			ctl := mustLogin(ctx, t, tc.ns, hostPort(tc.control, 21))
			target := ctl.mustPassive(t, tc.verb)
			if target.Addr().String() != tc.wantData || target.Port() < clusterDataLo || target.Port() > clusterDataHi {
				t.Errorf("%s from %s: data address %s, want %s on a port of %s\n%s",
					tc.verb, tc.client, target, tc.wantData, clusterDataPorts, ctl.Transcript())
			}
			want := pinholeKey(tc.client, clusterPodV4, int(target.Port()))
			if els := readPinholes(ctx, t, c.Pod, ownPinholeSets); !isOnly(els, ownPinholes4, want) {
				t.Errorf("while the transfer is pending the pod's table inet ftpgate holds %v; want exactly %s",
					els, strings.Join(want, " . "))
			}
			if err := retrieve(ctx, ctl, tc.ns, target, oneFile, nil); err != nil {
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
