package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/policy"
)

// Lazy upstream connect (limits.upstream_connect: lazy): ftpgate greets the
// client itself and dials the server only after USER.

// TestLazyConnect: a port scan, an idle client and one that asks for FEAT
// and HELP never reach the server; USER makes the connection, and the
// server sees the login as the client sent it.
func TestLazyConnect(t *testing.T) {
	ls := newLineServer(t)
	rec := &recorder{}
	h := newHarness(t, ServerPassive, func(_ *fakeFTP, c *Config) {
		c.Upstream, c.Limits.UpstreamConnect, c.Observer = ls.addr().String(), policy.UpstreamLazy, rec
	})

	// A port scan: connect and leave.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// An idle client, and one that only asks.
	h.dialGreeted()
	cl := h.dialGreeted()
	cl.cmd(211, "FEAT")
	cl.cmd(214, "HELP")
	cl.cmd(503, "PASS early")
	cl.cmd(530, "LIST")
	waitFor(t, func() bool { return rec.count()["session-end"] >= 1 })
	if conns, _ := ls.seen(); conns != 0 {
		t.Fatalf("the server got %d connections before any USER, want none", conns)
	}
	if n := rec.count()["upstream-connect"]; n != 0 {
		t.Fatalf("%d upstream connections attempted, want none", n)
	}

	cl.cmd(331, "USER u@not-a-destination")
	cl.cmd(230, "PASS pw")
	cl.cmd(200, "NOOP")
	cl.cmd(221, "QUIT")
	conns, lines := ls.seen()
	if conns != 1 || !slices.Equal(lines, []string{"USER u@not-a-destination", "PASS pw", "NOOP", "QUIT"}) {
		t.Fatalf("server saw %d connections and %q, want one with the login as sent", conns, lines)
	}
}

// TestLazyTransfer: a lazily connected reverse session moves files like an
// eager one.
func TestLazyTransfer(t *testing.T) {
	h := newHarness(t, ServerPassive, func(_ *fakeFTP, c *Config) { c.Limits.UpstreamConnect = policy.UpstreamLazy })
	want := payload(100 << 10)
	h.ftp.files["f"] = want
	cl := h.dial() // 220 (ftpgate's), USER, PASS
	if got := cl.transfer("EPSV", "RETR f", nil); !bytes.Equal(got, want) {
		t.Fatalf("download: got %d bytes, want %d identical", len(got), len(want))
	}
	cl.cmd(221, "QUIT")
	if cmds := h.ftp.commands(); len(cmds) == 0 || cmds[0] != "USER" {
		t.Fatalf("server commands %v: want USER first", cmds)
	}
}

// TestLazyRedirectRefusedAtOnce: in a transparent mode the destination is
// known before the login, so a refused one gets 421 at once, without a
// greeting and without a connection.
func TestLazyRedirectRefusedAtOnce(t *testing.T) {
	rec := &recorder{}
	h := transparentHarness(t, fakeAddr, func(c *Config) {
		c.Limits.UpstreamConnect, c.Observer = policy.UpstreamLazy, rec
		c.Policy.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")}
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c, tp: newTextproto(c)}
	cl.expect(421)
	waitFor(t, func() bool { return rec.count()["session-end"] == 1 })
	if n := rec.count()["upstream-connect"]; n != 0 {
		t.Fatalf("%d upstream connections attempted, want none", n)
	}
}

// TestLazyRedirect: an allowed transparent session is greeted by ftpgate
// and reaches its original destination after USER.
func TestLazyRedirect(t *testing.T) {
	h := transparentHarness(t, fakeAddr, func(c *Config) { c.Limits.UpstreamConnect, c.DivertData = policy.UpstreamLazy, false })
	h.ftp.files["f"] = []byte("hello")
	cl := h.dial()
	cl.c.SetDeadline(time.Now().Add(10 * time.Second))
	if got := cl.transfer("PASV", "RETR f", nil); string(got) != "hello" {
		t.Fatalf("download got %q", got)
	}
	cl.cmd(221, "QUIT")
}
