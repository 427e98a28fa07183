package nat

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func ph(peer, local string) Pinhole {
	return Pinhole{Peer: netip.MustParseAddr(peer), Local: netip.MustParseAddrPort(local)}
}

func TestFakeScript(t *testing.T) {
	// Each step runs on the same Fake; after each, Dump must read as given.
	f := NewFake()
	ctx := context.Background()
	steps := []struct {
		name    string
		op      func() error
		wantErr string
		dump    string
	}{
		{name: "empty", op: func() error { return nil }, dump: ""},
		{name: "open v4", op: func() error { return f.Open(ctx, ph("198.18.0.2", "198.18.1.1:40001"), 0) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\n"},
		{name: "open v6", op: func() error { return f.Open(ctx, ph("fd00::2", "[fd00::1]:40002"), time.Second) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\nfd00::2 . fd00::1 . 40002\n"},
		{name: "open sorts numerically", op: func() error { return f.Open(ctx, ph("198.18.0.10", "198.18.1.1:9"), 0) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\n198.18.0.10 . 198.18.1.1 . 9\nfd00::2 . fd00::1 . 40002\n"},
		{name: "refresh is one pinhole", op: func() error { return f.Open(ctx, ph("::ffff:198.18.0.2", "198.18.1.1:40001"), time.Minute) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\n198.18.0.10 . 198.18.1.1 . 9\nfd00::2 . fd00::1 . 40002\n"},
		{name: "mixed families rejected", op: func() error { return f.Open(ctx, ph("fd00::2", "198.18.1.1:40001"), 0) },
			wantErr: "different families",
			dump:    "198.18.0.2 . 198.18.1.1 . 40001\n198.18.0.10 . 198.18.1.1 . 9\nfd00::2 . fd00::1 . 40002\n"},
		{name: "close", op: func() error { return f.Close(ctx, ph("198.18.0.10", "198.18.1.1:9")) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\nfd00::2 . fd00::1 . 40002\n"},
		{name: "close absent", op: func() error { return f.Close(ctx, ph("198.18.0.10", "198.18.1.1:9")) },
			dump: "198.18.0.2 . 198.18.1.1 . 40001\nfd00::2 . fd00::1 . 40002\n"},
		{name: "shutdown", op: func() error { return f.Shutdown(ctx) }, dump: ""},
		{name: "open after shutdown", op: func() error { return f.Open(ctx, ph("198.18.0.2", "198.18.1.1:40001"), 0) },
			wantErr: "shut down", dump: ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := s.op()
			if s.wantErr == "" && err != nil {
				t.Fatalf("%v", err)
			}
			if s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)) {
				t.Fatalf("%v, want error containing %q", err, s.wantErr)
			}
			if got := f.Dump(); got != s.dump {
				t.Errorf("Dump:\n%s\nwant:\n%s", got, s.dump)
			}
		})
	}
	wantOps := []string{
		"open 198.18.0.2 -> 198.18.1.1:40001",
		"open fd00::2 -> [fd00::1]:40002",
		"open 198.18.0.10 -> 198.18.1.1:9",
		"open 198.18.0.2 -> 198.18.1.1:40001",
		"close 198.18.0.10 -> 198.18.1.1:9",
		"close 198.18.0.10 -> 198.18.1.1:9",
		"shutdown",
	}
	if got := f.Ops(); !slices.Equal(got, wantOps) {
		t.Errorf("Ops:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantOps, "\n"))
	}
	if err := f.Open(ctx, ph("198.18.0.2", "198.18.1.1:40001"), 0); !IsShutdown(err) {
		t.Errorf("IsShutdown(%v) = false", err)
	}
}

func TestFakeTTL(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	p := ph("198.18.0.2", "198.18.1.1:40001")
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"default", 0, DefaultTTL},
		{"negative is default", -1, DefaultTTL},
		{"given", 3 * time.Second, 3 * time.Second},
		{"refresh replaces", time.Second, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.Open(ctx, p, tc.ttl); err != nil {
				t.Fatal(err)
			}
			if got, ok := f.TTL(p); !ok || got != tc.want {
				t.Errorf("TTL = %s, %v; want %s, true", got, ok, tc.want)
			}
		})
	}
	if err := f.Open(ctx, p, MaxTTL+1); err == nil {
		t.Error("Open with a TTL over MaxTTL succeeded")
	}
	if err := f.Close(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.TTL(p); ok {
		t.Error("TTL reports a closed pinhole as open")
	}
}

func TestFakeFailWith(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	boom := errors.New("boom")
	a, b := ph("198.18.0.2", "198.18.1.1:40001"), ph("198.18.0.3", "198.18.1.1:40001")
	f.FailWith(func(op string, p Pinhole) error {
		if op == "open" && p == b || op == "shutdown" {
			return boom
		}
		return nil
	})
	if err := f.Open(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Open(ctx, b, 0); !errors.Is(err, boom) {
		t.Fatalf("Open(b) = %v, want boom", err)
	}
	if err := f.Shutdown(ctx); !errors.Is(err, boom) {
		t.Fatalf("Shutdown = %v, want boom", err)
	}
	if got, want := f.Dump(), "198.18.0.2 . 198.18.1.1 . 40001\n"; got != want {
		t.Errorf("Dump = %q, want %q (a failed open adds nothing, a failed shutdown removes nothing)", got, want)
	}
	f.FailWith(nil)
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"open 198.18.0.2 -> 198.18.1.1:40001",
		"open 198.18.0.3 -> 198.18.1.1:40001 failed",
		"shutdown failed",
		"shutdown",
	}
	if got := f.Ops(); !slices.Equal(got, want) {
		t.Errorf("Ops = %q, want %q", got, want)
	}
}

func TestFakeContext(t *testing.T) {
	f := NewFake()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := ph("198.18.0.2", "198.18.1.1:40001")
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"open", func() error { return f.Open(ctx, p, 0) }},
		{"close", func() error { return f.Close(ctx, p) }},
		{"shutdown", func() error { return f.Shutdown(ctx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a canceled context = %v, want context.Canceled", tc.name, err)
			}
		})
	}
	if len(f.Ops()) != 0 {
		t.Errorf("canceled operations were recorded: %q", f.Ops())
	}
}

func TestFakeConcurrent(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				p := Pinhole{Peer: netip.AddrFrom4([4]byte{198, 18, 0, byte(w + 1)}), Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), uint16(40000+i))}
				if err := f.Open(ctx, p, 0); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if err := f.Close(ctx, p); err != nil {
						t.Error(err)
					}
				}
				_ = f.Dump()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(f.Dump(), "\n"); got != workers*each/2 {
		t.Errorf("%d pinholes open, want %d", got, workers*each/2)
	}
	if got := len(f.Ops()); got != workers*each*3/2 {
		t.Errorf("%d operations logged, want %d", got, workers*each*3/2)
	}
}
