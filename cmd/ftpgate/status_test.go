package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
)

// statusTime is the fixed moment of the tests' snapshots.
var statusTime = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// fixedSnapshot has a download of known size, an upload of unknown size by
// a client whose user name carries a terminal escape and a tab, and a
// pinhole waiting for its peer.
func fixedSnapshot() proxy.Snapshot {
	return proxy.Snapshot{
		Time: statusTime,
		Stats: proxy.Stats{Sessions: 2, Listeners: 4, Pinholes: 1, Accepted: 7, Transfers: 3,
			DataPortsInUse: 3, DataPortsTotal: 100},
		Sessions: []proxy.SessionInfo{{
			ID: 1, Mode: proxy.ModeReverse, User: "alice", LoggedIn: true,
			Client: netip.MustParseAddrPort("198.18.0.2:40001"), Server: netip.MustParseAddrPort("198.18.1.2:21"),
			Start: statusTime.Add(-125 * time.Second), Idle: 3 * time.Second,
			Transfer: &proxy.TransferInfo{Verb: "RETR", Path: "/pub/big.iso", Direction: "download",
				Start: statusTime.Add(-10 * time.Second), Elapsed: 10 * time.Second, Bytes: 50 << 20, Size: 200 << 20},
		}, {
			ID: 2, Mode: proxy.ModeRedirect, User: "\x1b[31mevil\tname",
			Client: netip.MustParseAddrPort("[fd00:0:0:1::2]:50000"),
			Start:  statusTime.Add(-2 * time.Hour), Idle: 70 * time.Second,
			Transfer: &proxy.TransferInfo{Verb: "STOR", Path: "up.bin", Direction: "upload",
				Start: statusTime, Bytes: 1500, Size: -1},
		}},
		Pinholes: []proxy.PinholeInfo{{Peer: netip.MustParseAddr("198.18.0.2"),
			Local: netip.MustParseAddrPort("198.18.0.1:40007"), Remaining: 9400 * time.Millisecond, Refs: 1}},
	}
}

func TestStatusTable(t *testing.T) {
	v := newStatusView(fixedSnapshot())
	got := renderStatus(v, nil, "127.0.0.1:9121")
	want := `ftpgate at 127.0.0.1:9121, 2026-12-01 09:30:00 UTC

Sessions: 2
ID  CLIENT                 SERVER         USER                        MODE      AGE    IDLE
1   198.18.0.2:40001       198.18.1.2:21  alice                       reverse   2m05s  3s
2   [fd00:0:0:1::2]:50000  -              \x1b[31mevil\tname (login)  redirect  2h00m  1m10s

Transfers in flight: 2
ID  VERB  FILE          DIRECTION  BYTES     SIZE       DONE   RATE       ELAPSED
1   RETR  /pub/big.iso  download   50.0 MiB  200.0 MiB  25.0%  5.0 MiB/s  10s
2   STOR  up.bin        upload     1.5 KiB   ?          -      0 B/s      0s

Pinholes: 1
PEER        LOCAL             INTERCEPT  TTL   REFS
198.18.0.2  198.18.0.1:40007  -          9.4s  1

Totals: sessions 2 open, 7 accepted; transfers 3 completed, 2 in flight (50.0 MiB, 5.0 MiB/s); pinholes 1; listeners 4; data ports 3/100 in use
`
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "\x1b") || strings.Contains(got, "\t") {
		t.Errorf("the peer's escape or tab reached the output: %q", got)
	}
}

// TestStatusRateFromSamples: while watching, a transfer's rate is the bytes
// between two samples over the time between them, not the average.
func TestStatusRateFromSamples(t *testing.T) {
	prev := newStatusView(fixedSnapshot())
	next := newStatusView(fixedSnapshot())
	next.Time = prev.Time.Add(2 * time.Second)
	tr := *next.Sessions[0].Transfer
	tr.Bytes += 2 << 20
	tr.Elapsed += 2 * time.Second
	next.Sessions[0].Transfer = &tr
	for _, c := range []struct {
		name string
		prev *statusView
		want float64
	}{
		{"no sample before: the average", nil, float64(52<<20) / 12},
		{"the sample before", &prev, 1 << 20},
	} {
		if got := transferRate(next, c.prev, next.Sessions[0]); got != c.want {
			t.Errorf("%s: rate %.0f, want %.0f", c.name, got, c.want)
		}
	}
	// Another transfer in the same session is not compared with the old one.
	other := *next.Sessions[0].Transfer
	other.Start = next.Time.Add(-time.Second)
	other.Elapsed, other.Bytes = time.Second, 3<<20
	next.Sessions[0].Transfer = &other
	if got := transferRate(next, &prev, next.Sessions[0]); got != 3<<20 {
		t.Errorf("new transfer: rate %.0f, want its own average %d", got, 3<<20)
	}
}

