package nat

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// latencies holds per-operation durations of open/refresh/close cycles.
type latencies struct {
	open, refresh, close []time.Duration
}

// cycle runs n cycles of Open, Open again (refresh) and Close on distinct
// pinholes and records how long each call took. With divert the pinholes
// also divert a flow (two elements per operation).
func cycle(tb testing.TB, fw Firewall, n int, lat *latencies, divert bool) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		p := Pinhole{
			Peer:  netip.AddrFrom4([4]byte{198, 18, 3, byte(i / 100)}),
			Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(40000+i%100)),
		}
		if divert {
			p.Intercept = netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), uint16(50000+i%100))
		}
		t0 := time.Now()
		if err := fw.Open(ctx, p, 0); err != nil {
			tb.Fatal(err)
		}
		t1 := time.Now()
		if err := fw.Open(ctx, p, 0); err != nil {
			tb.Fatal(err)
		}
		t2 := time.Now()
		if err := fw.Close(ctx, p); err != nil {
			tb.Fatal(err)
		}
		t3 := time.Now()
		lat.open = append(lat.open, t1.Sub(t0))
		lat.refresh = append(lat.refresh, t2.Sub(t1))
		lat.close = append(lat.close, t3.Sub(t2))
	}
}

// quantile returns the q-quantile (0..1) of ds by the nearest-rank method.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l *latencies) String() string {
	return fmt.Sprintf("%d cycles: open median %s p99 %s; refresh median %s p99 %s; close median %s p99 %s",
		len(l.open),
		quantile(l.open, 0.5), quantile(l.open, 0.99),
		quantile(l.refresh, 0.5), quantile(l.refresh, 0.99),
		quantile(l.close, 0.5), quantile(l.close, 0.99))
}

// BenchmarkPinholeOpenClose reports median and p99 latency of Open, refresh
// and Close against the real kernel, in a fresh namespace. The goal is a
// median under 50µs per operation. Run 1,000 cycles with:
//
//	go test -run '^$' -bench PinholeOpenClose -benchtime 1000x ./nat
func BenchmarkPinholeOpenClose(b *testing.B) {
	benchmarkCycles(b, benchConfig(false), false)
}

// benchConfig is the firewall of the benchmarks: data ports closed but for
// pinholes, and with divert the interception that diverting pinholes need.
func benchConfig(divert bool) Config {
	cfg := Config{DataPorts: []PortRange{{40000, 40100}}}
	if divert {
		cfg.Intercept = Intercept{Mode: InterceptRedirect, ListenPort: 2100}
	}
	return cfg
}

// BenchmarkDivertingPinholeOpenClose is BenchmarkPinholeOpenClose for
// pinholes that also divert a flow (transparent mode): each operation
// changes a set element and a map element in one batch. Same goal.
func BenchmarkDivertingPinholeOpenClose(b *testing.B) {
	benchmarkCycles(b, benchConfig(true), true)
}

func benchmarkCycles(b *testing.B, cfg Config, divert bool) {
	ns := newNS(b)
	fw := newFirewall(b, ns, cfg)
	var lat latencies
	for b.Loop() {
		cycle(b, fw, 1, &lat, divert)
	}
	reportLatency(b, "open", lat.open)
	reportLatency(b, "refresh", lat.refresh)
	reportLatency(b, "close", lat.close)
}

// reportLatency reports the median and p99 of ds in µs as name-p50-µs and
// name-p99-µs.
func reportLatency(b *testing.B, name string, ds []time.Duration) {
	for _, q := range []struct {
		q    float64
		unit string
	}{{0.5, "-p50-µs"}, {0.99, "-p99-µs"}} {
		b.ReportMetric(float64(quantile(ds, q.q).Nanoseconds())/1e3, name+q.unit)
	}
}

// TestPinholeLatency runs 1,000 cycles and logs the figures; it asserts only
// that every operation succeeded and the set ends empty (timings under -race
// or a loaded machine say little; the benchmark is for numbers).
func TestPinholeLatency(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, benchConfig(false))
	var lat latencies
	cycle(t, fw, 1000, &lat, false)
	t.Log(lat.String())
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Errorf("%d elements left after 1,000 open/close cycles", len(got))
	}
}

// load is a run of many data plans at once against one firewall, a
// lasting one as in production. Each plan opens a pinhole of its own (a
// peer address per plan, a new local port each time), holds it for a
// random time between the hold bounds (a data transfer), closes it and
// starts again; a plan first starts after a random time up to the longest
// hold, so that they do not all start at once. The run ends when cycles
// plans have started in all, or after limit.
type load struct {
	plans, cycles    int
	minHold, maxHold time.Duration
	limit            time.Duration
	divert           bool // every pinhole also diverts a flow (two elements per operation)
}

// loadRun is the outcome of running many data plans at once against one
// firewall: per plan the latency of its Open, of its Close and of both.
type loadRun struct {
	open, close, both []time.Duration
	live              int // pinhole set elements at mid-run
	ops               int // Opens and Closes that returned
	elapsed           time.Duration
	errs              []error
}

