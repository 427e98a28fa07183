package main

import (
	"slices"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values are bounded: every label takes one of the values listed here,
// and anything else a peer or a future event brings is counted as "other".
// The counters for every combination exist from the start (at zero), so that
// rate() and the alert rules see them before the first event.
const otherLabel = "other"

var (
	sessionModes       = []string{string(proxy.ModeReverse), string(proxy.ModeRedirect), string(proxy.ModeTProxy)}
	sessionResults     = []string{"ok", "refused", "timeout", "error"}
	transferDirections = []string{"download", "upload"}
	transferResults    = []string{"ok", "failed", "aborted", "refused"}
	transferLegs       = []string{"client", "server"}
	pinholeOps         = []string{"open", "close"}
	okOrError          = []string{"ok", "error"}
	denialReasons      = []string{"policy", "limit", "bounce", "protocol"}
	tlsLegs            = []string{"client", "server", "client-data", "server-data"}
	// dataRefusedReasons: see dataRefusedReason.
	dataRefusedReasons = []string{"wrong_peer", "not_expected", "already_waiting", "ambiguous", "proxy_header"}
)

// metrics is the Prometheus proxy.Observer. It has its own registry (not
// the global one), with the Go and process collectors; Handler serves it.
// Observe only adds to pre-resolved counters and histograms: a read-only map
// lookup and atomic adds, no lock and no allocation.
type metrics struct {
	reg *prometheus.Registry

	sessions       labeled[prometheus.Counter]
	transfers      labeled[prometheus.Counter]
	transferBytes  labeled[prometheus.Counter]
	transferTime   prometheus.Observer
	pinholeOps     labeled[prometheus.Counter]
	pinholeTime    labeled[prometheus.Observer]
	dataRefused    labeled[prometheus.Counter]
	denials        labeled[prometheus.Counter]
	tlsHandshakes  labeled[prometheus.Counter]
	tlsResumed     labeled[prometheus.Counter]
	upstreamTime   labeled[prometheus.Observer]
	reloads        labeled[prometheus.Counter]
	lastReloadOK   prometheus.Gauge
	lastReloadTime prometheus.Gauge
}

var _ proxy.Observer = (*metrics)(nil)

// newMetrics builds the registry with every ftpgate metric. The gauges that
// read live state are added by watchServer and watchPassivePorts once that
// state exists; the audit sinks' drop counters by watchSink.
func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{reg: reg}
	f := factory{reg}
	m.sessions = f.counters("ftpgate_sessions_total", "Control sessions ended, by mode and result.",
		label{"mode", sessionModes}, label{"result", sessionResults})
	m.transfers = f.counters("ftpgate_transfers_total", "Transfer commands ended (listings included), by direction and result; refused and failed ones too.",
		label{"direction", transferDirections}, label{"result", transferResults})
	m.transferBytes = f.counters("ftpgate_transfer_bytes_total", "Data bytes relayed, by direction and by the leg (client or server side) they crossed.",
		label{"direction", transferDirections}, label{"leg", transferLegs})
	m.transferTime = f.histogram("ftpgate_transfer_duration_seconds", "How long transfer commands took, from the command to the final reply.",
		[]float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}).only()
	m.pinholeOps = f.counters("ftpgate_pinhole_operations_total", "Firewall pinhole operations, by operation and result.",
		label{"op", pinholeOps}, label{"result", okOrError})
	// 50µs .. ~0.8s: an add or delete over the lasting netlink connection
	// takes microseconds; milliseconds mean a congested or wrong socket.
	m.pinholeTime = f.histogram("ftpgate_pinhole_operation_duration_seconds", "How long one firewall pinhole operation took.",
		prometheus.ExponentialBuckets(0.00005, 4, 8), label{"op", pinholeOps})
	m.dataRefused = f.counters("ftpgate_data_connections_refused_total", "Connections to a data port that were refused, by reason.",
		label{"reason", dataRefusedReasons})
	m.denials = f.counters("ftpgate_denials_total", "Requests the proxy refused (a client was answered), by reason: policy, limit, bounce or protocol.",
		label{"reason", denialReasons})
	m.tlsHandshakes = f.counters("ftpgate_tls_handshakes_total", "TLS handshakes, by leg and result.",
		label{"leg", tlsLegs}, label{"result", okOrError})
	m.tlsResumed = f.counters("ftpgate_tls_resumed_handshakes_total", "Successful TLS handshakes that resumed a session, by leg.",
		label{"leg", tlsLegs})
	m.upstreamTime = f.histogram("ftpgate_upstream_connect_duration_seconds", "How long dialing a server's control connection took, by result.",
		[]float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, label{"result", okOrError})
	m.reloads = f.counters("ftpgate_config_reloads_total", "Configuration reloads, by result.",
		label{"result", okOrError})
	m.lastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftpgate_config_last_reload_successful",
		Help: "Whether the last configuration reload succeeded (1) or was refused (0); 1 after a good start."})
	m.lastReloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ftpgate_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration in force was loaded (start or last good reload), in seconds since the epoch."})
	reg.MustRegister(m.lastReloadOK, m.lastReloadTime)
	return m
}

