package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// onePort returns a one-port range that is free on loopback now.
func onePort(t *testing.T) nat.PortRange {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return nat.PortRange{Lo: p, Hi: p}
}

// dialFrom logs in to the proxy from a chosen loopback source address.
func (h *harness) dialFrom(src string) *client {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	cl := &client{t: h.t, c: c, tp: textproto.NewConn(c)}
	cl.expect(220)
	cl.cmd(331, "USER u")
	cl.cmd(230, "PASS p")
	return cl
}

// freeRun returns a range of n ports that are free on loopback now, below
// the kernel's ephemeral range, so that no connection of another test takes
// one of them meanwhile (a port next to a free ephemeral one may not be).
func freeRun(t *testing.T, n int) nat.PortRange {
	t.Helper()
	lo, _, err := ephemeralPorts()
	if err != nil {
		lo = 32768 // Linux's default; other systems start higher
	}
	for base := lo - 1000; base > 1024 && base > lo-11000; base -= uint16(n) {
		var held []net.Listener
		for p := base; p < base+uint16(n); p++ {
			l, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p).String())
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return nat.PortRange{Lo: base, Hi: base + uint16(n) - 1}
		}
	}
	t.Fatalf("no %d free ports in a row below the ephemeral range", n)
	return nat.PortRange{}
}

// ephemeralPorts reads the kernel's ephemeral port range.
func ephemeralPorts() (lo, hi uint16, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	var l, h int
	if _, err := fmt.Sscan(string(b), &l, &h); err != nil {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: %w", b, err)
	}
	return uint16(l), uint16(h), nil
}

func dialDataFrom(t *testing.T, src string, ap netip.AddrPort) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatalf("data connection from %s to %s: %v", src, ap, err)
	}
	return c
}

// TestPortSharedByClients: with one data port, sessions of different client
// addresses wait on it at the same time and each gets its own data.
func TestPortSharedByClients(t *testing.T) {
	r := onePort(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Listen = []string{"127.0.0.1:0"}
		c.PassivePorts = r
	})
	h.ftp.files["a"] = []byte("file for client a")
	h.ftp.files["b"] = []byte("file for client b")
	a, b := h.dialFrom("127.0.0.1"), h.dialFrom("127.0.0.2")
	pa, pb := a.passive("EPSV"), b.passive("EPSV")
	if pa.Port() != r.Lo || pb.Port() != r.Lo {
		t.Fatalf("ports %d and %d, want both on the only port %d", pa.Port(), pb.Port(), r.Lo)
	}
	if st := h.srv.Stats(); st.DataPortsInUse != 1 || st.DataPortsTotal != 1 {
		t.Fatalf("data ports in use %d of %d, want 1 of 1", st.DataPortsInUse, st.DataPortsTotal)
	}
	// b connects first: the hub must route by source address, not order.
	db := dialDataFrom(t, "127.0.0.2", pb)
	da := dialDataFrom(t, "127.0.0.1", pa)
	b.cmd(150, "RETR b")
	a.cmd(150, "RETR a")
	gotB, _ := io.ReadAll(db)
	gotA, _ := io.ReadAll(da)
	b.expect(226)
	a.expect(226)
	if string(gotA) != "file for client a" || string(gotB) != "file for client b" {
		t.Fatalf("client a got %q, client b got %q", gotA, gotB)
	}
}

