//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Addresses of the test topology. Only 198.18.0.0/15 and fd00::/8 are ever used.
//
//	client ns ──veth── proxy ns ──veth── server ns
//	                      └──veth── host ns (a third party: intruder, bounce target)
const (
	clientV4      = "198.18.0.2"
	proxyClientV4 = "198.18.0.1"
	proxyServerV4 = "198.18.1.1"
	serverV4      = "198.18.1.2"
	proxyHostV4   = "198.18.2.1"
	hostV4        = "198.18.2.2"

	clientV6      = "fd00:0:0:1::2"
	proxyClientV6 = "fd00:0:0:1::1"
	proxyServerV6 = "fd00:0:0:2::1"
	serverV6      = "fd00:0:0:2::2"
	proxyHostV6   = "fd00:0:0:3::1"
	hostV6        = "fd00:0:0:3::2"
)

// topology is one test's four network namespaces. Every namespace, and every process started
// in it, is removed in t.Cleanup, also when the test fails.
type topology struct {
	Prefix string // "fg-<random>"
	Client string
	Proxy  string
	Server string
	Host   string
}

// newTopology builds the namespaces and links, and registers their removal.
func newTopology(t testing.TB) *topology {
	t.Helper()
	l := newLab(t, "fg")
	tp := &topology{Prefix: l.prefix, Client: l.ns("client"), Proxy: l.ns("proxy"), Server: l.ns("server"), Host: l.ns("host")}
	// Every veth is created inside the proxy namespace with its peer moved straight into the
	// other namespace, so nothing ever appears in the root namespace.
	type link struct {
		peerNS           string
		proxyIf          string
		proxyV4, proxyV6 string
		peerV4, peerV6   string
	}
	links := []link{
		{tp.Client, "c0", proxyClientV4, proxyClientV6, clientV4, clientV6},
		{tp.Server, "s0", proxyServerV4, proxyServerV6, serverV4, serverV6},
		{tp.Host, "h0", proxyHostV4, proxyHostV6, hostV4, hostV6},
	}
	var cmds [][]string
	for _, l := range links {
		cmds = append(cmds,
			[]string{"-n", tp.Proxy, "link", "add", l.proxyIf, "type", "veth", "peer", "name", "eth0", "netns", l.peerNS},
			[]string{"-n", tp.Proxy, "addr", "add", l.proxyV4 + "/24", "dev", l.proxyIf},
			[]string{"-n", tp.Proxy, "addr", "add", l.proxyV6 + "/64", "dev", l.proxyIf, "nodad"},
			[]string{"-n", tp.Proxy, "link", "set", l.proxyIf, "up"},
			[]string{"-n", l.peerNS, "addr", "add", l.peerV4 + "/24", "dev", "eth0"},
			[]string{"-n", l.peerNS, "addr", "add", l.peerV6 + "/64", "dev", "eth0", "nodad"},
			[]string{"-n", l.peerNS, "link", "set", "eth0", "up"},
			[]string{"-n", l.peerNS, "route", "add", "default", "via", l.proxyV4},
			[]string{"-n", l.peerNS, "-6", "route", "add", "default", "via", l.proxyV6},
		)
	}
	l.ip(cmds...)
	// Forwarding in the proxy namespace lets clients reach servers directly (the baseline).
	//
	// No TIME_WAIT in the server namespace: servers open active-mode data connections from port
	// 20, so under this suite's load a server's connect to a recently used ftpgate data port can
	// hit its own TIME_WAIT entry for the same 4-tuple and fail with EADDRNOTAVAIL (a 425 to the
	// client). ftpgate cannot see the server's TIME_WAIT, so that would only make the suite
	// flaky. A 4-tuple still held by a live connection stays visible: ftpgate must not hand out
	// a data port whose previous connection from the same server is not closed yet.
	sysctls := []struct{ ns, key, val string }{
		{tp.Proxy, "net/ipv4/ip_forward", "1"},
		{tp.Proxy, "net/ipv6/conf/all/forwarding", "1"},
		{tp.Server, "net/ipv4/tcp_max_tw_buckets", "0"},
	}
	for _, s := range sysctls {
		if err := sysctl(s.ns, s.key, s.val); err != nil {
			t.Fatalf("build topology %s: %v", tp.Prefix, err)
		}
	}
	return tp
}

// sysctl writes /proc/sys/<key> as seen from inside namespace ns.
func sysctl(ns, key, val string) error {
	return inNetns(ns, func() error {
		// /proc/sys/net shows the network namespace of the thread that opens the file.
		f, err := os.OpenFile("/proc/sys/"+key, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", key, ns, err)
		}
		defer f.Close()
		if _, err := f.WriteString(val); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, val, ns, err)
		}
		return nil
	})
}

