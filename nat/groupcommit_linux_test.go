package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

// Group commit: Opens and Closes that wait while another batch is in
// flight leave together in the next one, and each caller still gets its
// own result.

// queued reports how many operations wait in k's queue.
func (k *kernelFirewall) queued() int {
	k.queueMu.Lock()
	defer k.queueMu.Unlock()
	return len(k.queue)
}

// heldBatch runs ops while the test holds k's lock, starting each once the
// one before it is queued, so they queue in order; then it lets go, and
// the next holder sends them together. It returns each op's error.
func heldBatch(t *testing.T, k *kernelFirewall, ops ...func() error) []error {
	t.Helper()
	if err := k.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() { errs[i] = op() })
		if _, ok := waitFor(5*time.Second, func() bool { return k.queued() == i+1 }); !ok {
			k.release()
			wg.Wait()
			t.Fatalf("operation %d never queued (%d queued)", i, k.queued())
		}
	}
	k.release()
	wg.Wait()
	return errs
}

// generation returns the ruleset generation of ns: one more per committed
// batch.
func generation(t *testing.T, ns *testNS) uint32 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd()))
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.GetGen()
	if err != nil {
		t.Fatal(err)
	}
	return g.ID
}

func TestQueuedOpsEndAsInOrder(t *testing.T) {
	for _, kernel := range []string{"destroy", "delete"} {
		t.Run(kernel, func(t *testing.T) {
			t.Parallel()
			ns := newNS(t)
			fw := newFirewall(t, ns, Config{})
			k := fw.(*kernelFirewall)
			if kernel == "delete" {
				forceDelete(t, fw)
			}
			ctx := context.Background()
			ph := func(i int) Pinhole {
				return Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 5, byte(i)}), Local: netip.MustParseAddrPort("198.18.1.1:40001")}
			}
			a, b, c, d, e, g := ph(1), ph(2), ph(3), ph(4), ph(5), ph(6)
			for _, p := range []Pinhole{a, b} {
				if err := fw.Open(ctx, p, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			open := func(p Pinhole, ttl time.Duration) func() error {
				return func() error { return fw.Open(ctx, p, ttl) }
			}
			closeP := func(p Pinhole) func() error { return func() error { return fw.Close(ctx, p) } }
			gen := generation(t, ns)
			errs := heldBatch(t, k,
				open(c, 30*time.Second), // new
				open(a, 2*time.Minute),  // refresh
				closeP(b),               // open before
				closeP(d),               // never opened
				open(e, time.Minute),    // opened and closed in the batch
				closeP(e),
				closeP(g), // closed and opened in the batch
				open(g, 45*time.Second),
				open(c, 40*time.Second), // opened twice in the batch
			)
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("queued operations: %v", err)
			}
			if kernel == "destroy" {
				if got := generation(t, ns) - gen; got != 1 {
					t.Errorf("9 queued operations took %d batches, want 1", got)
				}
			}
			got := ns.setElements(t, "inet", "ftpgate", "pinholes4")
			want := []nftElement{
				{Key: "198.18.5.1 . 198.18.1.1 . 40001", Timeout: 120},
				{Key: "198.18.5.3 . 198.18.1.1 . 40001", Timeout: 40},
				{Key: "198.18.5.6 . 198.18.1.1 . 40001", Timeout: 45},
			}
			for i := range got {
				got[i].Expires = 0
			}
			if !slices.Equal(got, want) {
				t.Errorf("pinholes4 = %+v, want %+v", got, want)
			}
			if err := k.acquire(ctx); err != nil {
				t.Fatal(err)
			}
			var tracked []string
			for p := range k.open {
				tracked = append(tracked, p.Peer.String())
			}
			k.release()
			slices.Sort(tracked)
			if want := []string{"198.18.5.1", "198.18.5.3", "198.18.5.6"}; !slices.Equal(tracked, want) {
				t.Errorf("tracked pinholes %q, want %q", tracked, want)
			}
		})
	}
}

