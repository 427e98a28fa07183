package proxy

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func ppHarness(t *testing.T) *harness {
	return newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Listen = []string{"127.0.0.1:0"}
		c.ProxyProtocol = ProxyProtocol{
			Trusted:      []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			Control:      true,
			Data:         true,
			SendUpstream: 1,
		}
	})
}

// TestProxyProtocolTrusted: a trusted balancer's v1 header on the control
// connection and v2 header on the data connection name the real client;
// logs and the data-peer check use it, the pinhole admits the balancer, and
// the server is told the client in a header of its own.
func TestProxyProtocolTrusted(t *testing.T) {
	h := ppHarness(t)
	h.ftp.files["f"] = []byte("via the balancer")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 198.18.0.77 127.0.0.1 5555 21\r\n")
	cl := &client{t: t, c: c, tp: textproto.NewConn(c)}
	cl.expect(220)
	cl.cmd(331, "USER u")
	cl.cmd(230, "PASS p")
	ap := cl.passive("EPSV")
	if dump := h.fw.Dump(); !strings.Contains(dump, "127.0.0.2 . 127.0.0.1 . ") {
		t.Errorf("pinhole should admit the balancer 127.0.0.2:\n%s", dump)
	}
	dc, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	var hdr bytes.Buffer
	writeProxyHeader(&hdr, 2, netip.MustParseAddrPort("198.18.0.77:6000"), ap)
	dc.Write(hdr.Bytes())
	cl.cmd(150, "RETR f")
	got, _ := io.ReadAll(dc)
	cl.expect(226)
	if string(got) != "via the balancer" {
		t.Fatalf("got %q", got)
	}
	cl.cmd(221, "QUIT")
	waitFor(t, func() bool { return h.logs.FilterMessage("session end").Len() == 1 })
	if rec := h.logs.FilterMessage("session start").All()[0].ContextMap(); rec["client"] != "198.18.0.77:5555" {
		t.Errorf("session start names client %v, want the header's 198.18.0.77:5555", rec["client"])
	}
	if cmds := h.ftp.commands(); len(cmds) == 0 || cmds[0] != "PROXY" {
		t.Errorf("server saw %v first, want our PROXY header", cmds)
	}
}

// TestProxyProtocolUntrusted: a header from anyone else is refused.
func TestProxyProtocolUntrusted(t *testing.T) {
	for _, hdr := range []string{"PROXY TCP4 198.18.0.77 127.0.0.1 5555 21\r\n", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"} {
		h := ppHarness(t)
		c, err := net.Dial("tcp", h.addr) // from 127.0.0.1: not trusted
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, hdr)
		cl := &client{t: t, c: c, tp: textproto.NewConn(c)}
		cl.expect(220)
		cl.expect(421)
		c.Close()
		waitFor(t, func() bool { return h.logs.FilterMessage("PROXY header from untrusted source refused").Len() == 1 })
		for _, cmd := range h.ftp.commands() {
			if cmd != "PROXY" { // our own header to the server is all it may see
				t.Errorf("the server received %s from a refused client", cmd)
			}
		}
	}
}

// TestProxyProtocolMissingHeader: a trusted balancer that sends no header is
// cut off without a session.
func TestProxyProtocolMissingHeader(t *testing.T) {
	h := ppHarness(t)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "USER u\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("got %q, want the connection closed", b)
	}
	waitFor(t, func() bool { return h.logs.FilterMessage("PROXY header refused").Len() == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 2s")
}

// TestSharedPinholeBehindBalancer: two clients behind one balancer wait on
// the only data port with the same pinhole; the first transfer must not
// close it under the second.
func TestSharedPinholeBehindBalancer(t *testing.T) {
	r := onePort(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Listen = []string{"127.0.0.1:0"}
		c.PassivePorts = r
		c.ProxyProtocol = ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Control: true, Data: true}
	})
	h.ftp.files["f"] = []byte("shared")
	lb := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	login := func(real string) (*client, netip.AddrPort) {
		c, err := lb.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, "PROXY TCP4 "+real+" 127.0.0.1 5555 21\r\n")
		cl := &client{t: t, c: c, tp: textproto.NewConn(c)}
		cl.expect(220)
		cl.cmd(331, "USER u")
		cl.cmd(230, "PASS p")
		return cl, cl.passive("EPSV")
	}
	get := func(cl *client, ap netip.AddrPort, real string) {
		dc, err := lb.Dial("tcp", ap.String())
		if err != nil {
			t.Fatal(err)
		}
		var hdr bytes.Buffer
		writeProxyHeader(&hdr, 2, netip.MustParseAddrPort(real+":6000"), ap)
		dc.Write(hdr.Bytes())
		cl.cmd(150, "RETR f")
		if got, _ := io.ReadAll(dc); string(got) != "shared" {
			t.Fatalf("%s got %q", real, got)
		}
		cl.expect(226)
	}
	a, pa := login("198.18.0.71")
	b, pb := login("198.18.0.72")
	if pa != pb {
		t.Fatalf("ports %s and %s: want one shared port", pa, pb)
	}
	get(a, pa, "198.18.0.71")
	if h.fw.Dump() == "" {
		t.Fatal("the first transfer closed the pinhole the second session still needs")
	}
	get(b, pb, "198.18.0.72")
	if d := h.fw.Dump(); d != "" {
		t.Fatalf("pinhole left after both transfers:\n%s", d)
	}
}
