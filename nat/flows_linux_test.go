package nat

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestFlowForwarding: an open flow forwards exactly one connection from the
// peer to our port on to the target, from our address on the target's side,
// in the kernel; its SYN, FIN and RST packets come to the watch, whose byte
// counts equal what each side sent; after Started no second connection is
// forwarded; Close leaves no element behind.
func TestFlowForwarding(t *testing.T) {
	r := newRouter(t)
	fw := newFirewall(t, r.gw, Config{Flows: FlowConfig{Enabled: true}, DataPorts: []PortRange{{40000, 40099}}})
	ff, ok := fw.(FlowForwarder)
	if !ok {
		t.Fatal("the kernel firewall is no FlowForwarder")
	}
	table := r.gw.nft(t, "list", "table", "inet", OwnTable)
	for _, want := range []string{
		"dnat ip to ip saddr . ip daddr . tcp dport map @flow_dnat4",
		"dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @flow_dnat6",
		"snat ip to ip saddr . ip daddr . tcp dport map @flow_snat4",
		"snat ip6 to ip6 saddr . ip6 daddr . tcp dport map @flow_snat6",
		"ct original ip saddr . ct original ip daddr . ct original proto-dst @flow_log4 log group 4655",
		"ct original ip6 saddr . ct original ip6 daddr . ct original proto-dst @flow_log6 log group 4655",
		"tcp flags fin,syn,rst jump flow_log",
		"numgen random mod 256 0 jump flow_log",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table inet %s lacks %q:\n%s", OwnTable, want, table)
		}
	}
	for _, tc := range []struct {
		name                      string
		peer, local, target, from string
	}{
		{"ipv4", "198.18.0.2", "198.18.0.1:40001", "198.18.1.2:30001", "198.18.1.1"},
		{"ipv6", "fd00:18::2", "[fd00:18::1]:40002", "[fd00:19::2]:30002", "fd00:19::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ff.FlowsUsable(strings.Contains(tc.peer, ":")); err != nil {
				t.Fatalf("FlowsUsable: %v", err)
			}
			const up, down = 3_000_000, 12_345
			seen := make(chan string, 1)
			ln := listenIn(t, r.server, tc.target, SocketOptions{})
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					seen <- err.Error()
					return
				}
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				c.Write(make([]byte, down))
				seen <- fmt.Sprintf("%d bytes from %s", n, netip.MustParseAddrPort(c.RemoteAddr().String()).Addr())
			}()
			f := Flow{Peer: netip.MustParseAddr(tc.peer), Local: netip.MustParseAddrPort(tc.local),
				Target: netip.MustParseAddrPort(tc.target), Source: netip.MustParseAddr(tc.from)}
			w, err := ff.OpenFlow(context.Background(), f, 5*time.Second)
			if err != nil {
				t.Fatalf("OpenFlow: %v", err)
			}
			defer w.Close(context.Background())
			if _, err := ff.OpenFlow(context.Background(), f, 5*time.Second); err == nil {
				t.Error("a second OpenFlow of the same peer and target succeeded")
			}

			var c net.Conn
			if err := r.client.do(func() (err error) {
				d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.peer)}}
				c, err = d.Dial("tcp", tc.local)
				return err
			}); err != nil {
				t.Fatalf("dial %s: %v", tc.local, err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(make([]byte, up)); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.Copy(io.Discard, c)
			c.Close()
			if err != nil || got != down {
				t.Fatalf("client read %d bytes (%v), want %d", got, err, down)
			}
			if s, want := <-seen, fmt.Sprintf("%d bytes from %s", up, tc.from); s != want {
				t.Fatalf("server: %s, want %s", s, want)
			}

			var toServer, toClient FlowBytes
			deadline := time.After(5 * time.Second)
			for !toServer.Ended() || !toClient.Ended() {
				select {
				case p := <-w.C:
					if p.Src.Addr() == f.Peer {
						toServer.Note(p)
					} else {
						toClient.Note(p)
					}
				case <-deadline:
					t.Fatalf("flow log: client->server ended %v, server->client ended %v after 5s",
						toServer.Ended(), toClient.Ended())
				}
			}
			if toServer.Bytes() != up || toClient.Bytes() != down || w.Lost() {
				t.Errorf("flow log counted %d up and %d down (lost %v), want %d and %d",
					toServer.Bytes(), toClient.Bytes(), w.Lost(), up, down)
			}

			if err := w.Started(context.Background()); err != nil {
				t.Fatalf("Started: %v", err)
			}
			if c2, err := dialOnly(r.client, tc.peer, tc.local); err == nil {
				c2.Close()
				t.Error("a second connection was forwarded after Started")
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			table := r.gw.nft(t, "list", "table", "inet", OwnTable)
			if strings.Contains(table, tc.peer+" . ") {
				t.Errorf("elements of the flow left after Close:\n%s", table)
			}
		})
	}
}

