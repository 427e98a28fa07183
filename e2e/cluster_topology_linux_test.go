//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue #6's tests (cluster_linux_test.go, haproxy_linux_test.go) need shapes newTopology does
// not build: a pod, a node in front of it, several clients, a load balancer. A lab builds any
// such shape from namespaces joined by veth pairs, with the same rules as newTopology: only
// 198.18.0.0/15 addresses, nothing in the root namespace, and every namespace (and whatever
// runs in it) removed in t.Cleanup, also when the test fails.

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
func clusterOutsideV4(i int) string     { return fmt.Sprintf("198.18.%d.2", 110+i) }
func clusterNodeOutsideV4(i int) string { return fmt.Sprintf("198.18.%d.1", 110+i) }

// lab is one test's set of network namespaces.
type lab struct {
	t      testing.TB
	prefix string    // "fk-<random>"
	tp     *topology // for removeNamespace and sysctl, which need only names
}

// newLab returns an empty lab with a fresh namespace prefix.
func newLab(t testing.TB) *lab {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random namespace prefix: %v", err)
	}
	p := "fk-" + hex.EncodeToString(b[:])
	return &lab{t: t, prefix: p, tp: &topology{Prefix: p}}
}

// ns creates namespace <prefix>-<name> with its loopback up, registers its removal, and
// returns its full name.
func (l *lab) ns(name string) string {
	l.t.Helper()
	full := l.prefix + "-" + name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runIP(ctx, "netns", "add", full); err != nil {
		l.t.Fatalf("create namespace: %v", err)
	}
	l.t.Cleanup(func() { l.tp.removeNamespace(l.t, full) })
	if err := runIP(ctx, "-n", full, "link", "set", "lo", "up"); err != nil {
		l.t.Fatalf("lab %s: %v", l.prefix, err)
	}
	return full
}

// link joins namespaces a and b with a veth pair created inside a, its peer moved straight into
// b, so that nothing appears in the root namespace. Addresses are given with their prefix
// length, e.g. "198.18.100.1/24".
func (l *lab) link(a, ifA, addrA, b, ifB, addrB string) {
	l.t.Helper()
	l.ip([]string{"-n", a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b},
		[]string{"-n", a, "addr", "add", addrA, "dev", ifA},
		[]string{"-n", b, "addr", "add", addrB, "dev", ifB},
		[]string{"-n", a, "link", "set", ifA, "up"},
		[]string{"-n", b, "link", "set", ifB, "up"})
}

// defaultRoute sends ns's IPv4 traffic through via.
func (l *lab) defaultRoute(ns, via string) {
	l.t.Helper()
	l.ip([]string{"-n", ns, "route", "add", "default", "via", via})
}

func (l *lab) ip(cmds ...[]string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range cmds {
		if err := runIP(ctx, c...); err != nil {
			l.t.Fatalf("lab %s: %v", l.prefix, err)
		}
	}
}

// forwarding turns on IPv4 forwarding in ns.
func (l *lab) forwarding(ns string) {
	l.t.Helper()
	if err := l.tp.sysctl(ns, "net/ipv4/ip_forward", "1"); err != nil {
		l.t.Fatal(err)
	}
}

// view is a topology whose proxy namespace is proxy and whose client namespace is client, so
// that startGate runs ftpgate (and reads its admin endpoint) in proxy.
func (l *lab) view(proxy, client string) *topology {
	return &topology{Prefix: l.prefix, Proxy: proxy, Client: client}
}

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
	l := newLab(t)
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

// startLocalVsftpd starts vsftpd in ns on addr only (the pod's loopback), configured as a
// server behind an inbound sidecar is: no passive address and no passive port range. Its
// directory holds the fixtures.
func startLocalVsftpd(t testing.TB, ns, addr string) *ftpServer {
	t.Helper()
	requirePrereqs(t, needVsftpd)
	u, err := user.Lookup(e2eUser)
	if err != nil {
		t.Fatalf("test user: %v (%s)", err, installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("vsftpd address %q: want IPv4:PORT", addr)
	}

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
	cfg := filepath.Join(conf, "vsftpd.conf")
	writeFile(t, cfg, fmt.Sprintf(`# generated by ftpgate e2e: an FTP server behind an inbound sidecar
listen=YES
listen_ipv6=NO
listen_address=%s
listen_port=%s
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=%s
userlist_enable=NO
local_root=%s
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=%s
pasv_enable=YES
port_enable=YES
seccomp_sandbox=NO
max_clients=0
max_per_ip=0
delay_failed_login=0
xferlog_enable=YES
vsftpd_log_file=%s
`, host, port, e2ePAMService, root, empty, s.log))

	out, err := os.Create(filepath.Join(conf, "vsftpd.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd := nsCommand(context.Background(), ns, vsftpdBin, cfg)
	cmd.Stdout, cmd.Stderr = out, out
	s.proc = startProcess(t, vsftpd, cmd)
	t.Cleanup(func() {
		_ = s.proc.Stop(5 * time.Second)
		if t.Failed() {
			for _, f := range []string{out.Name(), s.log} {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					t.Logf("vsftpd %s (tail):\n%s", filepath.Base(f), tail(b, 30))
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := waitPort(ctx, ns, addr, "220", s.proc); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("vsftpd not ready: %v\noutput:\n%s", err, tail(b, 30))
	}
	return s
}

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

// recordHost returns the address part of a record's "address:port" field, or "".
func recordHost(r logRecord, field string) string {
	ap, err := netip.ParseAddrPort(r.str(field))
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// gateCounters reads ftpgate's own counters and its garbage collection count from
// /debug/vars, and nothing else: cheap enough to sample under load (gate.Vars also counts fds
// and listening sockets).
func gateCounters(ctx context.Context, g *gate) (gateVars, error) {
	var v gateVars
	body, code, err := g.get(ctx, "/debug/vars")
	if err != nil {
		return v, fmt.Errorf("GET /debug/vars: %w", err)
	}
	if code != http.StatusOK {
		return v, fmt.Errorf("GET /debug/vars: status %d", code)
	}
	var all struct {
		Ftpgate  *gateVars `json:"ftpgate"`
		Memstats struct{ NumGC uint32 }
	}
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		return v, fmt.Errorf("GET /debug/vars: %w", err)
	}
	if all.Ftpgate == nil {
		return v, fmt.Errorf(`GET /debug/vars: no "ftpgate" object in %.200s`, body)
	}
	v = *all.Ftpgate
	v.NumGC = all.Memstats.NumGC
	return v, nil
}

// collectGarbage makes ftpgate collect garbage n more times, by asking for /debug/vars (every
// answer allocates) until it has; bounded by ctx. Go pools the pipes io.Copy splices through
// until a collection, so pipes left after that are leaked, not pooled.
func collectGarbage(ctx context.Context, g *gate, n uint32) error {
	first, err := gateCounters(ctx, g)
	if err != nil {
		return err
	}
	for {
		v, err := gateCounters(ctx, g)
		if err != nil {
			return err
		}
		if v.NumGC-first.NumGC >= n {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ftpgate collected garbage %d times, not %d, before %w", v.NumGC-first.NumGC, n, ctx.Err())
		}
	}
}
