package nat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// lab is two namespaces joined by a veth pair named fg0 on both sides:
// client (198.18.0.2, 198.18.0.3, fd00:18::2) and gateway (198.18.0.1,
// fd00:18::1), where ftpgate's table lives.
type lab struct {
	client, gw *testNS
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{client: newNS(t), gw: newNS(t)}
	l.client.ip(t, "link", "add", "fg0", "type", "veth", "peer", "name", "fg0", "netns", l.gw.name)
	for _, a := range []string{"198.18.0.2/24", "198.18.0.3/24", "fd00:18::2/64"} {
		args := []string{"addr", "add", a, "dev", "fg0"}
		if netip.MustParsePrefix(a).Addr().Is6() {
			args = append(args, "nodad")
		}
		l.client.ip(t, args...)
	}
	l.gw.ip(t, "addr", "add", "198.18.0.1/24", "dev", "fg0")
	l.gw.ip(t, "addr", "add", "fd00:18::1/64", "dev", "fg0", "nodad")
	l.client.ip(t, "link", "set", "fg0", "up")
	l.gw.ip(t, "link", "set", "fg0", "up")
	return l
}

// serve listens on addr inside ns and answers every connection with one
// line, "hello <port>", then echoes what it reads until the peer closes.
func serve(t *testing.T, ns *testNS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { acceptLoop(ln, &wg) })
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

func acceptLoop(ln net.Listener, wg *sync.WaitGroup) {
	port := ln.Addr().(*net.TCPAddr).Port
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() { answer(c, port) })
	}
}

func answer(c net.Conn, port int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "hello %d\n", port); err != nil {
		return
	}
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// dial connects from inside ns, from address from, within timeout, and
// reads the greeting line.
func dial(ns *testNS, from, to string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err = d.Dial("tcp", to)
		return err
	})
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connected but no greeting: %w", err)
	}
	_, port, _ := net.SplitHostPort(to)
	if line != "hello "+port+"\n" {
		c.Close()
		return nil, fmt.Errorf("greeting %q from %s", line, to)
	}
	return c, nil
}

// refusedWithin is how long a connection attempt waits for an answer that
// a dropped SYN never brings.
const refusedWithin = 400 * time.Millisecond

func TestPacketsNeedPinhole(t *testing.T) {
	l := newLab(t)
	fw := newFirewall(t, l.gw, Config{DataPorts: []PortRange{{40000, 40100}}})
	for _, addr := range []string{"198.18.0.1:40001", "198.18.0.1:40002", "[fd00:18::1]:40001", "198.18.0.1:2121"} {
		serve(t, l.gw, addr)
	}
	ph := func(peer, local string) Pinhole {
		return Pinhole{Peer: netip.MustParseAddr(peer), Local: netip.MustParseAddrPort(local)}
	}
	tests := []struct {
		name     string
		pinholes []Pinhole
		from, to string
		admitted bool
	}{
		{name: "no pinhole", from: "198.18.0.2", to: "198.18.0.1:40001"},
		{name: "pinhole for this peer", pinholes: []Pinhole{ph("198.18.0.2", "198.18.0.1:40001")},
			from: "198.18.0.2", to: "198.18.0.1:40001", admitted: true},
		{name: "pinhole for another peer", pinholes: []Pinhole{ph("198.18.0.9", "198.18.0.1:40001")},
			from: "198.18.0.2", to: "198.18.0.1:40001"},
		{name: "pinhole for the peer's other address", pinholes: []Pinhole{ph("198.18.0.2", "198.18.0.1:40001")},
			from: "198.18.0.3", to: "198.18.0.1:40001"},
		{name: "pinhole for another port", pinholes: []Pinhole{ph("198.18.0.2", "198.18.0.1:40002")},
			from: "198.18.0.2", to: "198.18.0.1:40001"},
		{name: "ipv4-mapped pinhole", pinholes: []Pinhole{ph("::ffff:198.18.0.2", "[::ffff:198.18.0.1]:40002")},
			from: "198.18.0.2", to: "198.18.0.1:40002", admitted: true},
		{name: "port outside the data ports", from: "198.18.0.2", to: "198.18.0.1:2121", admitted: true},
		{name: "ipv6 no pinhole", from: "fd00:18::2", to: "[fd00:18::1]:40001"},
		{name: "ipv6 pinhole for this peer", pinholes: []Pinhole{ph("fd00:18::2", "[fd00:18::1]:40001")},
			from: "fd00:18::2", to: "[fd00:18::1]:40001", admitted: true},
		{name: "ipv6 pinhole for another peer", pinholes: []Pinhole{ph("fd00:18::9", "[fd00:18::1]:40001")},
			from: "fd00:18::2", to: "[fd00:18::1]:40001"},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range tc.pinholes {
				if err := fw.Open(ctx, p, 0); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				for _, p := range tc.pinholes {
					if err := fw.Close(ctx, p); err != nil {
						t.Error(err)
					}
				}
			}()
			timeout := refusedWithin
			if tc.admitted {
				timeout = 3 * time.Second
			}
			c, err := dial(l.client, tc.from, tc.to, timeout)
			if c != nil {
				c.Close()
			}
			switch {
			case tc.admitted && err != nil:
				t.Errorf("%s -> %s: %v, want a connection", tc.from, tc.to, err)
			case !tc.admitted && err == nil:
				t.Errorf("%s -> %s connected, want no answer", tc.from, tc.to)
			case !tc.admitted && !isTimeout(err):
				t.Errorf("%s -> %s: %v, want a timeout (dropped SYN)", tc.from, tc.to, err)
			}
		})
	}
	if n := droppedPackets(t, l.gw); n == 0 {
		t.Errorf("drop counter of 40000-40100 is 0 after refused connections")
	} else {
		t.Logf("data-port drop counter: %d packets", n)
	}
}

func TestEstablishedFlowOutlivesPinhole(t *testing.T) {
	l := newLab(t)
	fw := newFirewall(t, l.gw, Config{DataPorts: []PortRange{{40000, 40100}}})
	serve(t, l.gw, "198.18.0.1:40001")
	ctx := context.Background()
	p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001")}
	if err := fw.Open(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	c, err := dial(l.client, "198.18.0.2", "198.18.0.1:40001", 2*time.Second)
	if err != nil {
		t.Fatalf("with pinhole: %v", err)
	}
	defer c.Close()
	// The proxy closes the pinhole as soon as the expected peer connected.
	if err := fw.Close(ctx, p); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for i := range 3 {
		msg := "data " + strconv.Itoa(i) + "\n"
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("write after Close: %v", err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo after Close = %q, %v; want %q", got, err, msg)
		}
	}
	c2, err := dial(l.client, "198.18.0.2", "198.18.0.1:40001", refusedWithin)
	if err == nil {
		c2.Close()
		t.Fatal("a second connection got through after Close")
	}
	if !isTimeout(err) {
		t.Fatalf("second connection: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var counterRE = regexp.MustCompile(`tcp dport 40000-40100 counter packets (\d+) bytes \d+ drop`)

func droppedPackets(t *testing.T, ns *testNS) int {
	t.Helper()
	out := ns.nft(t, "list", "chain", "inet", "ftpgate", "input")
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no drop rule for 40000-40100 in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
