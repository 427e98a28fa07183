package proxy

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
)

// Transparent modes need the kernel for interception; here the hooks are
// fakes and the "original destination" is the fake server, so the session
// logic (server choice, loop and destination checks, advertised address) is
// tested on loopback. The e2e suite tests the real thing.

func transparentHarness(t *testing.T, orig func(ftp *fakeFTP) netip.AddrPort, tweak func(*Config)) *harness {
	return newHarness(t, "", func(f *fakeFTP, c *Config) {
		c.Mode = ModeRedirect
		c.Upstream = ""
		c.Listen = []string{"127.0.0.2:0"}
		c.DivertData = true
		c.Hooks.OriginalDst = func(*net.TCPConn) (netip.AddrPort, error) { return orig(f), nil }
		if tweak != nil {
			tweak(c)
		}
	})
}

func fakeAddr(f *fakeFTP) netip.AddrPort { return netip.MustParseAddrPort(f.addr()) }

func TestRedirectAdvertisesServer(t *testing.T) {
	h := transparentHarness(t, fakeAddr, nil)
	cl := h.dial()
	ap, err := rewrite.ParsePASV(cl.cmd(227, "PASV"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fakeAddr(h.ftp).Addr(); ap.Addr() != want {
		t.Fatalf("227 carries %s, want the original server %s", ap.Addr(), want)
	}
	dump := h.fw.Dump()
	if !strings.Contains(dump, "127.0.0.1 . 127.0.0.2 . ") {
		t.Fatalf("pinhole should admit the client to the data listener on 127.0.0.2:\n%s", dump)
	}
}

func TestRedirectDestinationRefused(t *testing.T) {
	h := transparentHarness(t, fakeAddr, func(c *Config) {
		c.Policy.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")}
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c}
	cl.tp = newTextproto(c)
	msg := cl.expect(421)
	if !strings.Contains(msg, "outside the allowed networks") {
		t.Errorf("421 text %q does not say why", msg)
	}
	if n := len(h.ftp.commands()); n != 0 {
		t.Errorf("the server saw %d commands; no upstream connection should be made", n)
	}
	if h.logs.FilterMessage("destination refused").Len() != 1 {
		t.Error("no audit log record for the refused destination")
	}
}

func TestRedirectLoopRefused(t *testing.T) {
	var self atomic.Value // the proxy's own address, known once it listens
	h := transparentHarness(t, func(*fakeFTP) netip.AddrPort { return self.Load().(netip.AddrPort) }, nil)
	self.Store(h.srv.Addrs()[0])
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c, tp: newTextproto(c)}
	cl.expect(421)
	if h.logs.FilterMessage("connection to ftpgate itself refused").Len() != 1 {
		t.Error("loop not logged")
	}
}

// TestSplitHorizon: clients of different networks are told different
// addresses (and, by a rule's port mapping, ports) for the same listener.
func TestSplitHorizon(t *testing.T) {
	r := onePort(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.PassivePorts = r
		c.AdvertiseRules = []AdvertiseRule{
			{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
				Addr: nat.StaticAddr(netip.MustParseAddr("198.18.9.9")), PortOffset: -1},
			{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")},
				Ports: map[uint16]uint16{r.Lo: 30000}},
		}
	})
	tests := []struct {
		src  string
		want netip.AddrPort
	}{
		{"127.0.0.1", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.Lo)},    // no rule: the listener
		{"127.0.0.2", netip.AddrPortFrom(netip.MustParseAddr("198.18.9.9"), r.Lo-1)}, // in-cluster style rule
		{"127.0.0.3", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 30000)},   // balancer port map only
	}
	for _, tt := range tests {
		cl := h.dialFrom(tt.src)
		got, err := rewrite.ParsePASV(cl.cmd(227, "PASV"))
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("client %s told %s, want %s", tt.src, got, tt.want)
		}
	}
}

// TestAdvertisedLocalAddressListens: when the advertised address is one of
// this host's (here another loopback address), the data listener is there,
// so the client's connection to it arrives.
func TestAdvertisedLocalAddressListens(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Advertise = nat.StaticAddr(netip.MustParseAddr("127.0.0.5"))
	})
	h.ftp.files["f"] = []byte("here")
	cl := h.dial()
	if got := cl.transfer("PASV", "RETR f", nil); string(got) != "here" {
		t.Fatalf("got %q", got)
	}
	if dump := h.fw.Ops(); len(dump) == 0 || !strings.Contains(dump[0], "127.0.0.5:") {
		t.Fatalf("pinhole ops %v: want the listener on the advertised 127.0.0.5", dump)
	}
}
