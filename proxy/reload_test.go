package proxy

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
)

// TestReload: a reload changes what new data plans advertise while a
// session that began before keeps its own; a listener added by the reload
// accepts, a removed one does not, and its session runs on; a reload that
// changes the mode or does not validate changes nothing.
func TestReload(t *testing.T) {
	rec := &recorder{}
	var cfg0 Config
	h := newHarness(t, ServerPassive, func(_ *fakeFTP, c *Config) {
		c.Advertise = nat.StaticAddr(netip.MustParseAddr("127.0.0.1"))
		c.Observer = rec
		cfg0 = *c
	})
	h.ftp.files["f"] = []byte("before and after")
	old := h.dial()

	next := cfg0
	next.Advertise = nat.StaticAddr(netip.MustParseAddr("127.0.0.9"))
	next.Listen = []string{"127.0.0.3:0"}
	if err := h.srv.Reload(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	addrs := h.srv.Addrs()
	if len(addrs) != 1 || addrs[0].Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("listeners after reload: %v, want one on 127.0.0.3", addrs)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Fatalf("the removed listener %s still accepts", h.addr)
	}
	// The session from before the reload advertises the old address and
	// still transfers.
	ap, err := rewrite.ParsePASV(old.cmd(227, "PASV"))
	if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("old session advertised %v (%v), want 127.0.0.1", ap, err)
	}
	d := dialData(t, ap)
	old.cmd(150, "RETR f")
	got, _ := io.ReadAll(d)
	old.expect(226)
	if string(got) != "before and after" {
		t.Fatalf("old session got %q", got)
	}
	// A new session on the new listener advertises the new address.
	h.addr = addrs[0].String()
	fresh := h.dial()
	ap, err = rewrite.ParsePASV(fresh.cmd(227, "PASV"))
	if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.9") {
		t.Fatalf("new session advertised %v (%v), want 127.0.0.9", ap, err)
	}
	fresh.cmd(221, "QUIT")
	old.cmd(221, "QUIT")

	bad := next
	bad.Mode = ModeRedirect
	bad.Upstream = ""
	if err := h.srv.Reload(t.Context(), bad); err == nil {
		t.Fatal("a reload that changes the mode was accepted")
	}
	bad = next
	bad.Listen = nil
	if err := h.srv.Reload(t.Context(), bad); err == nil {
		t.Fatal("a reload without listeners was accepted")
	}
	if got := h.srv.Addrs(); !slices.Equal(got, addrs) {
		t.Fatalf("a refused reload changed the listeners: %v, want %v", got, addrs)
	}
	var ok, failed int
	rec.mu.Lock()
	for _, e := range rec.events {
		if r, is := e.(ReloadEvent); is {
			if r.Err == nil {
				ok++
			} else {
				failed++
			}
		}
	}
	rec.mu.Unlock()
	if ok != 1 || failed != 2 {
		t.Fatalf("reload events: %d ok, %d failed; want 1 and 2", ok, failed)
	}
}
