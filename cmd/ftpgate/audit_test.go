package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func netipMapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}

// auditLines decodes JSON lines into one map per record.
func auditLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, rec)
	}
	return out
}

// subset reports which of want's keys rec lacks or has with another value;
// numbers compare as JSON numbers (float64).
func subset(rec, want map[string]any) []string {
	var diff []string
	for k, v := range want {
		if got, ok := rec[k]; !ok || got != v {
			diff = append(diff, k)
		}
	}
	return diff
}

func TestAuditRecords(t *testing.T) {
	var buf []byte
	for _, ev := range syntheticEvents() {
		if !auditAccepts(ev) {
			continue
		}
		buf = appendAuditRecord(buf, ev)
	}
	recs := auditLines(t, buf)
	want := []map[string]any{
		{"type": "session_start", "session": 1.0, "mode": "reverse", "client": "198.18.0.10:50000", "time": "2026-12-01T09:30:00Z"},
		{"type": "transfer", "verb": "RETR", "path": "/pub/file one.bin", "direction": "download", "bytes": 1048576.0,
			"code": 226.0, "result": "ok", "client": "198.18.0.10:50000", "server": "198.18.1.20:21", "user": "alice",
			"duration_seconds": 2.0, "tls": false, "data_type": "I"},
		{"type": "transfer", "verb": "STOR", "direction": "upload", "bytes": 100.0, "code": 426.0, "result": "aborted",
			"cause": "server closed the data connection"},
		{"type": "transfer", "verb": "RETR", "path": "/missing", "code": 550.0, "result": "failed", "cause": "550 No such file", "bytes": 0.0},
		{"type": "transfer", "verb": "RETR", "path": "/late", "code": 425.0, "result": "refused", "cause": "no data connection within 30s"},
		{"type": "data_refused", "from": "198.18.0.99:4000", "listener": "198.18.0.1:40001",
			"reason": "data connection from 198.18.0.99, expected 198.18.0.10"},
		{"type": "denial", "kind": "bounce", "verb": "PORT", "code": 500.0, "user": "alice", "session": 1.0},
		{"type": "file_command", "verb": "DELE", "path": "/in/old", "code": 250.0, "result": "ok"},
		{"type": "reload", "result": "error", "error": "config x.yaml: line 3: unknown setting foo"},
		{"type": "session_end", "result": "ok", "bytes_down": 1048576.0, "bytes_up": 100.0, "duration_seconds": 60.0,
			"user": "alice", "server": "198.18.1.20:21"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d:\n%s", len(recs), len(want), buf)
	}
	for i := range want {
		if d := subset(recs[i], want[i]); len(d) > 0 {
			t.Errorf("record %d %v: fields %v differ from %v", i, recs[i], d, want[i])
		}
	}
	// An absent server address is left out, not written as "".
	if _, ok := recs[3]["server"]; ok {
		t.Errorf("record without a server has a server field: %v", recs[3])
	}
}

func TestAuditSkipsMetricsOnlyEvents(t *testing.T) {
	for _, ev := range []proxy.Event{proxy.PinholeEvent{Op: "open"}, proxy.TLSHandshakeEvent{Leg: "client"},
		proxy.UpstreamConnectEvent{}} {
		if auditAccepts(ev) {
			t.Errorf("audit log accepts %T", ev)
		}
		if b := appendAuditRecord(nil, ev); len(b) != 0 {
			t.Errorf("audit record for %T: %q", ev, b)
		}
	}
}

func TestAuditRecordMappedAddress(t *testing.T) {
	b := appendAuditRecord(nil, proxy.DenialEvent{Client: netipMapped(testClient), Kind: "limit", Time: time.Unix(0, 0)})
	recs := auditLines(t, b)
	if len(recs) != 1 || recs[0]["client"] != "198.18.0.10:50000" {
		t.Fatalf("IPv4-mapped client not written as IPv4: %s", b)
	}
}

// waitFor polls cond for up to 10 seconds (a bound, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}

// TestAuditReopenOnSIGUSR1 does what logrotate does: rename the file, send
// SIGUSR1; the records after it land in a new file at the old path.
func TestAuditReopenOnSIGUSR1(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	auditPath, xferPath := filepath.Join(dir, "audit.log"), filepath.Join(dir, "xferlog")
	obs, err := openObservers(auditPath, xferPath, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	stop := reopenOnSignal(obs.sinks, zap.NewNop())
	o := obs.observer()
	start := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	o.Observe(proxy.TransferEvent{Start: start, Verb: "RETR", Path: "/before", Direction: "download", Result: "ok", Code: 226})
	waitFor(t, "the first records", func() bool { return fileHas(auditPath, "/before") && fileHas(xferPath, "/before") })
	for _, p := range []string{auditPath, xferPath} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new files after SIGUSR1", func() bool {
		_, e1 := os.Stat(auditPath)
		_, e2 := os.Stat(xferPath)
		return e1 == nil && e2 == nil
	})
	o.Observe(proxy.TransferEvent{Start: start, Verb: "RETR", Path: "/after", Direction: "download", Result: "ok", Code: 226})
	stop()
	obs.close()
	for _, p := range []string{auditPath, xferPath} {
		if fileHas(p+".1", "/after") || !fileHas(p+".1", "/before") {
			t.Errorf("%s.1 (rotated) should hold only the record before SIGUSR1", p)
		}
		if !fileHas(p, "/after") || fileHas(p, "/before") {
			t.Errorf("%s (reopened) should hold only the record after SIGUSR1", p)
		}
	}
}

