package nat

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// progname is the comment nft adds to an owned table's header.
var prognameRE = regexp.MustCompile(` # progname \S+`)

// listOwnTable returns "nft list table inet ftpgate" without the owner's
// program name, or "" if the table does not exist.
func listOwnTable(t testing.TB, ns *testNS) string {
	t.Helper()
	out, err := ns.nftErr("list", "table", "inet", "ftpgate")
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return ""
		}
		t.Fatalf("nft list table inet ftpgate: %v", err)
	}
	return prognameRE.ReplaceAllString(out, "")
}

func TestOwnTableMatchesGolden(t *testing.T) {
	ns := newNS(t)
	newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}, {41000, 41000}}})
	want, err := os.ReadFile("testdata/own-table.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := listOwnTable(t, ns); got != string(want) {
		t.Errorf("nft list table inet ftpgate:\n%s\nwant (testdata/own-table.golden):\n%s", got, want)
	}
	out := ns.nft(t, "list", "table", "inet", "ftpgate")
	if !strings.Contains(out, "\tflags owner\n") || !strings.Contains(out, "# progname nat.test") {
		t.Errorf("table is not owned by this process:\n%s", out)
	}
}

// pinholeCases are the same pinhole in the forms a caller may use, with the
// set and element nft must show for it.
var pinholeCases = []struct {
	name string
	p    Pinhole
	set  string
	elem string
}{
	{"ipv4", Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.1.1:40001")},
		"pinholes4", "198.18.0.2 . 198.18.1.1 . 40001"},
	{"ipv6", Pinhole{Peer: netip.MustParseAddr("fd00::2"), Local: netip.MustParseAddrPort("[fd00::1]:40001")},
		"pinholes6", "fd00::2 . fd00::1 . 40001"},
	{"ipv4-mapped", Pinhole{Peer: netip.MustParseAddr("::ffff:198.18.0.2"), Local: netip.MustParseAddrPort("[::ffff:198.18.1.1]:40002")},
		"pinholes4", "198.18.0.2 . 198.18.1.1 . 40002"},
	{"ipv6-zone", Pinhole{Peer: netip.MustParseAddr("fe80::2%eth0"), Local: netip.MustParseAddrPort("[fe80::1%eth0]:40003")},
		"pinholes6", "fe80::2 . fe80::1 . 40003"},
}

// forceDelete makes fw behave as on kernels before 6.3, which have no
// "destroy element": Close uses delete and treats ENOENT as absent.
func forceDelete(t *testing.T, fw Firewall) {
	t.Helper()
	k := fw.(*kernelFirewall)
	if err := k.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	k.destroy = false
	k.release()
}

func TestOpenCloseOwnTable(t *testing.T) {
	for _, kernel := range []string{"destroy", "delete"} {
		t.Run(kernel, func(t *testing.T) {
			ns := newNS(t)
			fw := newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
			if kernel == "delete" {
				forceDelete(t, fw)
			} else if !fw.(*kernelFirewall).destroy {
				t.Fatal("this kernel (6.3+ expected) reports no destroy-element support")
			}
			ctx := context.Background()
			for _, tc := range pinholeCases {
				t.Run(tc.name, func(t *testing.T) {
					if err := fw.Open(ctx, tc.p, 30*time.Second); err != nil {
						t.Fatalf("Open: %v", err)
					}
					got := ns.setElements(t, "inet", "ftpgate", tc.set)
					if len(got) != 1 || got[0].Key != tc.elem || got[0].Timeout != 30 || got[0].Expires > 30 || got[0].Expires < 28 {
						t.Fatalf("after Open: %s = %+v, want one element %q with timeout 30s", tc.set, got, tc.elem)
					}

					if err := fw.Open(ctx, tc.p, 50*time.Second); err != nil {
						t.Fatalf("Open again (refresh): %v", err)
					}
					got = ns.setElements(t, "inet", "ftpgate", tc.set)
					if len(got) != 1 || got[0].Key != tc.elem || got[0].Timeout != 50 || got[0].Expires < 48 {
						t.Fatalf("after refresh: %s = %+v, want one element %q with timeout 50s", tc.set, got, tc.elem)
					}

					if err := fw.Close(ctx, tc.p); err != nil {
						t.Fatalf("Close: %v", err)
					}
					if got := ns.setElements(t, "inet", "ftpgate", tc.set); len(got) != 0 {
						t.Fatalf("after Close: %s = %+v, want empty", tc.set, got)
					}
					if err := fw.Close(ctx, tc.p); err != nil {
						t.Errorf("Close of an absent pinhole: %v, want nil", err)
					}
				})
			}
		})
	}
}