// removeNamespace kills whatever still runs in ns (all of it started by this test) and deletes it.
func removeNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for attempt := 0; attempt < 50; attempt++ {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			break
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		for _, s := range pids {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := runIP(ctx, "netns", "del", ns); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// diagnose adds to a "425 can't open data connection" error the TCP sockets of the server and
// proxy namespaces, which show what held the 4-tuple or port the data connection needed.
func (tp *topology) diagnose(err error) error {
	if err == nil || !strings.Contains(err.Error(), "425") {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b strings.Builder
	for _, ns := range []string{tp.Server, tp.Proxy} {
		ss, _ := nsrun.Command(ctx, ns, "ss", "-Htan").Output()
		fmt.Fprintf(&b, "\nTCP sockets in %s:\n%s", ns, tail(ss, 40))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

func runIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNetns runs fn on an OS thread inside namespace ns (nsrun.Do).
func inNetns(ns string, fn func() error) error { return nsrun.Do(nsrun.Path(ns), fn) }

// dialIn opens a connection from inside namespace ns.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listenIn opens a TCP listener inside namespace ns.
func listenIn(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// process is a long-running program the test started in a namespace (server, ftpgate, strace).
type process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed

	stopOnce sync.Once
	stopErr  error
}

// startProcess starts cmd and registers a cleanup that stops it (SIGTERM, then SIGKILL to its
// process group) if the test has not already done so.
func startProcess(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	return p
}

// Pid is the program's process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end by itself and returns how it ended.
func (p *process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s (pid %d) exited: %w", p.Name, p.Pid(), p.err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.Pid(), timeout)
	}
}

// Stop sends SIGTERM and waits up to grace for the exit; then it kills the process group. It
// returns an error if the process had to be killed or exited with a failure status.
func (p *process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
				_ = nsrun.KillGroup(p.Pid(), syscall.SIGKILL)
				<-p.done
				p.stopErr = fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.Name, p.Pid(), grace)
				return
			}
		}
		// Children it left behind (server sessions) belong to its process group.
		_ = nsrun.KillGroup(p.Pid(), syscall.SIGKILL)
		if p.err != nil {
			p.stopErr = fmt.Errorf("%s (pid %d) exited: %w", p.Name, p.Pid(), p.err)
		}
	})
	return p.stopErr
}

// waitPort polls until something in namespace ns accepts on addr and, if banner is not empty,
// sends a first line starting with it. The wait is bounded by ctx and ends early if p exits.
func waitPort(ctx context.Context, ns, addr, banner string, p *process) error {
	var last error
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited while waiting for %s: %v", p.Name, addr, p.err)
		}
		last = probe(ctx, ns, addr, banner)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing ready on %s in %s: %w (last: %v)", addr, ns, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, ns, addr, banner string) error {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dialIn(dctx, ns, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if banner == "" {
		return nil
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, len(banner))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read banner: %w", err)
	}
	if string(buf) != banner {
		return fmt.Errorf("banner %q, want %q", buf, banner)
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// hostPort joins host and port, bracketing IPv6 literals.
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// urlHost is host as it appears in a URL.
func urlHost(host string, port int) string {
	if port == 21 {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return hostPort(host, port)
}

// lab is one test's set of network namespaces, for shapes newTopology does not build: a pod,
// a node in front of it, several clients, a load balancer (harness_cluster_linux_test.go). A
// lab builds any such shape from namespaces joined by veth pairs, with the same rules as
// newTopology: only 198.18.0.0/15 addresses, nothing in the root namespace, and every namespace
// (and whatever runs in it) removed in t.Cleanup, also when the test fails.
type lab struct {
	t      testing.TB
	prefix string // "<kind>-<random>"
}

// newLab returns an empty lab whose namespaces are named <kind>-<random>-<name>.
func newLab(t testing.TB, kind string) *lab {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random namespace prefix: %v", err)
	}
	return &lab{t: t, prefix: kind + "-" + hex.EncodeToString(b[:])}
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
	l.t.Cleanup(func() { removeNamespace(l.t, full) })
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	if err := sysctl(ns, "net/ipv4/ip_forward", "1"); err != nil {
		l.t.Fatal(err)
	}
}

// view is a topology whose proxy namespace is proxy and whose client namespace is client, so
// that startGate runs ftpgate (and reads its admin endpoint) in proxy.
func (l *lab) view(proxy, client string) *topology {
	return &topology{Prefix: l.prefix, Proxy: proxy, Client: client}
}