// TestFlowReset: Reset deletes the forwarded connection's conntrack entry,
// so its packets either way are answered with TCP resets: the client's
// read fails, and so does the server's blocked write, as when a relay
// closes both legs for an ABOR.
func TestFlowReset(t *testing.T) {
	r := newRouter(t)
	ff := newFirewall(t, r.gw, Config{Flows: FlowConfig{Enabled: true}}).(FlowForwarder)
	ln := listenIn(t, r.server, "198.18.1.2:30003", SocketOptions{})
	defer ln.Close()
	serverErr := make(chan error, 1)
	accepted := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		close(accepted)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		for { // a download's server: it writes until the connection fails
			if _, err := c.Write(buf); err != nil {
				serverErr <- err
				return
			}
		}
	}()
	f := Flow{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40003"),
		Target: netip.MustParseAddrPort("198.18.1.2:30003"), Source: netip.MustParseAddr("198.18.1.1")}
	w, err := ff.OpenFlow(context.Background(), f, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	c, err := dialOnly(r.client, "198.18.0.2", "198.18.0.1:40003")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	// The client stops reading, as ftplib does before ABOR: the server blocks in a write.
	time.Sleep(100 * time.Millisecond)
	if err := w.Reset(context.Background(), netip.MustParseAddrPort(c.LocalAddr().String())); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	select {
	case err := <-serverErr:
		if !strings.Contains(err.Error(), "reset") {
			t.Errorf("server's write: %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's blocked write did not fail within 5s of the reset")
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read after the reset: %v, want a reset", err)
	}
}

// dialOnly connects from inside ns, from address from, within refusedWithin.
func dialOnly(ns *testNS, from, to string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		d := net.Dialer{Timeout: refusedWithin, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err = d.Dial("tcp", to)
		return err
	})
	return c, err
}

// TestFlowsNeedForwarding: FlowsUsable refuses a host that does not
// forward, saying which setting, and sees forwarding turned on later.
func TestFlowsNeedForwarding(t *testing.T) {
	ns := newNS(t)
	ff := newFirewall(t, ns, Config{Flows: FlowConfig{Enabled: true}}).(FlowForwarder)
	if err := ff.FlowsUsable(false); err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward = 0") {
		t.Fatalf("FlowsUsable on a host that does not forward: %v", err)
	}
	ns.sysctl(t, "net.ipv4.ip_forward=1")
	if _, ok := waitFor(3*time.Second, func() bool { return ff.FlowsUsable(false) == nil }); !ok {
		t.Fatalf("FlowsUsable after forwarding was turned on: %v", ff.FlowsUsable(false))
	}
}

// TestFlowCloseUnstarted: a flow whose client never came is closed after
// its forwarding elements expired (a passive reply never used). Close
// succeeds and leaves nothing, also on kernels without destroy-element,
// where deleting the expired elements fails with ENOENT: the log element,
// which has no timeout, must go all the same.
func TestFlowCloseUnstarted(t *testing.T) {
	for _, kernel := range []string{"destroy", "delete"} {
		t.Run(kernel, func(t *testing.T) {
			ns := newNS(t)
			fw := newFirewall(t, ns, Config{Flows: FlowConfig{Enabled: true}, DataPorts: []PortRange{{40000, 40099}}})
			if kernel == "delete" {
				forceDelete(t, fw)
			}
			f := Flow{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
				Target: netip.MustParseAddrPort("198.18.1.2:30001"), Source: netip.MustParseAddr("198.18.1.1")}
			w, err := fw.(FlowForwarder).OpenFlow(context.Background(), f, time.Second)
			if err != nil {
				t.Fatalf("OpenFlow: %v", err)
			}
			if got := ns.setElements(t, "inet", OwnTable, "flow_log4"); len(got) != 1 {
				t.Fatalf("flow_log4 after OpenFlow: %+v, want one element", got)
			}
			time.Sleep(2500 * time.Millisecond) // the DNAT and SNAT elements expire
			if err := w.Close(context.Background()); err != nil {
				t.Fatalf("Close after the forwarding expired: %v", err)
			}
			if got := ns.setElements(t, "inet", OwnTable, "flow_log4"); len(got) != 0 {
				t.Fatalf("flow_log4 after Close: %+v, want none", got)
			}
		})
	}
}