func TestPinholeExpiresAndRefreshes(t *testing.T) {
	for _, kernel := range []string{"destroy", "delete"} {
		t.Run(kernel, func(t *testing.T) {
			t.Parallel()
			ns := newNS(t)
			fw := newFirewall(t, ns, Config{TTL: time.Second})
			if kernel == "delete" {
				forceDelete(t, fw)
			}
			ctx := context.Background()
			for _, tc := range pinholeCases[:2] {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					present := func() bool { return len(ns.setElements(t, "inet", "ftpgate", tc.set)) == 1 }
					// Expiry: the default TTL of 1s.
					start := time.Now()
					if err := fw.Open(ctx, tc.p, 0); err != nil {
						t.Fatal(err)
					}
					if !present() {
						t.Fatal("pinhole missing right after Open")
					}
					took, gone := waitFor(3*time.Second, func() bool { return !present() })
					if !gone {
						t.Fatalf("pinhole with 1s TTL still there after %s", took)
					}
					if life := time.Since(start); life < 900*time.Millisecond {
						t.Fatalf("pinhole with 1s TTL gone after %s", life)
					}
					t.Logf("1s pinhole expired after %s", time.Since(start).Round(time.Millisecond))

					// Refresh: open with 2s, re-open at 1.2s with 2s; at 2.5s it must
					// still be there (unrefreshed it would have gone at 2s).
					// (This first Open comes within expiryGrace of the expiry above,
					// so it takes the refresh path on an absent element: destroy,
					// or a delete that fails with ENOENT and a retry.)
					start = time.Now()
					if err := fw.Open(ctx, tc.p, 2*time.Second); err != nil {
						t.Fatal(err)
					}
					time.Sleep(1200*time.Millisecond - time.Since(start))
					if err := fw.Open(ctx, tc.p, 2*time.Second); err != nil {
						t.Fatalf("refresh: %v", err)
					}
					refreshed := time.Since(start)
					time.Sleep(2500*time.Millisecond - time.Since(start))
					if !present() {
						t.Fatalf("pinhole refreshed at %s gone %s after the first Open", refreshed, time.Since(start))
					}
					if _, gone := waitFor(3*time.Second, func() bool { return !present() }); !gone {
						t.Fatal("refreshed pinhole never expired")
					}
					// Close after expiry is not an error.
					if err := fw.Close(ctx, tc.p); err != nil {
						t.Errorf("Close after expiry: %v", err)
					}
				})
			}
		})
	}
}

func TestDataPortsMatter(t *testing.T) {
	// No data ports: a warning, and a table whose chain drops nothing.
	ns := newNS(t)
	newFirewall(t, ns, Config{})
	if got := listOwnTable(t, ns); strings.Contains(got, "drop") {
		t.Errorf("table without data ports drops something:\n%s", got)
	}
}

func TestOwnTableReplacesStaleTable(t *testing.T) {
	ns := newNS(t)
	// A table of our name without owner, as an older ftpgate or a person left it.
	ns.nft(t, "add", "table", "inet", "ftpgate")
	ns.nft(t, "add", "chain", "inet", "ftpgate", "leftover")
	newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
	got := listOwnTable(t, ns)
	if strings.Contains(got, "leftover") || !strings.Contains(got, "flags owner") {
		t.Errorf("stale table not replaced by an owned one:\n%s", got)
	}
}

