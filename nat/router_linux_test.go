package nat

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// router is three namespaces, client — gw — server, with gw forwarding
// between them: the transparent edge gateway.
//
//	client fg0: 198.18.0.2, 198.18.0.3, fd00:18::2, fd00:18::3 (default via gw)
//	gw     fg0: 198.18.0.1, fd00:18::1     fg1: 198.18.1.1, fd00:19::1
//	server fg1: 198.18.1.2, 198.18.1.3, fd00:19::2, fd00:19::3 (default via gw)
type router struct {
	client, gw, server *testNS
}

func newRouter(t *testing.T) *router {
	t.Helper()
	r := &router{client: newNS(t), gw: newNS(t), server: newNS(t)}
	r.client.ip(t, "link", "add", "fg0", "type", "veth", "peer", "name", "fg0", "netns", r.gw.name)
	r.server.ip(t, "link", "add", "fg1", "type", "veth", "peer", "name", "fg1", "netns", r.gw.name)
	addrs := []struct {
		ns    *testNS
		dev   string
		addrs []string
	}{
		{r.client, "fg0", []string{"198.18.0.2/24", "198.18.0.3/24", "fd00:18::2/64", "fd00:18::3/64"}},
		{r.gw, "fg0", []string{"198.18.0.1/24", "fd00:18::1/64"}},
		{r.gw, "fg1", []string{"198.18.1.1/24", "fd00:19::1/64"}},
		{r.server, "fg1", []string{"198.18.1.2/24", "198.18.1.3/24", "fd00:19::2/64", "fd00:19::3/64"}},
	}
	for _, a := range addrs {
		// No duplicate address detection, not even for the link-local
		// addresses: IPv6 would wait a second or two before it uses the
		// links.
		a.ns.sysctl(t, "net.ipv6.conf."+a.dev+".accept_dad=0")
		for _, addr := range a.addrs {
			args := []string{"addr", "add", addr, "dev", a.dev}
			if netip.MustParsePrefix(addr).Addr().Is6() {
				args = append(args, "nodad")
			}
			a.ns.ip(t, args...)
		}
		a.ns.ip(t, "link", "set", a.dev, "up")
	}
	r.client.ip(t, "route", "add", "default", "via", "198.18.0.1")
	r.client.ip(t, "-6", "route", "add", "default", "via", "fd00:18::1")
	r.server.ip(t, "route", "add", "default", "via", "198.18.1.1")
	r.server.ip(t, "-6", "route", "add", "default", "via", "fd00:19::1")
	r.gw.sysctl(t, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	return r
}

// sysctl sets kernel parameters of the namespace.
func (ns *testNS) sysctl(t testing.TB, settings ...string) {
	t.Helper()
	args := append([]string{"netns", "exec", ns.name, "sysctl", "-q", "-w"}, settings...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		testenv.Prereq(t, "sysctl %s in %s: %v: %s", strings.Join(settings, " "), ns.name, err, out)
	}
}

// listenIn listens on addr inside ns with opts, and closes the listener
// at the end of the test.
func listenIn(t *testing.T, ns *testNS, addr string, opts SocketOptions) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() (err error) {
		lc := net.ListenConfig{Control: opts.Control}
		ln, err = lc.Listen(t.Context(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.name, err)
	}
	return ln
}

// lineServer answers every connection ln accepts with one line, then
// closes it, until the test ends.
func lineServer(t *testing.T, ln net.Listener, answer func(c *net.TCPConn) string) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { answerLoop(ln, &wg, answer) })
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

func answerLoop(ln net.Listener, wg *sync.WaitGroup, answer func(c *net.TCPConn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s\n", answer(c.(*net.TCPConn)))
		})
	}
}

// unmapped returns a connection address without IPv4 mapping.
func unmapped(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// whoAmI answers "server <local address> from <peer address>".
func whoAmI(c *net.TCPConn) string {
	return "server " + unmapped(c.LocalAddr()).String() + " from " + unmapped(c.RemoteAddr()).Addr().String()
}

// origDst answers "gw <original destination>" (redirect mode).
func origDst(c *net.TCPConn) string {
	dst, err := OriginalDst(c)
	if err != nil {
		return "gw error: " + err.Error()
	}
	return "gw " + dst.String()
}

// tproxyDst answers "gw <local address>" (tproxy mode: the original
// destination).
func tproxyDst(c *net.TCPConn) string { return "gw " + unmapped(c.LocalAddr()).String() }

// serveWho starts a whoAmI server on each addr inside ns.
func serveWho(t *testing.T, ns *testNS, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		lineServer(t, listenIn(t, ns, a, SocketOptions{}), whoAmI)
	}
}

// probe connects from inside ns, from address from (empty: the kernel's
// choice), with opts, and returns the line the other end wrote.
func probe(ns *testNS, from, to string, opts SocketOptions, timeout time.Duration) (string, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		d := net.Dialer{Timeout: timeout, Control: opts.Control}
		if from != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		c, err = d.Dial("tcp", to)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("connected but no line: %w", err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// probeCase is one connection attempt and the line it must get, or
// wantErr (a substring of the error) if it must fail.
type probeCase struct {
	name     string
	ns       *testNS
	from, to string
	opts     SocketOptions
	want     string
	wantErr  string
}

func runProbes(t *testing.T, cases []probeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 2 * time.Second
			if tc.wantErr == "timeout" {
				timeout = refusedWithin // a dropped SYN is never answered
			}
			got, err := probe(tc.ns, tc.from, tc.to, tc.opts, timeout)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("%s -> %s = %q, %v; want error containing %q", tc.from, tc.to, got, err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Errorf("%s -> %s: %v; want %q", tc.from, tc.to, err, tc.want)
			case tc.wantErr == "" && got != tc.want:
				t.Errorf("%s -> %s answered %q; want %q", tc.from, tc.to, got, tc.want)
			}
		})
	}
}
