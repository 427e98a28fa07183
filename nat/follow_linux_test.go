package nat

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// follow starts a Follower of name inside ns and closes it at the end of
// the test.
func follow(t *testing.T, ns *testNS, name string) *Follower {
	t.Helper()
	var f *Follower
	if err := ns.do(func() (err error) {
		f, err = FollowInterface(t.Context(), name, testLogger(t))
		return err
	}); err != nil {
		t.Fatalf("FollowInterface(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// waitAddr waits until f.Addr(v6) satisfies ok, and fails the test with
// what it saw if that takes longer than limit.
func waitAddr(t *testing.T, f *Follower, v6 bool, limit time.Duration, what string, ok func(netip.Addr, bool) bool) {
	t.Helper()
	var last netip.Addr
	var lastOK bool
	took, done := waitFor(limit, func() bool {
		last, lastOK = f.Addr(v6)
		return ok(last, lastOK)
	})
	if !done {
		t.Fatalf("%s: Addr(v6=%v) = %v, %v after %s", what, v6, last, lastOK, took)
	}
	t.Logf("%s: seen after %s", what, took.Round(time.Millisecond))
}

func is(want string) func(netip.Addr, bool) bool {
	return func(a netip.Addr, ok bool) bool { return ok && a.String() == want }
}

func TestFollowInterface(t *testing.T) {
	l := newLab(t)
	f := follow(t, l.gw, "fg0")
	if f.Name() != "fg0" {
		t.Errorf("Name = %q", f.Name())
	}
	// Addr answers at once, before any notification.
	for _, c := range []struct {
		v6   bool
		want string
	}{{false, "198.18.0.1"}, {true, "fd00:18::1"}} {
		if got, ok := f.Addr(c.v6); !ok || got.String() != c.want {
			t.Errorf("right after FollowInterface: Addr(v6=%v) = %v, %v; want %s", c.v6, got, ok, c.want)
		}
	}

	// A second address does not replace the first; notifications arrive in
	// order, so once the IPv6 change is seen the IPv4 one was too.
	l.gw.ip(t, "addr", "add", "198.18.2.9/24", "dev", "fg0")
	l.gw.ip(t, "addr", "add", "fd00:20::9/64", "dev", "fg0", "nodad")
	l.gw.ip(t, "addr", "del", "fd00:18::1/64", "dev", "fg0")
	waitAddr(t, f, true, 3*time.Second, "IPv6 address replaced", is("fd00:20::9"))
	if got, _ := f.Addr(false); got.String() != "198.18.0.1" {
		t.Errorf("after adding 198.18.2.9: Addr = %v, want 198.18.0.1 still", got)
	}

	// The DHCP case: the old address goes, the new one takes over.
	l.gw.ip(t, "addr", "del", "198.18.0.1/24", "dev", "fg0")
	waitAddr(t, f, false, 3*time.Second, "IPv4 address replaced", is("198.18.2.9"))

	// A tentative address is not used until duplicate address detection
	// has finished.
	l.gw.sysctl(t, "net.ipv6.conf.fg0.accept_dad=1")
	l.gw.ip(t, "addr", "add", "fd00:21::5/64", "dev", "fg0")
	l.gw.ip(t, "addr", "del", "fd00:20::9/64", "dev", "fg0")
	waitAddr(t, f, true, 3*time.Second, "IPv6 address removed", func(a netip.Addr, ok bool) bool {
		return a.String() != "fd00:20::9"
	})
	got, _ := f.Addr(true)
	if tentative := l.gw.ipOut(t, "-6", "addr", "show", "dev", "fg0", "tentative"); strings.Contains(tentative, "fd00:21::5") &&
		got.String() == "fd00:21::5" {
		t.Errorf("Addr(v6) = %v while the address is tentative:\n%s", got, tentative)
	} else {
		t.Logf("while fd00:21::5 was tentative: Addr(v6) = %v", got)
	}
	waitAddr(t, f, true, 10*time.Second, "IPv6 address after DAD", is("fd00:21::5"))
}

func TestFollowInterfaceComesBack(t *testing.T) {
	ns := newNS(t)
	add := func(addr string) {
		ns.ip(t, "link", "add", "fgx0", "type", "veth", "peer", "name", "fgx1")
		ns.ip(t, "addr", "add", addr, "dev", "fgx0")
	}
	add("198.18.3.1/24")
	f := follow(t, ns, "fgx0")
	waitAddr(t, f, false, time.Second, "initial address", is("198.18.3.1"))
	ns.ip(t, "link", "del", "fgx0")
	waitAddr(t, f, false, 3*time.Second, "interface deleted", func(_ netip.Addr, ok bool) bool { return !ok })
	add("198.18.3.2/24")
	waitAddr(t, f, false, 3*time.Second, "interface created again", is("198.18.3.2"))
	ns.ip(t, "link", "set", "fgx0", "name", "fgy0")
	waitAddr(t, f, false, 3*time.Second, "interface renamed away", func(_ netip.Addr, ok bool) bool { return !ok })
	ns.ip(t, "link", "set", "fgy0", "name", "fgx0")
	waitAddr(t, f, false, 3*time.Second, "interface renamed back", is("198.18.3.2"))
}

func TestFollowInterfaceErrors(t *testing.T) {
	ns := newNS(t)
	tests := []struct {
		name, iface, want string
	}{
		{"absent", "fgnone0", "no interface of that name"},
		{"invalid", "a/b", "not allowed"},
		{"too long", "abcdefghijklmnopq", "longer than 15"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f *Follower
			err := ns.do(func() (err error) {
				f, err = FollowInterface(t.Context(), tc.iface, testLogger(t))
				return err
			})
			if err == nil {
				f.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FollowInterface(%q) = %v, want error containing %q", tc.iface, err, tc.want)
			}
		})
	}
}

func TestSourceForAndLocalAddrs(t *testing.T) {
	r := newRouter(t)
	tests := []struct {
		name    string
		ns      *testNS
		dst     string
		want    string
		wantErr string
	}{
		{"gw toward server", r.gw, "198.18.1.2", "198.18.1.1", ""},
		{"gw toward client", r.gw, "198.18.0.2", "198.18.0.1", ""},
		{"gw ipv6", r.gw, "fd00:19::2", "fd00:19::1", ""},
		{"mapped", r.gw, "::ffff:198.18.1.2", "198.18.1.1", ""},
		{"client via default route", r.client, "198.18.1.2", "198.18.0.2", ""},
		{"no route", r.gw, "198.19.5.5", "", "unreachable"},
		{"unspecified", r.gw, "0.0.0.0", "", "not a destination"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got netip.Addr
			err := tc.ns.do(func() (err error) {
				got, err = SourceFor(netip.MustParseAddr(tc.dst))
				return err
			})
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("SourceFor(%s) = %v, %v; want error containing %q", tc.dst, got, err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || got.String() != tc.want):
				t.Errorf("SourceFor(%s) = %v, %v; want %s", tc.dst, got, err, tc.want)
			}
		})
	}

	var addrs []netip.Addr
	if err := r.gw.do(func() (err error) { addrs, err = LocalAddrs(); return err }); err != nil {
		t.Fatalf("LocalAddrs: %v", err)
	}
	for _, want := range []string{"127.0.0.1", "198.18.0.1", "198.18.1.1", "::1", "fd00:18::1", "fd00:19::1"} {
		if !slices.Contains(addrs, netip.MustParseAddr(want)) {
			t.Errorf("LocalAddrs = %v, missing %s", addrs, want)
		}
	}
	for _, not := range []string{"198.18.0.2", "198.18.1.2"} {
		if slices.Contains(addrs, netip.MustParseAddr(not)) {
			t.Errorf("LocalAddrs = %v, has the peer's %s", addrs, not)
		}
	}
	if !slices.IsSortedFunc(addrs, netip.Addr.Compare) || len(slices.Compact(slices.Clone(addrs))) != len(addrs) {
		t.Errorf("LocalAddrs = %v, want sorted without duplicates", addrs)
	}
}

