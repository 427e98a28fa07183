package proxy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/zap"
)

// heldFirewall is a nat.Fake whose Opens and Closes wait at a gate until
// the test lets them through, so that a test sees which calls are in flight
// at once.
type heldFirewall struct {
	*nat.Fake
	mu      sync.Mutex
	waiting []string      // "open P" / "close P" of the calls held now
	arrived chan struct{} // a call reached the gate
	release chan struct{} // one receive lets one held call on
}

func newHeldFirewall() *heldFirewall {
	return &heldFirewall{Fake: nat.NewFake(), arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (f *heldFirewall) hold(op string, p nat.Pinhole) {
	f.mu.Lock()
	f.waiting = append(f.waiting, op+" "+p.String())
	f.mu.Unlock()
	f.arrived <- struct{}{}
	<-f.release
	f.mu.Lock()
	f.waiting = f.waiting[1:]
	f.mu.Unlock()
}

func (f *heldFirewall) Open(ctx context.Context, p nat.Pinhole, ttl time.Duration) error {
	f.hold("open", p)
	return f.Fake.Open(ctx, p, ttl)
}

func (f *heldFirewall) Close(ctx context.Context, p nat.Pinhole) error {
	f.hold("close", p)
	return f.Fake.Close(ctx, p)
}

// held returns the calls waiting at the gate.
func (f *heldFirewall) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.waiting...)
}

// arrive waits for n more calls at the gate.
func (f *heldFirewall) arrive(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.arrived:
		case <-time.After(5 * time.Second):
			t.Fatalf("a firewall call did not come; held: %v", f.held())
		}
	}
}

var (
	pinA = nat.Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40000")}
	pinB = nat.Pinhole{Peer: netip.MustParseAddr("198.18.0.3"), Local: netip.MustParseAddrPort("198.18.0.1:40001")}
)

// TestPinholesOpenAtOnce: the pinholes of different plans reach the
// firewall at the same time (so that it can batch them); the firewall's own
// lock orders them, not the data ports.
func TestPinholesOpenAtOnce(t *testing.T) {
	fw := newHeldFirewall()
	h := newDataPorts(dataPortsConfig{Log: zap.NewNop()}, fw)
	errs := make(chan error, 2)
	for _, p := range []nat.Pinhole{pinA, pinB} {
		go func() { errs <- h.openPinhole(context.Background(), p) }()
	}
	fw.arrive(t, 2) // both in flight before either returned
	fw.release <- struct{}{}
	fw.release <- struct{}{}
	if err := errors.Join(<-errs, <-errs); err != nil {
		t.Fatal(err)
	}
	if got := fw.Dump(); strings.Count(got, "\n") != 2 {
		t.Fatalf("open pinholes:\n%s", got)
	}
}

// TestSharedPinholeInOrder: a shared pinhole's last Close and a new Open of
// it reach the firewall one after the other, in the order they came: the
// Open's element is not removed by the Close before it.
func TestSharedPinholeInOrder(t *testing.T) {
	fw := newHeldFirewall()
	h := newDataPorts(dataPortsConfig{Log: zap.NewNop()}, fw)
	ctx := context.Background()
	opened := make(chan error, 1)
	go func() { opened <- h.openPinhole(ctx, pinA) }()
	fw.arrive(t, 1)
	fw.release <- struct{}{}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}

	closed := make(chan struct{})
	go func() { h.closePinhole(ctx, pinA); close(closed) }()
	fw.arrive(t, 1) // the Close is at the firewall
	go func() { opened <- h.openPinhole(ctx, pinA) }()
	time.Sleep(50 * time.Millisecond) // room for a wrongly concurrent Open to reach the gate
	if held := fw.held(); len(held) != 1 || !strings.HasPrefix(held[0], "close ") {
		t.Fatalf("held at the firewall: %v, want the Close alone", held)
	}
	fw.release <- struct{}{}
	<-closed
	fw.arrive(t, 1) // now the Open
	fw.release <- struct{}{}
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	ops := fw.Ops()
	if len(ops) != 3 || !strings.HasPrefix(ops[1], "close ") || !strings.HasPrefix(ops[2], "open ") {
		t.Fatalf("firewall operations %v, want open, close, open", ops)
	}
	if got := fw.Dump(); strings.Count(got, "\n") != 1 {
		t.Fatalf("open pinholes after close and reopen:\n%q, want the one", got)
	}
	if info := h.pinholeInfo(time.Now()); len(info) != 1 || info[0].Refs != 1 {
		t.Fatalf("pinhole info %+v, want one with one reference", info)
	}
	go h.closePinhole(ctx, pinA)
	fw.arrive(t, 1)
	fw.release <- struct{}{}
}

// TestReleaseWaitsForDeliveryClose: the accept loop closes the pinhole of
// the connection it delivered; a release that comes meanwhile returns only
// once that close is done, so that no pinhole of a session's is still open
// after it moved on. The port is shared with a second expectation, so the
// release does not wait for the accept loop to end either.
func TestReleaseWaitsForDeliveryClose(t *testing.T) {
	fw := newHeldFirewall()
	h := newDataPorts(dataPortsConfig{Ports: onePort(t), Log: zap.NewNop()}, fw)
	ctx := context.Background()
	ip := netip.MustParseAddr("127.0.0.1")
	admitted := func(peer string) *dataPort {
		p := netip.MustParseAddr(peer)
		dl, err := h.expect(ctx, ip, p, p)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- dl.admit(ctx, netip.AddrPort{}) }()
		fw.arrive(t, 1)
		fw.release <- struct{}{}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return dl
	}
	a, b := admitted("127.0.0.1"), admitted("127.0.0.2")
	if a.addr != b.addr {
		t.Fatalf("expectations on %s and %s, want one shared port", a.addr, b.addr)
	}

	c := dialDataFrom(t, "127.0.0.1", a.addr)
	defer c.Close()
	fw.arrive(t, 1)
	if held, want := fw.held(), "close "+a.pin.String(); len(held) != 1 || held[0] != want {
		t.Fatalf("held at the firewall after the connection came: %v, want %q", held, want)
	}
	conn, err := a.accept(ctx, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	released := make(chan struct{})
	go func() { a.release(); close(released) }()
	select {
	case <-released:
		t.Fatal("release returned while its pinhole's close was still at the firewall")
	case <-time.After(100 * time.Millisecond):
	}
	fw.release <- struct{}{}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("release still waiting after the pinhole's close")
	}
	if d := fw.Dump(); strings.Contains("\n"+d, "\n"+a.pin.Peer.String()+" . ") {
		t.Fatalf("open pinholes after the release:\n%s", d)
	}

	go b.release()
	fw.arrive(t, 1)
	fw.release <- struct{}{}
}