// configLoaded records that the configuration was loaded at start at t.
func (m *metrics) configLoaded(t time.Time) {
	m.lastReloadOK.Set(1)
	m.lastReloadTime.Set(float64(t.UnixNano()) / 1e9)
}

// watchServer adds the gauges read from the proxy's live counters: open
// sessions and pinholes. The server's own counts cannot drift the way a sum
// of start and end events could.
func (m *metrics) watchServer(stats func() proxy.Stats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ftpgate_sessions_active", Help: "Control sessions open now."},
			func() float64 { return float64(stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ftpgate_pinholes_active", Help: "Firewall pinholes open now."},
			func() float64 { return float64(stats().Pinholes) }),
	)
}

// watchReadiness adds ftpgate_ready, 1 while /readyz answers 200: an
// alert on no ready replica needs no Kubernetes metrics.
func (m *metrics) watchReadiness(r *readiness) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ftpgate_ready",
		Help: "1 while the process is ready (listeners up, firewall installed, not draining), else 0."},
		func() float64 {
			if r.check() != nil {
				return 0
			}
			return 1
		}))
}

// watchPassivePorts adds the passive port gauges over ports, which returns
// how many data ports are in use now and how many the range has. The size
// is ftpgate_passive_ports_capacity, not _total: a gauge must not end in
// _total (promtool check metrics refuses it).
func (m *metrics) watchPassivePorts(ports func() (inUse, total int)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ftpgate_passive_ports_in_use", Help: "Data ports of the passive range in use now."},
			func() float64 { n, _ := ports(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ftpgate_passive_ports_capacity", Help: "Data ports in the passive range (0 with kernel-chosen ports)."},
			func() float64 { _, n := ports(); return float64(n) }),
	)
}

// watchSinks adds the counters of records the audit sinks dropped or could
// not write, labelled by sink name ("audit", "xferlog").
func (m *metrics) watchSinks(sinks ...*logSink) {
	if len(sinks) == 0 {
		return
	}
	dropped := prometheus.NewDesc("ftpgate_audit_records_dropped_total",
		"Audit and xferlog records dropped because the writer fell behind.", []string{"sink"}, nil)
	failed := prometheus.NewDesc("ftpgate_audit_write_errors_total",
		"Audit and xferlog records that could not be written (disk full, file gone).", []string{"sink"}, nil)
	m.reg.MustRegister(sinkCollector{sinks, dropped, failed})
}

// sinkCollector reads the sinks' counters at scrape time.
type sinkCollector struct {
	sinks           []*logSink
	dropped, failed *prometheus.Desc
}

func (c sinkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.dropped; ch <- c.failed }

func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sinks {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.dropped.Load()), s.name)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(s.writeErrors.Load()), s.name)
	}
}