func TestSocketOptions(t *testing.T) {
	ns := newNS(t)
	ns.ip(t, "addr", "add", "198.18.0.1/24", "dev", "lo")
	tests := []struct {
		name        string
		addr        string
		opts        SocketOptions
		transparent bool
		mark        int
	}{
		{"none", "198.18.0.1:0", SocketOptions{}, false, 0},
		{"ipv4 transparent", "198.18.0.1:0", SocketOptions{Transparent: true}, true, 0},
		{"ipv6 transparent", "[::1]:0", SocketOptions{Transparent: true}, true, 0},
		{"dual-stack transparent and mark", ":0", SocketOptions{Transparent: true, Mark: 0xfff00001}, true, 0xfff00001},
		{"mark", "198.18.0.1:0", SocketOptions{Mark: DefaultLoopMark}, false, int(DefaultLoopMark)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenIn(t, ns, tc.addr, tc.opts)
			defer ln.Close()
			rc, err := ln.(*net.TCPListener).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var transparent, mark int
			var gerr error
			if err := rc.Control(func(fd uintptr) {
				level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
				if ln.Addr().(*net.TCPAddr).IP.To4() == nil || tc.addr == ":0" {
					level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
				}
				if transparent, gerr = unix.GetsockoptInt(int(fd), level, opt); gerr != nil {
					return
				}
				mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
			}); err != nil || gerr != nil {
				t.Fatal(err, gerr)
			}
			if (transparent != 0) != tc.transparent || uint32(mark) != uint32(tc.mark) {
				t.Errorf("transparent = %d, mark = %#x; want %v, %#x", transparent, uint32(mark), tc.transparent, uint32(tc.mark))
			}
		})
	}
}
