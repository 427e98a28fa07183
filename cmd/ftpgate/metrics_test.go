package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// sample returns the value of the series of family name whose labels
// include want: a counter's or gauge's value, a histogram's sample count.
func sample(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
			t.Fatalf("%s: unexpected type %v", name, f.GetType())
		}
		t.Fatalf("%s: no series with labels %v", name, want)
	}
	t.Fatalf("no metric family %s", name)
	return 0
}

// wiredMetrics is a registry as cmdRun wires it, with fixed live sources.
func wiredMetrics(t *testing.T) *metrics {
	t.Helper()
	m := newMetrics()
	m.watchServer(func() proxy.Stats { return proxy.Stats{Sessions: 3, Pinholes: 2, Listeners: 5} })
	m.watchPassivePorts(func() (int, int) { return 7, 1000 })
	m.watchReadiness(&readiness{})
	m.watchSinks(newLogSink("audit", "unused", 1, auditAccepts, appendAuditRecord, zap.NewNop()))
	return m
}

var (
	testClient = netip.MustParseAddrPort("198.18.0.10:50000")
	testServer = netip.MustParseAddrPort("198.18.1.20:21")
)

// syntheticEvents is one event of every kind, some of them failed.
func syntheticEvents() []proxy.Event {
	t0 := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	return []proxy.Event{
		proxy.SessionStartEvent{Session: 1, Time: t0, Mode: proxy.ModeReverse, Client: testClient},
		proxy.UpstreamConnectEvent{Duration: 3 * time.Millisecond},
		proxy.UpstreamConnectEvent{Duration: 5 * time.Second, Err: errors.New("dial: i/o timeout")},
		proxy.TLSHandshakeEvent{Leg: "client"},
		proxy.TLSHandshakeEvent{Leg: "client-data", Resumed: true},
		proxy.TLSHandshakeEvent{Leg: "server", Err: errors.New("remote error: bad certificate")},
		proxy.PinholeEvent{Op: "open", Duration: 5 * time.Microsecond},
		proxy.PinholeEvent{Op: "close", Duration: 4 * time.Microsecond},
		proxy.PinholeEvent{Op: "open", Duration: time.Millisecond, Err: errors.New("netlink: no buffer space")},
		proxy.TransferEvent{Session: 1, Start: t0, Duration: 2 * time.Second, Client: testClient, Server: testServer,
			User: "alice", Verb: "RETR", Path: "/pub/file one.bin", Direction: "download", Bytes: 1 << 20, Code: 226, Result: "ok"},
		proxy.TransferEvent{Session: 1, Start: t0, Duration: time.Second, Client: testClient, Server: testServer,
			User: "alice", Verb: "STOR", Path: "/in/x", Direction: "upload", Bytes: 100, Code: 426, Result: "aborted", Cause: "server closed the data connection"},
		proxy.TransferEvent{Session: 1, Start: t0, Client: testClient, User: "alice", Verb: "RETR", Path: "/missing",
			Direction: "download", Code: 550, Result: "failed", Cause: "550 No such file"},
		proxy.TransferEvent{Session: 1, Start: t0, Client: testClient, User: "alice", Verb: "RETR", Path: "/late",
			Direction: "download", Code: 425, Result: "refused", Cause: "no data connection within 30s"},
		proxy.DataRefusedEvent{From: netip.MustParseAddrPort("198.18.0.99:4000"), Listener: netip.MustParseAddrPort("198.18.0.1:40001"),
			Reason: "data connection from 198.18.0.99, expected 198.18.0.10"},
		proxy.DenialEvent{Session: 1, Time: t0, Client: testClient, User: "alice", Kind: "bounce", Verb: "PORT",
			Reason: "data address 198.18.0.77 is not the client's own address", Code: 500},
		proxy.FileCommandEvent{Session: 1, Time: t0, Client: testClient, User: "alice", Verb: "DELE", Path: "/in/old", Code: 250},
		proxy.ReloadEvent{Time: t0, Err: errors.New("config x.yaml: line 3: unknown setting foo")},
		proxy.SessionEndEvent{Session: 1, Time: t0.Add(time.Minute), Mode: proxy.ModeReverse, Client: testClient, Server: testServer,
			User: "alice", Duration: time.Minute, BytesDown: 1 << 20, BytesUp: 100, Result: "ok"},
	}
}