// TestLogSinkDropsWhenBehind: with its writer stalled (here: not started)
// and its queue full, Observe returns at once and counts the drop.
func TestLogSinkDropsWhenBehind(t *testing.T) {
	s := newLogSink("audit", "unused", 2, auditAccepts, appendAuditRecord, zap.NewNop())
	for range 5 {
		s.Observe(proxy.DenialEvent{Kind: "policy"})
	}
	s.Observe(proxy.PinholeEvent{}) // not an audit event: neither queued nor dropped
	if got := s.dropped.Load(); got != 3 {
		t.Fatalf("dropped %d, want 3", got)
	}
	m := newMetrics()
	m.watchSinks(s)
	if got := sample(t, m.reg, "ftpgate_audit_records_dropped_total", map[string]string{"sink": "audit"}); got != 3 {
		t.Fatalf("ftpgate_audit_records_dropped_total = %v, want 3", got)
	}
}

// TestLogSinkCountsWriteErrors writes to /dev/full: every record is lost,
// counted, and the sink keeps going.
func TestLogSinkCountsWriteErrors(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := newAuditSink("/dev/full", zap.NewNop())
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.Observe(proxy.DenialEvent{Kind: "policy"})
	}
	s.Close()
	if got := s.writeErrors.Load(); got != 3 {
		t.Fatalf("write errors %d, want 3", got)
	}
}

func TestOpenObserversBadPath(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	_, err := openObservers(filepath.Join(dir, "audit.log"), filepath.Join(dir, "no", "such", "xferlog"), zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "xferlog log") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v, want one naming the xferlog and saying the directory does not exist", err)
	}
}

func TestLogSinkReopenAfterClose(t *testing.T) {
	s := newAuditSink(filepath.Join(t.TempDir(), "a"), zap.NewNop())
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Reopen(); err == nil {
		t.Fatal("Reopen after Close succeeded")
	}
	s.Observe(proxy.DenialEvent{Kind: "policy"}) // must not panic or block
	s.Close()                                    // twice is fine
}

type recorder struct{ got *[]string }

func (r recorder) Observe(ev proxy.Event) {
	*r.got = append(*r.got, ev.(proxy.DenialEvent).Kind)
}

func TestFanout(t *testing.T) {
	var a, b []string
	o := newFanout(recorder{&a}, nil, recorder{&b})
	o.Observe(proxy.DenialEvent{Kind: "policy"})
	o.Observe(proxy.DenialEvent{Kind: "limit"})
	if strings.Join(a, ",") != "policy,limit" || strings.Join(b, ",") != "policy,limit" {
		t.Fatalf("fan-out delivered %v and %v", a, b)
	}
	if _, ok := newFanout(nil).(proxy.NopObserver); !ok {
		t.Fatal("an empty fan-out is not the NopObserver")
	}
	if _, ok := newFanout(recorder{&a}).(recorder); !ok {
		t.Fatal("a fan-out of one is not that one")
	}
}

func TestAuditRecordKeepsPathReadable(t *testing.T) {
	b := appendAuditRecord([]byte("prefix\n"), proxy.FileCommandEvent{Verb: "RNTO", Path: "/a&b<c>.txt", Code: 250, Time: time.Unix(0, 0)})
	if !bytes.HasPrefix(b, []byte("prefix\n")) || !bytes.Contains(b, []byte(`"path":"/a&b<c>.txt"`)) {
		t.Fatalf("record %q: buffer not appended to, or path escaped", b)
	}
}

// TestSIGUSR1WithoutSinks: logrotate's SIGUSR1 must not end a process that
// writes no audit log (the default action of SIGUSR1 is to terminate).
func TestSIGUSR1WithoutSinks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	core, logs := observer.New(zap.InfoLevel)
	stop := reopenOnSignal(nil, zap.New(core))
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGUSR1 to be handled", func() bool {
		return logs.FilterMessageSnippet("no audit log or xferlog").Len() == 1
	})
}

func TestAuditConfigKeysAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ftpgate.yaml")
	if err := os.WriteFile(path, []byte("upstream: 198.18.1.20:21\naudit_log: /var/log/ftpgate/audit.log\nxferlog: /var/log/ftpgate/xferlog\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := newRunFlags().parse([]string{"--config", path, "--xferlog", "/tmp/xfer"})
	if err != nil {
		t.Fatal(err)
	}
	if fc.AuditLog != "/var/log/ftpgate/audit.log" || fc.Xferlog != "/tmp/xfer" {
		t.Fatalf("audit_log %q, xferlog %q: want the file's audit log and the flag's xferlog", fc.AuditLog, fc.Xferlog)
	}
}