// run runs l on fw; at mid-run it counts the elements of ns's pinhole set.
func (l load) run(tb testing.TB, ns *testNS, fw Firewall) loadRun {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), l.limit+10*time.Second)
	defer cancel()
	var (
		started atomic.Int64
		half    = make(chan struct{})
		mu      sync.Mutex
		run     loadRun
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(l.limit)
	t0 := time.Now()
	for g := range l.plans {
		wg.Go(func() {
			// Room for twice a fair share, so that recording makes little
			// garbage for the collector during the run.
			share := 2*l.cycles/l.plans + 2
			open, closed := make([]time.Duration, 0, share), make([]time.Duration, 0, share)
			var errs []error
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				run.open = append(run.open, open...)
				run.close = append(run.close, closed...)
				for i := range closed {
					run.both = append(run.both, open[i]+closed[i])
				}
				run.ops += len(open) + len(closed)
				run.errs = append(run.errs, errs...)
			}()
			time.Sleep(rand.N(l.maxHold))
			for k := 0; ; k++ {
				n := started.Add(1)
				if n > int64(l.cycles) || time.Now().After(deadline) {
					return
				}
				if n == int64(l.cycles+1)/2 {
					close(half)
				}
				p := Pinhole{
					Peer:  netip.AddrFrom4([4]byte{198, 18, byte(16 + g/256), byte(g)}),
					Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(40000+k%100)),
				}
				if l.divert {
					p.Intercept = netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), uint16(50000+k%100))
				}
				t1 := time.Now()
				if err := fw.Open(ctx, p, 0); err != nil {
					errs = append(errs, err)
					return
				}
				t2 := time.Now()
				open = append(open, t2.Sub(t1))
				time.Sleep(l.minHold + rand.N(l.maxHold-l.minHold))
				t3 := time.Now()
				if err := fw.Close(ctx, p); err != nil {
					errs = append(errs, err)
					return
				}
				closed = append(closed, time.Since(t3))
			}
		})
	}
	select {
	case <-half:
		run.live = len(ns.setElements(tb, "inet", "ftpgate", "pinholes4"))
	case <-ctx.Done():
	}
	wg.Wait()
	run.elapsed = time.Since(t0)
	return run
}

func (r *loadRun) String() string {
	return fmt.Sprintf("%d plans in %s (%.0f ops/s), %d pinholes live at mid-run: open median %s p99 %s; close median %s p99 %s; open+close median %s p99 %s",
		len(r.both), r.elapsed.Round(time.Millisecond), float64(r.ops)/r.elapsed.Seconds(), r.live,
		quantile(r.open, 0.5), quantile(r.open, 0.99),
		quantile(r.close, 0.5), quantile(r.close, 0.99),
		quantile(r.both, 0.5), quantile(r.both, 0.99))
}

// The Scale goal: a pinhole's Open+Close median under 50µs with 1,000
// data plans at once. Each plan's transfer lasts 1–20ms (a small file),
// which asks about 190,000 operations a second of the firewall; with
// 100–200ms (about 13,000 a second) the same plans come ten times slower.
var loadHolds = []struct {
	name     string
	min, max time.Duration
}{
	{"hold=1-20ms", time.Millisecond, 20 * time.Millisecond},
	{"hold=100-200ms", 100 * time.Millisecond, 200 * time.Millisecond},
}

const (
	loadPlans = 1000
	loadLimit = 30 * time.Second
)

// BenchmarkPinholesUnderLoad reports the p50 and p99 latency of a plan's
// Open, Close and both while 1,000 plans run at once on one firewall, the
// pinholes live at mid-run and the operations per second. b.N is the
// number of plans in all; run 20,000 with:
//
//	go test -run '^$' -bench PinholesUnderLoad -benchtime 20000x ./nat
func BenchmarkPinholesUnderLoad(b *testing.B) {
	benchmarkLoad(b, false)
}

// BenchmarkDivertingPinholesUnderLoad is BenchmarkPinholesUnderLoad for
// pinholes that also divert a flow (transparent mode).
func BenchmarkDivertingPinholesUnderLoad(b *testing.B) {
	benchmarkLoad(b, true)
}

func benchmarkLoad(b *testing.B, divert bool) {
	for _, h := range loadHolds {
		b.Run(h.name, func(b *testing.B) {
			ns := newNS(b)
			fw := newFirewall(b, ns, benchConfig(divert))
			l := load{plans: loadPlans, cycles: b.N, minHold: h.min, maxHold: h.max, limit: loadLimit, divert: divert}
			b.ResetTimer()
			r := l.run(b, ns, fw)
			b.StopTimer()
			if err := errors.Join(r.errs...); err != nil {
				b.Fatal(err)
			}
			if len(r.both) == 0 {
				return // b.N smaller than the first round of plans
			}
			reportLatency(b, "open", r.open)
			reportLatency(b, "close", r.close)
			reportLatency(b, "openclose", r.both)
			b.ReportMetric(float64(r.live), "live-mid")
			b.ReportMetric(float64(r.ops)/r.elapsed.Seconds(), "ops/s")
		})
	}
}

// TestPinholesUnderLoad runs 1,000 concurrent plans, 5,000 in all, with
// and without divert, and logs the figures; it asserts only that every
// operation succeeded, that the sets end empty and that no goroutine is
// left behind (the benchmark is for numbers).
func TestPinholesUnderLoad(t *testing.T) {
	for _, divert := range []bool{false, true} {
		t.Run(fmt.Sprintf("divert=%v", divert), func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			ns := newNS(t)
			fw := newFirewall(t, ns, benchConfig(divert))
			const cycles = 5000
			l := load{plans: loadPlans, cycles: cycles, minHold: loadHolds[0].min, maxHold: loadHolds[0].max, limit: loadLimit, divert: divert}
			r := l.run(t, ns, fw)
			if err := errors.Join(r.errs...); err != nil {
				t.Fatalf("%d operations failed: %v", len(r.errs), err)
			}
			if len(r.both) != cycles {
				t.Errorf("%d plans ran, want %d (the time limit ended the run)", len(r.both), cycles)
			}
			t.Log(r.String())
			if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
				t.Errorf("%d elements left in pinholes4 after %d plans", len(got), cycles)
			}
			if !divert {
				return
			}
			if got := ns.divertElements(t, "divert4"); len(got) != 0 {
				t.Errorf("%d elements left in divert4 after %d plans", len(got), cycles)
			}
		})
	}
}
