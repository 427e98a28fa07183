//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// gateConfig is one ftpgate command line.
type gateConfig struct {
	// Mode is --mode: empty for a reverse proxy; redirect or tproxy for the transparent
	// gateway, where Listen and Upstream have no defaults (ftpgate's own: port 8021).
	Mode         string
	Listen       []string // --listen, default 198.18.0.1:21 and [fd00:0:0:1::1]:21
	Upstream     string   // --upstream, default 198.18.1.2:21
	Advertise    string
	PassivePorts string   // default 40000-40099
	ServerMode   string   // passive, active or client; default passive
	Firewall     string   // own-table, external-set or none; default own-table
	AdminListen  string   // default 127.0.0.1:9121
	Extra        []string // further flags, appended as given

	Binary string // the ftpgate to run; default the one TestMain built
	// Unprivileged runs ftpgate as nobody:nogroup with only the ambient
	// capabilities CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (setpriv), as the
	// systemd unit does.
	Unprivileged bool
}

func (c gateConfig) args() []string {
	transparent := c.Mode == "redirect" || c.Mode == "tproxy"
	if len(c.Listen) == 0 && !transparent {
		c.Listen = []string{hostPort(proxyClientV4, 21), hostPort(proxyClientV6, 21)}
	}
	if c.Upstream == "" && !transparent {
		c.Upstream = hostPort(serverV4, 21)
	}
	if c.PassivePorts == "" {
		c.PassivePorts = "40000-40099"
	}
	if c.ServerMode == "" {
		c.ServerMode = "passive"
	}
	if c.Firewall == "" {
		c.Firewall = "own-table"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:9121"
	}
	level := os.Getenv("FTPGATE_E2E_LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	args := []string{"run"}
	if c.Mode != "" {
		args = append(args, "--mode", c.Mode)
	}
	for _, l := range c.Listen {
		args = append(args, "--listen", l)
	}
	if c.Upstream != "" {
		args = append(args, "--upstream", c.Upstream)
	}
	args = append(args,
		"--passive-ports", c.PassivePorts,
		"--server-mode", c.ServerMode,
		"--firewall", c.Firewall,
		"--admin-listen", c.AdminListen,
		"--log-format", "json",
		"--log-level", level,
	)
	if c.Advertise != "" {
		args = append(args, "--advertise", c.Advertise)
	}
	return append(args, c.Extra...)
}

// gate is a running ftpgate in the proxy namespace.
type gate struct {
	cfg   gateConfig
	tp    *topology
	proc  *process
	logs  *logSink
	admin string
	http  *http.Client

	killed atomic.Bool // Kill was called: the cleanup expects no clean exit
}

// startGate starts ftpgate in tp's proxy namespace, waits for GET /healthz, and registers a
// cleanup that stops it with SIGTERM and checks that it exited cleanly, without a data race or
// a panic in its log.
func startGate(t testing.TB, tp *topology, cfg gateConfig) *gate {
	t.Helper()
	requirePrereqs(t, needFtpgate)
	args := cfg.args()
	g := &gate{cfg: cfg, tp: tp, logs: newLogSink(filepath.Join(t.TempDir(), "ftpgate.log"))}
	g.admin = args[indexOf(args, "--admin-listen")+1]
	g.http = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, tp.Proxy, network, addr)
			},
			DisableKeepAlives: true, // every request leaves no connection behind in ftpgate
		},
	}

	bin := cfg.Binary
	if bin == "" {
		bin = suite.ftpgate
	}
	var cmd *exec.Cmd
	if cfg.Unprivileged {
		bin = copyExecutable(t, bin)
		caps := "+net_admin,+net_bind_service"
		cmd = nsrun.Command(context.Background(), tp.Proxy, "setpriv", append([]string{"--reuid=nobody", "--regid=nogroup",
			"--clear-groups", "--inh-caps=" + caps, "--ambient-caps=" + caps, "--", bin}, args...)...)
	} else {
		cmd = nsrun.Command(context.Background(), tp.Proxy, bin, args...)
	}
	cmd.Stdout = g.logs
	cmd.Stderr = g.logs
	g.proc = startProcess(t, "ftpgate", cmd)
	t.Cleanup(func() {
		if err := g.proc.Stop(15 * time.Second); err != nil && !g.killed.Load() {
			t.Errorf("ftpgate stop: %v\nlog tail:\n%s", err, g.logs.Tail(40))
		}
		g.logs.Close()
		if bad := g.logs.Find("WARNING: DATA RACE", "panic:", "fatal error:"); bad != "" {
			t.Errorf("ftpgate log shows a crash or race:\n%s", bad)
		}
		if g.logs.Contains(e2ePassword) {
			t.Errorf("ftpgate log contains the PASS argument %q", e2ePassword)
		}
		if t.Failed() {
			t.Logf("ftpgate %s\nlog tail:\n%s", strings.Join(args, " "), g.logs.Tail(60))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if g.proc.Exited() {
			t.Fatalf("ftpgate exited at start: %v\nargs: %s\nlog:\n%s", g.proc.err, strings.Join(args, " "), g.logs.Tail(40))
		}
		body, code, err := g.get(ctx, "/healthz")
		if err == nil && code == http.StatusOK && strings.TrimSpace(body) == "ok" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ftpgate /healthz not ok within 30s: code %d body %q err %v\nlog:\n%s", code, body, err, g.logs.Tail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return g
}

// Kill sends SIGKILL to ftpgate, as a crash would, and waits until it is gone.
func (g *gate) Kill(timeout time.Duration) error {
	g.killed.Store(true)
	if err := g.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill ftpgate (pid %d): %w", g.proc.Pid(), err)
	}
	select {
	case <-g.proc.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("ftpgate (pid %d) still running %s after SIGKILL", g.proc.Pid(), timeout)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// get fetches a path from the admin endpoint.
func (g *gate) get(ctx context.Context, path string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.admin+path, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), resp.StatusCode, err
}

// gateVars is ftpgate's expvar object plus what the test counts itself.
type gateVars struct {
	Goroutines int `json:"goroutines"`
	FDs        int `json:"fds"`
	Listeners  int `json:"listeners"`
	Sessions   int `json:"sessions"`
	Pinholes   int `json:"pinholes"`

	NumGC       uint32 // memstats.NumGC: garbage collections so far
	ProcFDs     int    // entries in /proc/PID/fd
	ProcPipes   int    // of which pipes (Go keeps splice pipes in a pool until a GC)
	ProcSockets int    // of which sockets
	SSListeners int    // listening TCP sockets in the proxy namespace (ss -ltn)
	raw         string // the "ftpgate" object as served
}

func (v gateVars) String() string {
	return fmt.Sprintf("goroutines=%d fds=%d listeners=%d sessions=%d pinholes=%d /proc-fds=%d (sockets %d, pipes %d) ss-listeners=%d gc=%d",
		v.Goroutines, v.FDs, v.Listeners, v.Sessions, v.Pinholes, v.ProcFDs, v.ProcSockets, v.ProcPipes, v.SSListeners, v.NumGC)
}

// Vars reads ftpgate's counters from /debug/vars (see counters) and counts its fds and
// listening sockets itself.
func (g *gate) Vars(ctx context.Context) (gateVars, error) {
	v, err := g.counters(ctx)
	if err != nil {
		return v, err
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", g.proc.Pid())
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return v, fmt.Errorf("count fds: %w", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		v.ProcFDs++
		switch {
		case strings.HasPrefix(target, "pipe:"):
			v.ProcPipes++
		case strings.HasPrefix(target, "socket:"):
			v.ProcSockets++
		}
	}
	out, err := nsrun.Command(ctx, g.tp.Proxy, "ss", "-Hltn").Output()
	if err != nil {
		return v, fmt.Errorf("ss -ltn: %w", err)
	}
	v.SSListeners = len(strings.Split(strings.TrimSpace(string(out)), "\n"))
	if strings.TrimSpace(string(out)) == "" {
		v.SSListeners = 0
	}
	return v, nil
}

// counters reads ftpgate's own counters (the "ftpgate" object) and its garbage collection count
// from /debug/vars, and nothing else: cheap enough to sample under load (Vars also counts fds
// and listening sockets).
func (g *gate) counters(ctx context.Context) (gateVars, error) {
	var v gateVars
	body, code, err := g.get(ctx, "/debug/vars")
	if err != nil {
		return v, fmt.Errorf("GET /debug/vars: %w", err)
	}
	if code != http.StatusOK {
		return v, fmt.Errorf("GET /debug/vars: status %d", code)
	}
	var all struct {
		Ftpgate  json.RawMessage        `json:"ftpgate"`
		Memstats struct{ NumGC uint32 } `json:"memstats"`
	}
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		return v, fmt.Errorf("GET /debug/vars: %w", err)
	}
	if len(all.Ftpgate) == 0 {
		return v, fmt.Errorf(`GET /debug/vars: no "ftpgate" object in %.200s`, body)
	}
	if err := json.Unmarshal(all.Ftpgate, &v); err != nil {
		return v, fmt.Errorf(`GET /debug/vars: "ftpgate": %w`, err)
	}
	v.raw = string(all.Ftpgate)
	v.NumGC = all.Memstats.NumGC
	return v, nil
}

// collectGarbage makes ftpgate collect garbage n more times, by asking for /debug/vars (every
// answer allocates) until it has; bounded by ctx. Go pools the pipes io.Copy splices through
// until a collection, so pipes left after that are leaked, not pooled.
func collectGarbage(ctx context.Context, g *gate, n uint32) error {
	first, err := g.counters(ctx)
	if err != nil {
		return err
	}
	for {
		v, err := g.counters(ctx)
		if err != nil {
			return err
		}
		if v.NumGC-first.NumGC >= n {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ftpgate collected garbage %d times, not %d, before %w", v.NumGC-first.NumGC, n, ctx.Err())
		}
	}
}

// settled reports whether v is back to base: no more goroutines, listeners, sockets or other
// fds, and no session or pinhole. pipesOnly reports whether pipes are all that is left over.
func settled(v, base gateVars) (ok, pipesOnly bool) {
	extraPipes := max(0, v.ProcPipes-base.ProcPipes)
	rest := v.Goroutines <= base.Goroutines && v.Listeners <= base.Listeners && v.SSListeners <= base.SSListeners &&
		v.ProcSockets <= base.ProcSockets && v.FDs <= base.FDs+extraPipes && v.ProcFDs <= base.ProcFDs+extraPipes &&
		v.Sessions == 0 && v.Pinholes == 0
	return rest && extraPipes == 0, rest && extraPipes > 0
}

// waitSettled polls /debug/vars until settled(v, base) or ctx ends.
//
// Go's io.Copy keeps the pipes it splices through in a sync.Pool that only garbage collections
// empty, and an idle ftpgate may not collect for minutes. So while pipes are all that is left,
// it drives ftpgate to collect twice (collectGarbage) before it looks again. Pipes still there two
// collections after the load are leaked, not pooled.
func (g *gate) waitSettled(ctx context.Context, base gateVars) (gateVars, error) {
	var last gateVars
	var lastErr error
	var firstGC uint32
	for polls := 0; ; polls++ {
		v, err := g.Vars(ctx)
		interval := 100 * time.Millisecond
		if err == nil {
			if last == (gateVars{}) {
				firstGC = v.NumGC
			}
			last = v
			ok, pipesOnly := settled(v, base)
			if ok {
				return v, nil
			}
			if pipesOnly {
				interval = 0
				// Only /debug/vars until then: the full look also scans /proc and runs
				// ss, and under load made so few polls that one collection came within
				// the settle time.
				if err := collectGarbage(ctx, g, 2); err != nil {
					lastErr = err
				}
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if last == (gateVars{}) {
				return last, lastErr
			}
			return last, fmt.Errorf("not back to the baseline within the settle time, %d garbage collections after the load (last poll error: %v)",
				last.NumGC-firstGC, lastErr)
		case <-time.After(interval):
		}
	}
}

// idleBaseline waits until ftpgate is idle (no session or pinhole, the same goroutine and fd
// counts twice in a row, two garbage collections so that no pooled splice pipe is counted, as
// warmUp does) and returns its resource counts.
func idleBaseline(ctx context.Context, t *testing.T, g *gate) gateVars {
	t.Helper()
	var prev gateVars
	var gc0 uint32
	for i := 0; ; i++ {
		v, err := g.Vars(ctx)
		if err != nil {
			t.Fatalf("ftpgate /debug/vars: %v", err)
		}
		if i == 0 {
			gc0 = v.NumGC
		} else if v.Sessions == 0 && v.Pinholes == 0 && v.Goroutines == prev.Goroutines && v.ProcFDs == prev.ProcFDs &&
			v.NumGC-gc0 >= 2 {
			return v
		}
		prev = v
		select {
		case <-ctx.Done():
			t.Fatalf("ftpgate did not become idle: %s", v)
		case <-time.After(2 * time.Millisecond): // every answer allocates: this drives collections
		}
	}
}

// logRecord is one JSON log line.
type logRecord map[string]any

func (r logRecord) str(k string) string {
	switch v := r[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (r logRecord) num(k string) (int64, bool) {
	switch v := r[k].(type) {
	case float64:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func (r logRecord) String() string {
	b, _ := json.Marshal(map[string]any(r))
	return string(b)
}

// recordHost returns the address part of a record's "address:port" field, or "".
func recordHost(r logRecord, field string) string {
	ap, err := netip.ParseAddrPort(r.str(field))
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

// logSink collects ftpgate's output: every line into a file and a buffer, JSON lines parsed.
type logSink struct {
	mu      sync.Mutex
	f       *os.File
	partial []byte
	lines   []string
	recs    []logRecord
	changed chan struct{} // closed and replaced on every new line
}

func newLogSink(path string) *logSink {
	f, _ := os.Create(path)
	return &logSink{f: f, changed: make(chan struct{})}
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		_, _ = s.f.Write(p)
	}
	s.partial = append(s.partial, p...)
	grew := false
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		s.lines = append(s.lines, line)
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil {
			s.recs = append(s.recs, r)
		}
		grew = true
	}
	if grew {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return len(p), nil
}

func (s *logSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// Records returns the parsed records with the given msg ("" for all).
func (s *logSink) Records(msg string) []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRecord
	for _, r := range s.recs {
		if msg == "" || r.str("msg") == msg {
			out = append(out, r)
		}
	}
	return out
}

// Wait returns the first record with msg for which match (nil: any) holds, waiting until ctx ends.
func (s *logSink) Wait(ctx context.Context, msg string, match func(logRecord) bool) (logRecord, error) {
	for {
		s.mu.Lock()
		for _, r := range s.recs {
			if r.str("msg") == msg && (match == nil || match(r)) {
				s.mu.Unlock()
				return r, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("no %q log record: %w", msg, ctx.Err())
		}
	}
}

// Contains reports whether any output line contains sub.
func (s *logSink) Contains(sub string) bool { return s.Find(sub) != "" }

// Find returns the lines containing any of subs, with a little context.
func (s *logSink) Find(subs ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append(append([]string(nil), s.lines...), string(s.partial))
	for i, l := range all {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				end := min(len(all), i+30)
				return strings.Join(all[i:end], "\n")
			}
		}
	}
	return ""
}

// Tail returns the last n lines.
func (s *logSink) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	for _, l := range s.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.Write(s.partial)
	return tail(b.Bytes(), n)
}

// Excerpt formats records for a failure message.
func excerpt(recs []logRecord, n int) string {
	var b strings.Builder
	if len(recs) > n {
		fmt.Fprintf(&b, "[%d earlier records omitted]\n", len(recs)-n)
		recs = recs[len(recs)-n:]
	}
	for _, r := range recs {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// copyExecutable copies bin into a directory any user may read, for a run
// as another user (the suite's build lives in root's private temp dir).
func copyExecutable(t testing.TB, bin string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