// Observe counts one proxy event.
func (m *metrics) Observe(ev proxy.Event) {
	switch e := ev.(type) {
	case proxy.SessionEndEvent:
		m.sessions.get(bounded(string(e.Mode), sessionModes), bounded(e.Result, sessionResults)).Inc()
	case proxy.TransferEvent:
		dir := bounded(e.Direction, transferDirections)
		m.transfers.get(dir, bounded(e.Result, transferResults)).Inc()
		if e.Bytes > 0 {
			// A relay moves the same bytes over both legs; each leg's
			// counter moves by the transfer's size.
			for _, leg := range transferLegs {
				m.transferBytes.get(dir, leg).Add(float64(e.Bytes))
			}
		}
		m.transferTime.Observe(e.Duration.Seconds())
	case proxy.PinholeEvent:
		op := bounded(e.Op, pinholeOps)
		m.pinholeOps.get(op, result(e.Err)).Inc()
		m.pinholeTime.get(op).Observe(e.Duration.Seconds())
	case proxy.DataRefusedEvent:
		m.dataRefused.get(dataRefusedReason(e.Reason)).Inc()
	case proxy.DenialEvent:
		m.denials.get(bounded(e.Kind, denialReasons)).Inc()
	case proxy.TLSHandshakeEvent:
		leg := bounded(e.Leg, tlsLegs)
		m.tlsHandshakes.get(leg, result(e.Err)).Inc()
		if e.Err == nil && e.Resumed {
			m.tlsResumed.get(leg).Inc()
		}
	case proxy.UpstreamConnectEvent:
		m.upstreamTime.get(result(e.Err)).Observe(e.Duration.Seconds())
	case proxy.ReloadEvent:
		m.reloads.get(result(e.Err)).Inc()
		if e.Err != nil {
			m.lastReloadOK.Set(0)
			return
		}
		t := e.Time
		if t.IsZero() {
			t = time.Now()
		}
		m.configLoaded(t)
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// bounded returns v if it is one of allowed, else "other".
func bounded(v string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return otherLabel
}

// dataRefusedReason maps the proxy's free-text reason for refusing a data
// connection to one label value. A reason that already is a label value
// stays as it is.
func dataRefusedReason(reason string) string {
	if v := bounded(reason, dataRefusedReasons); v != otherLabel {
		return v
	}
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "proxy header"):
		return "proxy_header"
	case strings.Contains(r, "already waiting"):
		return "already_waiting"
	case strings.Contains(r, "several sessions"):
		return "ambiguous" // a trusted balancer's connection while more than one session waits
	case strings.Contains(r, "no data connection expected"), strings.Contains(r, "nobody"):
		return "not_expected"
	case strings.Contains(r, "expected "), strings.Contains(r, "not the client"), strings.Contains(r, "bounce"):
		return "wrong_peer"
	}
	return otherLabel
}

// label is one label name and its bounded values ("other" is added).
type label struct {
	name   string
	values []string
}

// labeled holds one child per combination of label values, resolved when
// the registry is built, so that Observe never takes the vector's lock.
type labeled[T any] struct {
	children map[[2]string]T
}

// get returns the child for the given (already bounded) values.
func (l labeled[T]) get(values ...string) T {
	var k [2]string
	copy(k[:], values)
	return l.children[k]
}

// only returns the single child of a metric without labels.
func (l labeled[T]) only() T { return l.children[[2]string{}] }

// factory registers metrics with every label combination pre-created.
type factory struct{ reg *prometheus.Registry }

func (f factory) counters(name, help string, labels ...label) labeled[prometheus.Counter] {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames(labels))
	f.reg.MustRegister(vec)
	return resolve(labels, func(vals ...string) prometheus.Counter { return vec.WithLabelValues(vals...) })
}

func (f factory) histogram(name, help string, buckets []float64, labels ...label) labeled[prometheus.Observer] {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labelNames(labels))
	f.reg.MustRegister(vec)
	return resolve(labels, func(vals ...string) prometheus.Observer { return vec.WithLabelValues(vals...) })
}

func labelNames(labels []label) []string {
	names := make([]string, len(labels))
	for i, l := range labels {
		names[i] = l.name
	}
	return names
}

// resolve creates the child of every combination of label values (at most
// two labels), "other" included.
func resolve[T any](labels []label, child func(...string) T) labeled[T] {
	if len(labels) > 2 {
		panic("metrics: at most two labels")
	}
	l := labeled[T]{children: map[[2]string]T{}}
	var walk func(i int, vals []string)
	walk = func(i int, vals []string) {
		if i == len(labels) {
			var k [2]string
			copy(k[:], vals)
			l.children[k] = child(slices.Clone(vals)...)
			return
		}
		for _, v := range append(slices.Clone(labels[i].values), otherLabel) {
			walk(i+1, append(vals, v))
		}
	}
	walk(0, nil)
	return l
}