func TestFailingOpInMergedBatchFailsAlone(t *testing.T) {
	ns := newNS(t)
	core, logs := observer.New(zap.DebugLevel)
	cfg := Config{NetNS: ns.fd(), Intercept: Intercept{Mode: InterceptRedirect, ListenPort: 2100}}
	fw, err := New(context.Background(), cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fw.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	k := fw.(*kernelFirewall)
	ctx := context.Background()
	server := netip.MustParseAddrPort("198.18.1.2:21")
	ph := func(peer byte, local uint16) Pinhole {
		return Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 0, peer}), Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), local), Intercept: server}
	}
	// The flow 198.18.0.2 -> server is diverted to port 40001; diverting
	// it to 40002 as well conflicts.
	if err := fw.Open(ctx, ph(2, 40001), time.Minute); err != nil {
		t.Fatal(err)
	}
	ops := []Pinhole{ph(3, 40003), ph(2, 40002), ph(4, 40004)}
	errs := heldBatch(t, k,
		func() error { return fw.Open(ctx, ops[0], time.Minute) },
		func() error { return fw.Open(ctx, ops[1], time.Minute) },
		func() error { return fw.Open(ctx, ops[2], time.Minute) },
	)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("Opens beside the conflicting one: %v, %v; want nil", errs[0], errs[2])
	}
	if !errors.Is(errs[1], unix.EEXIST) || !strings.Contains(errs[1].Error(), ops[1].String()) {
		t.Errorf("conflicting Open = %v, want EEXIST naming %s", errs[1], ops[1])
	}
	if n := logs.FilterMessageSnippet("merged pinhole batch failed").Len(); n != 1 {
		t.Errorf("%d merged batches failed, want 1 (were the Opens merged?)", n)
	}
	var keys []string
	for _, e := range ns.setElements(t, "inet", "ftpgate", "pinholes4") {
		keys = append(keys, e.Key)
	}
	want := []string{"198.18.0.2 . 198.18.0.1 . 40001", "198.18.0.3 . 198.18.0.1 . 40003", "198.18.0.4 . 198.18.0.1 . 40004"}
	if !slices.Equal(keys, want) {
		t.Errorf("pinholes4 = %q, want %q", keys, want)
	}
	if got := ns.divertElements(t, "divert4"); len(got) != 3 || !strings.Contains(got[0], ": 198.18.0.1 . 40001 ") {
		t.Errorf("divert4 = %q, want 3 elements, 198.18.0.2's to port 40001", got)
	}
}

func TestQueuedOpsAfterShutdown(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	ctx := context.Background()
	if err := fw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		p := Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 6, byte(i / 2)}), Local: netip.MustParseAddrPort("198.18.1.1:40001")}
		wg.Go(func() {
			if i%2 == 0 {
				errs[i] = fw.Open(ctx, p, 0)
			} else {
				errs[i] = fw.Close(ctx, p)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && !IsShutdown(err) {
			t.Errorf("Open %d after Shutdown = %v, want a shutdown error", i/2, err)
		}
		if i%2 == 1 && err != nil {
			t.Errorf("Close %d after Shutdown = %v, want nil", i/2, err)
		}
	}
}

func TestCanceledWaitLeavesQueue(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	k := fw.(*kernelFirewall)
	if err := k.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errs := make(chan error, 3)
	for i := range 3 {
		p := Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}), Local: netip.MustParseAddrPort("198.18.1.1:40001")}
		go func() { errs <- fw.Open(ctx, p, 0) }()
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Open while busy = %v, want context.DeadlineExceeded", err)
		}
	}
	n := k.queued()
	k.release()
	if n != 0 {
		t.Errorf("%d canceled operations left queued", n)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Errorf("canceled Opens left elements: %+v", got)
	}
}

// TestFullMergedBatch: maxMerged IPv6 pinhole Opens queued behind one holder
// of the lock go to the kernel in one batch, over the firewall's own netlink
// socket with its fixed buffers (netlinkBuffer), and so do as many Closes.
// Every pinhole is in the set after the first, none after the second.
func TestFullMergedBatch(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	k := fw.(*kernelFirewall)
	if !k.destroy {
		t.Fatal("this kernel has no destroy element (Linux 6.3+), so operations are not merged")
	}
	ctx := context.Background()
	ph := func(i int) Pinhole {
		return Pinhole{Peer: netip.MustParseAddr(fmt.Sprintf("fd00:5:5:5:5:5:5:%x", i+1)), Local: netip.MustParseAddrPort("[fd00:1:1:1:1:1:1:1]:40001")}
	}
	run := func(close bool) {
		t.Helper()
		ops := make([]func() error, maxMerged)
		for i := range ops {
			if close {
				ops[i] = func() error { return fw.Close(ctx, ph(i)) }
			} else {
				ops[i] = func() error { return fw.Open(ctx, ph(i), time.Minute) }
			}
		}
		gen := generation(t, ns)
		// As heldBatch, without waiting for each to queue in turn: their
		// order does not matter here.
		if err := k.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, len(ops))
		var wg sync.WaitGroup
		for i, op := range ops {
			wg.Go(func() { errs[i] = op() })
		}
		_, queued := waitFor(10*time.Second, func() bool { return k.queued() == len(ops) })
		k.release()
		wg.Wait()
		if !queued {
			t.Fatalf("%d operations (close %v) never all queued behind the lock", len(ops), close)
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("%d queued operations (close %v): %v", maxMerged, close, err)
		}
		if got := generation(t, ns) - gen; got != 1 {
			t.Errorf("%d queued operations (close %v) took %d batches, want 1", maxMerged, close, got)
		}
	}
	run(false)
	if got := len(ns.setElements(t, "inet", "ftpgate", "pinholes6")); got != maxMerged {
		t.Errorf("after %d Opens pinholes6 holds %d elements", maxMerged, got)
	}
	run(true)
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes6"); len(got) != 0 {
		t.Errorf("after %d Closes pinholes6 holds %d elements", maxMerged, len(got))
	}
}