func TestOwnTableSurvivesFlushRuleset(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
	p := pinholeCases[0].p
	if err := fw.Open(context.Background(), p, time.Minute); err != nil {
		t.Fatal(err)
	}
	ns.nft(t, "flush", "ruleset") // what an operator's "nft -f" with "flush ruleset" does
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 1 {
		t.Errorf("after nft flush ruleset: pinholes4 = %+v, want the pinhole still there", got)
	}
}

func TestShutdownOwnTable(t *testing.T) {
	ns := newNS(t)
	cfg := Config{DataPorts: []PortRange{{40000, 40100}}, NetNS: ns.fd()}
	fw, err := New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := pinholeCases[0].p
	if err := fw.Open(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	if err := fw.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := listOwnTable(t, ns); got != "" {
		t.Errorf("table inet ftpgate still there after Shutdown:\n%s", got)
	}
	if err := fw.Open(ctx, p, 0); !IsShutdown(err) {
		t.Errorf("Open after Shutdown = %v, want a shutdown error", err)
	}
	if err := fw.Close(ctx, p); err != nil {
		t.Errorf("Close after Shutdown = %v, want nil", err)
	}
	if err := fw.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
	// A new Firewall can take over the namespace at once.
	fw2, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New after Shutdown: %v", err)
	}
	if err := fw2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSecondOwnTableRefused(t *testing.T) {
	ns := newNS(t)
	newFirewall(t, ns, Config{})
	_, err := New(context.Background(), Config{NetNS: ns.fd()}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "owned by another running process") {
		t.Fatalf("second New in the same namespace = %v, want an error naming the owner", err)
	}
}

func TestCleanupOwnTable(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T, ns *testNS)
		wantErr string // substring; "" means success
		kept    bool   // table must still exist after Cleanup
	}{
		{name: "absent", setup: func(t *testing.T, ns *testNS) {}},
		{name: "stale", setup: func(t *testing.T, ns *testNS) {
			ns.nft(t, "add", "table", "inet", "ftpgate")
			ns.nft(t, "add", "set", "inet", "ftpgate", "pinholes4", "{ type ipv4_addr . ipv4_addr . inet_service; flags timeout; }")
		}},
		{name: "live owner", setup: func(t *testing.T, ns *testNS) {
			newFirewall(t, ns, Config{})
		}, wantErr: "belongs to a running process", kept: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			tc.setup(t, ns)
			err := Cleanup(ctx, Config{NetNS: ns.fd()})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Cleanup = %v, want error containing %q", err, tc.wantErr)
			}
			if exists := listOwnTable(t, ns) != ""; exists != tc.kept {
				t.Errorf("after Cleanup: table exists = %v, want %v", exists, tc.kept)
			}
		})
	}
}

func TestConcurrentOpenClose(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
	ctx := context.Background()
	const workers, each = 8, 40
	pinhole := func(w, i int) Pinhole {
		return Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 2, byte(w + 1)}), Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), uint16(40000+i))}
	}
	run := func(op func(Pinhole) error) error {
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					if err := op(pinhole(w, i)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	}
	if err := run(func(p Pinhole) error { return fw.Open(ctx, p, time.Minute) }); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != workers*each {
		t.Fatalf("after %d concurrent Opens: %d elements", workers*each, len(got))
	}
	if err := run(func(p Pinhole) error { return fw.Close(ctx, p) }); err != nil {
		t.Fatalf("concurrent Close: %v", err)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Fatalf("after concurrent Closes: %d elements left: %+v", len(got), got)
	}
}

func TestOpenHonoursContext(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	k := fw.(*kernelFirewall)
	p := pinholeCases[0].p

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fw.Open(canceled, p, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a canceled context = %v, want context.Canceled", err)
	}

	// While another operation holds the connection, a deadline ends the wait.
	if err := k.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	err := fw.Close(ctx, p)
	k.release()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close while busy = %v, want context.DeadlineExceeded", err)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Errorf("canceled Open left elements: %+v", got)
	}
}

