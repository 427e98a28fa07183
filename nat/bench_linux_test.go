package nat

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
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
	benchmarkCycles(b, Config{DataPorts: []PortRange{{40000, 40100}}}, false)
}

// BenchmarkDivertingPinholeOpenClose is BenchmarkPinholeOpenClose for
// pinholes that also divert a flow (transparent mode): each operation
// changes a set element and a map element in one batch. Same goal.
func BenchmarkDivertingPinholeOpenClose(b *testing.B) {
	benchmarkCycles(b, Config{DataPorts: []PortRange{{40000, 40100}},
		Intercept: Intercept{Mode: InterceptRedirect, ListenPort: 2100}}, true)
}

func benchmarkCycles(b *testing.B, cfg Config, divert bool) {
	ns := newNS(b)
	fw := newFirewall(b, ns, cfg)
	var lat latencies
	for b.Loop() {
		cycle(b, fw, 1, &lat, divert)
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(quantile(lat.open, 0.5)), "open-p50-µs")
	b.ReportMetric(us(quantile(lat.open, 0.99)), "open-p99-µs")
	b.ReportMetric(us(quantile(lat.refresh, 0.5)), "refresh-p50-µs")
	b.ReportMetric(us(quantile(lat.refresh, 0.99)), "refresh-p99-µs")
	b.ReportMetric(us(quantile(lat.close, 0.5)), "close-p50-µs")
	b.ReportMetric(us(quantile(lat.close, 0.99)), "close-p99-µs")
}

// TestPinholeLatency runs 1,000 cycles and logs the figures; it asserts only
// that every operation succeeded and the set ends empty (timings under -race
// or a loaded machine say little; the benchmark is for numbers).
func TestPinholeLatency(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
	var lat latencies
	cycle(t, fw, 1000, &lat, false)
	t.Log(lat.String())
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Errorf("%d elements left after 1,000 open/close cycles", len(got))
	}
}