func TestMetricsCountEvents(t *testing.T) {
	m := wiredMetrics(t)
	for _, ev := range syntheticEvents() {
		m.Observe(ev)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ftpgate_sessions_active", nil, 3},
		{"ftpgate_pinholes_active", nil, 2},
		{"ftpgate_passive_ports_in_use", nil, 7},
		{"ftpgate_passive_ports_capacity", nil, 1000},
		{"ftpgate_sessions_total", map[string]string{"mode": "reverse", "result": "ok"}, 1},
		{"ftpgate_sessions_total", map[string]string{"mode": "reverse", "result": "error"}, 0},
		{"ftpgate_transfers_total", map[string]string{"direction": "download", "result": "ok"}, 1},
		{"ftpgate_transfers_total", map[string]string{"direction": "download", "result": "failed"}, 1},
		{"ftpgate_transfers_total", map[string]string{"direction": "download", "result": "refused"}, 1},
		{"ftpgate_transfers_total", map[string]string{"direction": "upload", "result": "aborted"}, 1},
		{"ftpgate_transfer_bytes_total", map[string]string{"direction": "download", "leg": "client"}, 1 << 20},
		{"ftpgate_transfer_bytes_total", map[string]string{"direction": "download", "leg": "server"}, 1 << 20},
		{"ftpgate_transfer_bytes_total", map[string]string{"direction": "upload", "leg": "client"}, 100},
		{"ftpgate_transfer_duration_seconds", nil, 4},
		{"ftpgate_pinhole_operations_total", map[string]string{"op": "open", "result": "ok"}, 1},
		{"ftpgate_pinhole_operations_total", map[string]string{"op": "open", "result": "error"}, 1},
		{"ftpgate_pinhole_operations_total", map[string]string{"op": "close", "result": "ok"}, 1},
		{"ftpgate_pinhole_operation_duration_seconds", map[string]string{"op": "open"}, 2},
		{"ftpgate_data_connections_refused_total", map[string]string{"reason": "wrong_peer"}, 1},
		{"ftpgate_denials_total", map[string]string{"reason": "bounce"}, 1},
		{"ftpgate_denials_total", map[string]string{"reason": "policy"}, 0},
		{"ftpgate_tls_handshakes_total", map[string]string{"leg": "client", "result": "ok"}, 1},
		{"ftpgate_tls_handshakes_total", map[string]string{"leg": "client-data", "result": "ok"}, 1},
		{"ftpgate_tls_handshakes_total", map[string]string{"leg": "server", "result": "error"}, 1},
		{"ftpgate_tls_resumed_handshakes_total", map[string]string{"leg": "client-data"}, 1},
		{"ftpgate_upstream_connect_duration_seconds", map[string]string{"result": "ok"}, 1},
		{"ftpgate_upstream_connect_duration_seconds", map[string]string{"result": "error"}, 1},
		{"ftpgate_config_reloads_total", map[string]string{"result": "error"}, 1},
		{"ftpgate_config_reloads_total", map[string]string{"result": "ok"}, 0},
		{"ftpgate_config_last_reload_successful", nil, 0},
		{"ftpgate_ready", nil, 0},
	} {
		if got := sample(t, m.reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMetricsReloadSuccessTimestamp(t *testing.T) {
	m := newMetrics()
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	m.configLoaded(start)
	if got := sample(t, m.reg, "ftpgate_config_last_reload_success_timestamp_seconds", nil); got != float64(start.Unix()) {
		t.Fatalf("after start: timestamp %v, want %v", got, start.Unix())
	}
	m.Observe(proxy.ReloadEvent{Time: start.Add(time.Hour), Err: errors.New("bad file")})
	if got := sample(t, m.reg, "ftpgate_config_last_reload_success_timestamp_seconds", nil); got != float64(start.Unix()) {
		t.Fatalf("a failed reload moved the success timestamp to %v", got)
	}
	if got := sample(t, m.reg, "ftpgate_config_last_reload_successful", nil); got != 0 {
		t.Fatalf("last reload successful = %v after a failed reload", got)
	}
	good := start.Add(2 * time.Hour)
	m.Observe(proxy.ReloadEvent{Time: good})
	if got := sample(t, m.reg, "ftpgate_config_last_reload_success_timestamp_seconds", nil); got != float64(good.Unix()) {
		t.Fatalf("after a good reload: timestamp %v, want %v", got, good.Unix())
	}
	if got := sample(t, m.reg, "ftpgate_config_last_reload_successful", nil); got != 1 {
		t.Fatalf("last reload successful = %v after a good reload", got)
	}
	if got := sample(t, m.reg, "ftpgate_config_reloads_total", map[string]string{"result": "ok"}); got != 1 {
		t.Fatalf("reloads ok = %v", got)
	}
}

// seriesCount is the number of series in the registry.
func seriesCount(t *testing.T, reg prometheus.Gatherer) int {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		n += len(f.GetMetric())
	}
	return n
}

// TestMetricsLabelsBounded feeds events whose label sources are free text
// (as a peer or a future proxy version could make them) and checks that no
// series appears: they all land on the pre-made "other" series.
func TestMetricsLabelsBounded(t *testing.T) {
	m := wiredMetrics(t)
	before := seriesCount(t, m.reg)
	for i := range 50 {
		junk := strings.Repeat("x", i) + " from 198.18.0." + string(rune('a'+i%26))
		m.Observe(proxy.SessionEndEvent{Mode: "bogus", Result: junk, User: junk}) // an untyped constant: Mode's type may be renamed
		m.Observe(proxy.TransferEvent{Direction: junk, Result: junk, User: junk, Path: junk, Bytes: 1})
		m.Observe(proxy.PinholeEvent{Op: junk})
		m.Observe(proxy.DataRefusedEvent{Reason: junk})
		m.Observe(proxy.DenialEvent{Kind: junk, Reason: junk})
		m.Observe(proxy.TLSHandshakeEvent{Leg: junk})
	}
	if after := seriesCount(t, m.reg); after != before {
		t.Fatalf("free-text values made new series: %d before, %d after", before, after)
	}
	if got := sample(t, m.reg, "ftpgate_transfers_total", map[string]string{"direction": "other", "result": "other"}); got != 50 {
		t.Fatalf("transfers{other,other} = %v, want 50", got)
	}
	if got := sample(t, m.reg, "ftpgate_data_connections_refused_total", map[string]string{"reason": "other"}); got != 50 {
		t.Fatalf("data refused{other} = %v, want 50", got)
	}
}

func TestDataRefusedReason(t *testing.T) {
	for _, c := range []struct{ reason, want string }{
		{"data connection from 198.18.0.99, expected 198.18.0.10", "wrong_peer"},
		{"no data connection expected on this port", "not_expected"},
		{"a data connection from this peer is already waiting", "already_waiting"},
		{"PROXY header: invalid signature", "proxy_header"},
		{"trusted source, but several sessions wait on this port", "ambiguous"},
		{"wrong_peer", "wrong_peer"},
		{"something new", "other"},
		{"", "other"},
	} {
		if got := dataRefusedReason(c.reason); got != c.want {
			t.Errorf("dataRefusedReason(%q) = %q, want %q", c.reason, got, c.want)
		}
	}
}

// TestMetricsObserveDoesNotAllocate: Observe is on the session's path; it
// adds to pre-resolved series and allocates nothing.
func TestMetricsObserveDoesNotAllocate(t *testing.T) {
	m := wiredMetrics(t)
	for _, ev := range syntheticEvents() {
		if _, ok := ev.(proxy.ReloadEvent); ok {
			continue // reloads are rare; time.Now may be called
		}
		if n := testing.AllocsPerRun(100, func() { m.Observe(ev) }); n != 0 {
			t.Errorf("Observe(%T) allocates %v times", ev, n)
		}
	}
}

// scrape returns the text exposition of m as the admin endpoint serves it.
func scrape(t *testing.T, m *metrics) []byte {
	t.Helper()
	srv := httptest.NewServer(newAdminHandler(adminConfig{Metrics: m, Ready: &readiness{}}))
	defer srv.Close()
	code, body := get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d: %s", code, body)
	}
	return []byte(body)
}

func TestMetricsScrapeExposesEveryName(t *testing.T) {
	m := wiredMetrics(t)
	for _, ev := range syntheticEvents() {
		m.Observe(ev)
	}
	body := string(scrape(t, m))
	for _, name := range []string{
		"ftpgate_sessions_active", "ftpgate_sessions_total", "ftpgate_transfers_total", "ftpgate_transfer_bytes_total",
		"ftpgate_transfer_duration_seconds_bucket", "ftpgate_pinholes_active", "ftpgate_pinhole_operations_total",
		"ftpgate_pinhole_operation_duration_seconds_bucket", "ftpgate_passive_ports_in_use", "ftpgate_passive_ports_capacity",
		"ftpgate_data_connections_refused_total", "ftpgate_denials_total", "ftpgate_tls_handshakes_total",
		"ftpgate_upstream_connect_duration_seconds_bucket", "ftpgate_config_reloads_total",
		"ftpgate_config_last_reload_success_timestamp_seconds", "ftpgate_audit_records_dropped_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("scrape has no %s", name)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, "alice") || strings.Contains(line, "198.18.") {
			t.Errorf("a per-user or per-client value reached a label: %s", line)
		}
	}
}