func TestOpenRejectsBadPinholes(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	tests := []struct {
		name string
		p    Pinhole
		ttl  time.Duration
		want string
	}{
		{"mixed families", Pinhole{Peer: netip.MustParseAddr("fd00::2"), Local: netip.MustParseAddrPort("198.18.1.1:40001")}, 0, "different families"},
		{"zero pinhole", Pinhole{}, 0, "no peer address"},
		{"ttl too long", pinholeCases[0].p, 2 * MaxTTL, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := fw.Open(context.Background(), tc.p, tc.ttl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%s, %s) = %v, want error containing %q", tc.p, tc.ttl, err, tc.want)
			}
		})
	}
	for _, set := range []string{"pinholes4", "pinholes6"} {
		if got := ns.setElements(t, "inet", "ftpgate", set); len(got) != 0 {
			t.Errorf("rejected pinholes reached %s: %+v", set, got)
		}
	}
}

// ownTableOwner reads table inet ftpgate's owner port id with the library,
// to compare with what nft shows.
func ownTableOwner(t *testing.T, ns *testNS) (uint32, bool) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd()))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := findTable(c, nftables.TableFamilyINet, OwnTable)
	if err != nil {
		t.Fatal(err)
	}
	if tbl == nil {
		return 0, false
	}
	return tbl.Owner, tbl.Flags&nftables.TableFlagOwner != 0
}

func TestOwnerIsOurSocket(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	want, err := fw.(*kernelFirewall).conn.GetPortID()
	if err != nil {
		t.Fatal(err)
	}
	owner, owned := ownTableOwner(t, ns)
	if !owned || owner != want {
		t.Errorf("table owner = %d (owner flag %v), want our netlink port id %d", owner, owned, want)
	}
}

func TestBookkeepingStaysBounded(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	k := fw.(*kernelFirewall)
	ctx := context.Background()
	local := netip.MustParseAddr("198.18.1.1")
	for i := range minSweep - 1 {
		p := Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 4, byte(i / 250)}), Local: netip.AddrPortFrom(local, uint16(40000+i%250))}
		if err := fw.Open(ctx, p, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(expiryGrace + 100*time.Millisecond)
	if err := fw.Open(ctx, pinholeCases[0].p, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := k.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	n, next := len(k.open), k.sweepAt
	k.release()
	if n != 1 || next != minSweep {
		t.Errorf("after %d expired pinholes and one new: %d tracked, next sweep at %d; want 1 and %d", minSweep-1, n, next, minSweep)
	}
}

// TestFirewallNetlinkBuffers: the firewall's own netlink socket has
// netlinkBuffer for sending and receiving, beyond net.core's default caps
// (a test runs as root, as ftpgate runs with CAP_NET_ADMIN). With buffers of
// its own google/nftables no longer reads them at every Flush. The socket is
// found among this process's descriptors: a NETLINK_NETFILTER socket whose
// namespace (SIOCGSKNS) is the test's. TestFullMergedBatch shows the size is
// enough for the largest batch of pinhole operations.
func TestFirewallNetlinkBuffers(t *testing.T) {
	ns := newNS(t)
	newFirewall(t, ns, Config{})
	var want unix.Stat_t
	if err := unix.Fstat(ns.fd(), &want); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_NETLINK {
			continue
		}
		if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.NETLINK_NETFILTER {
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(nsfd, &st)
		unix.Close(nsfd)
		if err != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		found++
		for _, b := range []struct {
			name string
			opt  int
		}{{"receive", unix.SO_RCVBUF}, {"send", unix.SO_SNDBUF}} {
			n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, b.opt)
			if err != nil {
				t.Fatalf("%s buffer of fd %d: %v", b.name, fd, err)
			}
			if n < netlinkBuffer {
				t.Errorf("the firewall's netlink socket (fd %d) has a %s buffer of %d bytes, want at least %d", fd, b.name, n, netlinkBuffer)
			}
		}
	}
	if found == 0 {
		t.Fatal("no NETLINK_NETFILTER socket of this process in the test's namespace: the firewall's was not found")
	}
}