// TestPortCollisionWaits: two sessions of one client address never share a
// port; the second PASV waits until the first expectation ends.
func TestPortCollisionWaits(t *testing.T) {
	r := onePort(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { c.PassivePorts = r })
	h.ftp.files["f"] = []byte("data")
	a, b := h.dialFrom("127.0.0.1"), h.dialFrom("127.0.0.1")
	pa := a.passive("EPSV")

	got := make(chan string, 1)
	go func() {
		b.tp.PrintfLine("EPSV")
		code, msg, _ := b.tp.ReadResponse(0)
		got <- msg
		_ = code
	}()
	select {
	case msg := <-got:
		t.Fatalf("second session got %q while the only port was taken for its address", msg)
	case <-time.After(300 * time.Millisecond):
	}
	da := dialDataFrom(t, "127.0.0.1", pa)
	a.cmd(150, "RETR f")
	io.ReadAll(da)
	a.expect(226)
	select {
	case msg := <-got:
		if _, err := rewrite.ParseEPSV(msg); err != nil {
			t.Fatalf("second session: %q", msg)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("second session still waiting after the port was freed")
	}
}

// TestPortCollisionGivesUp: if the port stays taken, the second session
// hears 425 and goes on.
func TestPortCollisionGivesUp(t *testing.T) {
	r := onePort(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.PassivePorts = r
		c.IdleTimeout = time.Minute // session a must outlive the wait
	})
	a, b := h.dialFrom("127.0.0.1"), h.dialFrom("127.0.0.1")
	a.passive("EPSV")
	start := time.Now()
	b.cmd(425, "EPSV")
	if d := time.Since(start); d < expectWait/2 {
		t.Fatalf("gave up after %v, want about %v", d, expectWait)
	}
	b.cmd(221, "QUIT")
}

// TestPortsRest: a released port goes to the back of the line, so that a
// peer meets every other port of the range before the one it just used.
func TestPortsRest(t *testing.T) {
	r := freeRun(t, 3)
	h := newDataPorts(dataPortsConfig{Ports: r, Log: zap.NewNop()}, nat.NewFake())
	ip, peer := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")
	var got []uint16
	for range 6 {
		dp, err := h.expect(t.Context(), ip, peer, peer)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dp.addr.Port())
		dp.release()
	}
	for i := 3; i < 6; i++ {
		if got[i] != got[i-3] {
			t.Fatalf("ports in order %v: want the three ports in turn", got)
		}
	}
	if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Fatalf("ports in order %v: a port came again before the others", got)
	}
}

// TestLeftListenerStaysUntilRelease: an expectation that leaves (its legs are
// up) takes itself off its listener, but the listener stays open until the
// release after the transfer. Meanwhile another expectation of the same peer
// can take the port and its listener, and then the first release must not
// close it under the second.
func TestLeftListenerStaysUntilRelease(t *testing.T) {
	r := onePort(t)
	h := newDataPorts(dataPortsConfig{Ports: r, Log: zap.NewNop()}, nat.NewFake())
	ip, peer := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")
	first, err := h.expect(t.Context(), ip, peer, peer)
	if err != nil {
		t.Fatal(err)
	}
	first.leave()
	if n := h.lns.Load(); n != 1 {
		t.Fatalf("%d data listeners after leave, want the one still open", n)
	}
	// The only port is free for the peer again, at once: reserve, not
	// reserveWait's retry, gives it.
	h.mu.Lock()
	second, err := h.reserve(ip, peer)
	h.mu.Unlock()
	if err != nil {
		t.Fatalf("the port of an expectation that left is not free for its peer: %v", err)
	}
	second.hop = peer
	if second.addr != first.addr || h.lns.Load() != 1 {
		t.Fatalf("second expectation on %s with %d listeners, want %s on the one listener", second.addr, h.lns.Load(), first.addr)
	}
	first.release() // the listener serves second now: it stays
	c := dialDataFrom(t, "127.0.0.1", second.addr)
	got, err := second.accept(t.Context(), time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("second expectation after the first's release: %v", err)
	}
	got.Close()
	c.Close()
	second.release()
	if n := h.lns.Load(); n != 0 {
		t.Fatalf("%d data listeners after the last release, want 0", n)
	}
	if c, err := net.DialTimeout("tcp", second.addr.String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after the last release", second.addr)
	}
	// leave then release, and a second release: the listener goes once.
	third, err := h.expect(t.Context(), ip, peer, peer)
	if err != nil {
		t.Fatal(err)
	}
	third.leave()
	third.release()
	third.release()
	if n := h.lns.Load(); n != 0 {
		t.Fatalf("%d data listeners after leave and two releases, want 0", n)
	}
}
