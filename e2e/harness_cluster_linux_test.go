//go:build linux

package e2e

import (
	"fmt"
	"testing"
)

// Addresses of the simulated cluster. The node routes between its links; every other namespace
// has one link to the node and a default route through it.
const (
	// The pod network, 198.18.100.0/23: the FTP server pod and an in-cluster client pod.
	clusterPodNet      = "198.18.100.0/23"
	clusterPodV4       = "198.18.100.10"
	clusterNodePodV4   = "198.18.100.1"
	clusterInPodV4     = "198.18.101.10" // a client pod on the pod network
	clusterNodeInPodV4 = "198.18.101.1"
	// Addresses kube-proxy translates to the pod: the Service's load-balancer address and its
	// ClusterIP. Neither is on any interface.
	clusterLBV4        = "198.18.60.1"
	clusterClusterIPV4 = "198.18.96.10"
	// The load-balancer namespace of the haproxy test: its front address and the source of its
	// connections to the pod.
	clusterHAProxyV4     = "198.18.61.10"
	clusterNodeHAProxyV4 = "198.18.61.1"
	// A host outside that talks to the pod directly, bypassing the balancer.
	clusterIntruderV4     = "198.18.120.2"
	clusterNodeIntruderV4 = "198.18.120.1"

	// The FTP server of the inbound sidecar: on the pod's loopback, as in
	// deploy/kubernetes/inbound-sidecar.yaml.
	clusterServerAddr = "127.0.0.1:2121"
	// The Service's eight data ports.
	clusterDataPorts = "40000-40007"
	clusterDataLo    = 40000
	clusterDataHi    = 40007
)

// clusterOutsideV4 is the i-th outside client's address (i from 0), and clusterNodeOutsideV4
// the node's end of its link: each client has a /24 of its own, 198.18.110.0/24 onward.
func clusterOutsideV4(i int) string { return fmt.Sprintf("198.18.%d.2", 110+i) }

func clusterNodeOutsideV4(i int) string { return fmt.Sprintf("198.18.%d.1", 110+i) }

// cluster is the inbound sidecar's world: a node between outside clients and two pods of the
// pod network, the FTP server pod (vsftpd on its loopback behind ftpgate) and a client pod.
//
//	outside-0..n-1 ──┐
//	                 ├── node ── pod        (198.18.100.10: ftpgate :21, vsftpd 127.0.0.1:2121)
//	                 │     └──── inpod      (198.18.101.10: an in-cluster client)
//	(balancer, intruder: see the haproxy test)
type cluster struct {
	*lab
	Node    string
	Pod     string
	InPod   string
	Outside []string // client namespaces outside the cluster, i-th at clusterOutsideV4(i)
}

// newCluster builds the node, the two pods and n outside clients, with forwarding on the node.
// The node translates nothing yet: see kubeProxyRuleset.
func newCluster(t testing.TB, outside int) *cluster {
	t.Helper()
	l := newLab(t, "fk")
	c := &cluster{lab: l, Node: l.ns("node"), Pod: l.ns("pod"), InPod: l.ns("inpod")}
	l.forwarding(c.Node)
	l.link(c.Node, "pod0", clusterNodePodV4+"/24", c.Pod, "eth0", clusterPodV4+"/24")
	l.defaultRoute(c.Pod, clusterNodePodV4)
	l.link(c.Node, "inpod0", clusterNodeInPodV4+"/24", c.InPod, "eth0", clusterInPodV4+"/24")
	l.defaultRoute(c.InPod, clusterNodeInPodV4)
	for i := range outside {
		ns := l.ns(fmt.Sprintf("out%d", i))
		l.link(c.Node, fmt.Sprintf("out%d", i), clusterNodeOutsideV4(i)+"/24", ns, "eth0", clusterOutsideV4(i)+"/24")
		l.defaultRoute(ns, clusterNodeOutsideV4(i))
		c.Outside = append(c.Outside, ns)
	}
	return c
}

// kubeProxyRuleset is what kube-proxy does on the node for a LoadBalancer Service with
// externalTrafficPolicy: Local, written as one nftables table of the node namespace (a test
// namespace: its firewall is this test's): the load balancer's address and the ClusterIP are
// translated to the pod on port 21 and the eight data ports, keeping the client's source
// address; the pod network is flat; from outside, nothing reaches a pod except through the
// Service. No FTP conntrack helper anywhere.
var kubeProxyRuleset = fmt.Sprintf(`
table ip kube {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr { %[1]s, %[2]s } tcp dport { 21, %[3]s } dnat to %[4]s
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		oifname "pod0" ct status dnat accept
		oifname "pod0" ip saddr %[5]s accept
		oifname "pod0" counter drop
	}
}
`, clusterLBV4, clusterClusterIPV4, clusterDataPorts, clusterPodV4, clusterPodNet)

// sidecarGate is the inbound sidecar's ftpgate command line in the pod: a reverse proxy to the
// server on the pod's loopback with the Service's eight data ports, and extra flags.
func sidecarGate(extra ...string) gateConfig {
	return gateConfig{
		Listen:       []string{"0.0.0.0:21"},
		Upstream:     clusterServerAddr,
		PassivePorts: clusterDataPorts,
		Extra:        extra,
	}
}

// startSidecarVsftpd starts the inbound sidecar's FTP server in the pod: vsftpd on
// clusterServerAddr only (the pod's loopback), configured as a server behind an inbound
// sidecar is, with no passive port range. Its directory holds the fixtures.
func startSidecarVsftpd(t testing.TB, pod string) *ftpServer {
	t.Helper()
	return startVsftpd(t, pod, vsftpdOptions{Listen: clusterServerAddr, Unpinned: true})
}