func TestStatusClean(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain.txt", "plain.txt"},
		{"my file.txt", "my file.txt"},
		{"a\x1b]0;owned\x07b", `a\x1b]0;owned\ab`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"ok\uFFFDreplacement", "ok\uFFFDreplacement"},
		{"line\r\nbreak", `line\r\nbreak`},
		{strings.Repeat("x", 30) + strings.Repeat("y", 30), strings.Repeat("x", 19) + "…" + strings.Repeat("y", 20)},
	} {
		if got := clean(c.in, maxField); got != c.want {
			t.Errorf("clean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestStatusUnits(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{humanBytes(0), "0 B"}, {humanBytes(1023), "1023 B"}, {humanBytes(1536), "1.5 KiB"},
		{humanBytes(1 << 30), "1.0 GiB"}, {humanBytes(1 << 62), "4096.0 PiB"},
		{shortDuration(-time.Second), "0s"}, {shortDuration(59 * time.Second), "59s"},
		{shortDuration(61 * time.Second), "1m01s"}, {shortDuration(3*time.Hour + 5*time.Minute), "3h05m"},
		{shortDuration(50 * time.Hour), "2d02h"},
		{percentField(5, 0), "-"}, {percentField(5, -1), "-"}, {percentField(200, 100), "100.0%"},
		{ttlField(90 * time.Second), "1m30s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// statusEndpoint serves the admin handler with a fixed snapshot.
func statusEndpoint(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(newAdminHandler(adminConfig{Ready: &readiness{}, Snapshot: fixedSnapshot}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestStatusCommand runs `ftpgate status` against the admin handler: the
// table, and --json with the counters under their JSON names.
func TestStatusCommand(t *testing.T) {
	addr := statusEndpoint(t)
	var out, errb bytes.Buffer
	if rc := cmdStatus([]string{"--admin", addr}, &out, &errb); rc != 0 {
		t.Fatalf("exit %d, stderr %q", rc, errb.String())
	}
	if want := renderStatus(newStatusView(fixedSnapshot()), nil, addr); out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if rc := cmdStatus([]string{"--admin", "http://" + addr + "/", "--json"}, &out, &errb); rc != 0 {
		t.Fatalf("--json: exit %d, stderr %q", rc, errb.String())
	}
	// The counters under their JSON names, the durations in nanoseconds.
	var raw struct {
		Totals   map[string]int64 `json:"totals"`
		Pinholes []map[string]any `json:"pinholes"`
	}
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("--json printed %q: %v", out.String(), err)
	}
	wantTotals := map[string]int64{"sessions": 2, "accepted": 7, "transfers": 3, "pinholes": 1, "listeners": 4,
		"data_ports_in_use": 3, "data_ports_total": 100}
	if !maps.Equal(raw.Totals, wantTotals) {
		t.Errorf("totals %v, want %v", raw.Totals, wantTotals)
	}
	if len(raw.Pinholes) != 1 || raw.Pinholes[0]["remaining_ns"] != float64(9400*time.Millisecond) {
		t.Errorf("pinholes %v: want remaining_ns 9400000000", raw.Pinholes)
	}
	// Everything else reads back as served.
	var back statusView
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if want := newStatusView(fixedSnapshot()); !reflect.DeepEqual(back, want) {
		t.Errorf("--json read back:\n%+v\nwant:\n%+v", back, want)
	}
}

func TestStatusErrors(t *testing.T) {
	// An address nothing listens on: a listener closed again.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// An admin endpoint without /status.
	old := httptest.NewServer(newAdminHandler(adminConfig{Ready: &readiness{}}))
	defer old.Close()
	oldAddr := strings.TrimPrefix(old.URL, "http://")

	for _, c := range []struct {
		name string
		args []string
		rc   int
		msg  string
	}{
		{"unreachable", []string{"--admin", closed}, 1, "is ftpgate running with --admin-listen " + closed + "?"},
		{"unreachable while watching", []string{"--admin", closed, "--watch"}, 1, "is ftpgate running with --admin-listen"},
		{"no /status", []string{"--admin", oldAddr}, 1, "has no /status"},
		{"bad address", []string{"--admin", "localhost"}, 2, "want HOST:PORT"},
		{"interval without watch", []string{"--interval", "2s"}, 2, "--interval needs --watch"},
		{"zero interval", []string{"--watch", "--interval", "0s"}, 2, "want a positive duration"},
		{"stray argument", []string{"sessions"}, 2, `unexpected argument "sessions"`},
		{"unknown flag", []string{"--verbose"}, 2, "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		rc := cmdStatus(c.args, &out, &errb)
		if rc != c.rc || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, rc, errb.String(), c.rc, c.msg)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStatusWatch: --watch redraws in place (clear and home before every
// frame) until SIGINT, and then exits 0.
func TestStatusWatch(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags []string
		frame string // what starts every frame
	}{
		{"table", nil, clearHome + "ftpgate at "},
		{"json", []string{"--json"}, `{"time":`},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := statusEndpoint(t)
			var out lockedBuffer
			var errb bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- cmdStatus(append([]string{"--admin", addr, "--watch", "--interval", "20ms"}, c.flags...), &out, &errb)
			}()
			deadline := time.After(30 * time.Second)
			for strings.Count(out.String(), c.frame) < 2 {
				select {
				case rc := <-done:
					t.Fatalf("exited %d before two frames; stderr %q, output %q", rc, errb.String(), out.String())
				case <-deadline:
					t.Fatalf("not two frames within 30s: %q", out.String())
				case <-time.After(10 * time.Millisecond):
				}
			}
			// Two frames drawn: the signal handler is in place, so SIGINT
			// reaches it and not the default action.
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case rc := <-done:
				if rc != 0 {
					t.Fatalf("exit %d after SIGINT, stderr %q", rc, errb.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("still watching 30s after SIGINT")
			}
			if c.name == "table" && !strings.Contains(out.String(), "Ctrl-C to quit") {
				t.Errorf("no hint how to quit in %q", out.String())
			}
			if c.name == "json" && strings.Contains(out.String(), "\x1b") {
				t.Errorf("--watch --json wrote terminal escapes: %q", out.String())
			}
		})
	}
}