// promtool finds promtool: on PATH, or where scripts/install-test-deps.sh
// unpacks Debian's prometheus package. Missing, it fails the test when
// FTPGATE_E2E=1 or CI=true and skips it otherwise.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	const unpacked = "/opt/ftpgate-e2e/prometheus/usr/bin/promtool"
	if _, err := os.Stat(unpacked); err == nil {
		return unpacked
	}
	if testenv.Strict() {
		t.Fatal("promtool not found on PATH or at " + unpacked + ": run scripts/install-test-deps.sh")
	}
	t.Skip("promtool not found (scripts/install-test-deps.sh unpacks it); with FTPGATE_E2E=1 or CI=true this fails")
	return ""
}

func TestPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	m := wiredMetrics(t)
	for _, ev := range syntheticEvents() {
		m.Observe(ev)
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, m))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: ok %s", strings.TrimSpace(string(out)))
}

// TestMetricsNoGlobalRegistry: two registries side by side (as tests and a
// future reload make them) do not collide, and nothing lands in the
// global one.
func TestMetricsNoGlobalRegistry(t *testing.T) {
	wiredMetrics(t)
	wiredMetrics(t)
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "ftpgate_") {
			t.Fatalf("%s is in the global registry", f.GetName())
		}
	}
}

func TestPassivePortsGaugeSource(t *testing.T) {
	r := nat.PortRange{Lo: 40000, Hi: 40099}
	srv, err := proxy.New(proxy.Config{Listen: []string{"127.0.0.1:0"}, Upstream: "127.0.0.1:21", PassivePorts: r},
		nat.NewFake(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	ports := passivePortsInUse(srv)
	inUse, total := ports()
	cancel()
	if err := srv.Serve(ctx); err != nil { // ctx is done: closes the listener and returns
		t.Fatal(err)
	}
	if inUse != 0 || total != 100 {
		t.Fatalf("passive ports: %d in use of %d, want 0 of 100", inUse, total)
	}
	any, err := proxy.New(proxy.Config{Listen: []string{"127.0.0.1:0"}, Upstream: "127.0.0.1:21"}, nat.NewFake(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, total := passivePortsInUse(any)(); total != 0 {
		t.Fatalf("kernel-chosen ports: total %d, want 0", total)
	}
}
