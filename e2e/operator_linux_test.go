//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// The operator kit (issue #13) on a live ftpgate: Prometheus metrics, readiness while draining,
// SIGHUP reloads of the config file, and the audit and xferlog records.

// TestMetricsTransferBytes: a download through ftpgate moves
// ftpgate_transfer_bytes_total{direction="download"} by the file's size on both legs, counts
// one successful transfer, and a live scrape passes `promtool check metrics`.
func TestMetricsTransferBytes(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tool := promtool(t)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	g := startGate(t, tp, gateConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	series := []string{
		`ftpgate_transfer_bytes_total{direction="download",leg="client"}`,
		`ftpgate_transfer_bytes_total{direction="download",leg="server"}`,
		`ftpgate_transfers_total{direction="download",result="ok"}`,
	}
	before := g.scrape(ctx, t)
	local := filepath.Join(t.TempDir(), bigFile)
	if err := (curlClient{ns: tp.Client}).Get(ctx, gateV4(), modeEPSV, bigFile, local); err != nil {
		t.Fatal(tp.diagnose(err))
	}
	if err := sameFile(local, bigFile); err != nil {
		t.Fatal(err)
	}
	want := []float64{bigSize, bigSize, 1}
	var after []byte
	for i, s := range series {
		// The counters move when the transfer's final reply is written, which curl may see first.
		after = g.waitMetric(ctx, t, s, metricValue(before, s)+want[i])
	}
	out, err := runPromtool(ctx, tool, after)
	if err != nil {
		t.Fatalf("promtool check metrics on a live scrape: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: ok %s", strings.TrimSpace(string(out)))
}

// TestDrainOnSIGTERM: SIGTERM during a 100 MiB download makes /readyz answer 503 at once; the
// download still completes (checksum) and ftpgate then exits with status 0.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	const name, size = "drain.bin", 100 << 20
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	srv.addSparseFile(t, name, size)
	g := startGate(t, tp, gateConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, code, err := g.get(ctx, "/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d, %v; want 200", code, err)
	}

	ctl := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	data := startSlowRETR(ctx, t, ctl, name)
	h := newSum()
	if _, err := io.CopyN(h, data, 1<<20); err != nil {
		t.Fatalf("first MiB: %v", err)
	}
	if err := g.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		body, code, err := g.get(ctx, "/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			t.Logf("/readyz while draining: %d %s", code, strings.TrimSpace(body))
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz still %d (%v) after SIGTERM", code, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	n, err := io.Copy(h, data)
	if err != nil {
		t.Fatalf("download after SIGTERM: %v after %d more bytes", err, n)
	}
	if got, want := h.String(), zeroSHA256(size); got != want || h.n != size {
		t.Fatalf("download across SIGTERM: %d bytes with sha256 %s, want %d with %s", h.n, got, size, want)
	}
	if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
		t.Fatalf("final reply after SIGTERM: %q, %v; want 226\n%s", r, err, ctl.Transcript())
	}
	ctl.Close()
	if err := g.proc.Wait(30 * time.Second); err != nil {
		t.Fatalf("ftpgate after draining: %v; want exit status 0", err)
	}
}

// TestReloadOnSIGHUP: the advertised address comes from the config file. A SIGHUP after the
// file changed it lets the running download complete (checksum) and the next session's PASV
// advertises the new address; a SIGHUP after the file broke is refused with the file and line
// in the log, ftpgate_config_reloads_total{result="error"} rises, and the configuration in force
// stays (the next PASV still advertises the last good address, and its transfer works).
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	const newAddr = "198.18.0.3" // a second address on ftpgate's client side, as a NAT would map
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := runIP(ctx, "-n", tp.Proxy, "addr", "add", newAddr+"/24", "dev", "c0"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "ftpgate.yaml")
	writeFile(t, cfg, "# reloaded by the test\nadvertise: "+proxyClientV4+"\n")
	g := startGate(t, tp, gateConfig{Extra: []string{"--config", cfg}})

	running := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	if got := pasvHost(t, running); got != proxyClientV4 {
		t.Fatalf("PASV before the reload advertises %s, want %s", got, proxyClientV4)
	}
	// The first PASV's data port is still open; EPSV for the transfer that runs across the reload.
	data := startSlowRETR(ctx, t, running, bigFile)
	reloaded := func() {
		writeFile(t, cfg, "# reloaded by the test\nadvertise: "+newAddr+"\n")
		g.sighup(ctx, t, "SIGHUP: configuration reloaded; new sessions use it, running ones finish as they began")
	}
	if err := readDownload(data, bigFile, reloaded); err != nil {
		t.Fatalf("the download running across the reload: %v", err)
	}
	if r, err := running.finalReply(30 * time.Second); err != nil || r.Code != 226 {
		t.Fatalf("the download running across the reload: final reply %q, %v; want 226\n%s", r, err, running.Transcript())
	}
	if got := pasvHost(t, running); got != proxyClientV4 {
		t.Errorf("PASV in the session that began before the reload advertises %s, want %s (running sessions keep their configuration)", got, proxyClientV4)
	}
	running.Close()
	checkNextPASV(ctx, t, tp, newAddr)

	// A broken file: an unknown key on line 3.
	refused := `ftpgate_config_reloads_total{result="error"}`
	before := metricValue(g.scrape(ctx, t), refused)
	writeFile(t, cfg, "# broken by the test\nadvertise: "+proxyClientV4+"\nadvertize: "+proxyClientV4+"\n")
	rec := g.sighup(ctx, t, "SIGHUP: configuration reload failed; the running configuration stays")
	if e := rec.str("error"); !strings.Contains(e, "config "+cfg+":3: unknown setting advertize") {
		t.Errorf("refused reload: error %q does not name the file %s and its line 3", e, cfg)
	}
	g.waitMetric(ctx, t, refused, before+1)
	checkNextPASV(ctx, t, tp, newAddr)
}

// pasvHost sends PASV and returns the address of the 227 reply.
func pasvHost(t *testing.T, c *ftpCtl) string {
	t.Helper()
	return c.mustPassive(t, "PASV").Addr().String()
}

// checkNextPASV opens a new session, checks that its PASV advertises want, and downloads
// from the address and port of the 227 reply.
func checkNextPASV(ctx context.Context, t *testing.T, tp *topology, want string) {
	t.Helper()
	c := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	defer c.Close()
	ap := c.mustPassive(t, "PASV")
	if got := ap.Addr().String(); got != want {
		t.Fatalf("PASV of a new session advertises %s, want %s\n%s", got, want, c.Transcript())
	}
	if err := retrieve(ctx, c, tp.Client, ap, oneFile, nil); err != nil {
		t.Fatalf("download through the new session's PASV port: %v", tp.diagnose(err))
	}
}

// TestAuditRecords: a RETR the server refuses (550) and one whose data connection never comes
// (425 after --data-timeout) each leave one JSON audit record and one xferlog line, parsed field
// by field.
func TestAuditRecords(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	dir := t.TempDir()
	audit, xferlog := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "xferlog")
	startGate(t, tp, gateConfig{Extra: []string{"--audit-log", audit, "--xferlog", xferlog, "--data-timeout", "2s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	c := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	const missing = "no-such-file.bin"
	c.mustPassive(t, "EPSV")
	if r, err := c.cmd("RETR " + missing); err != nil || r.Code != 550 {
		t.Fatalf("RETR of a missing file: %q, %v; want 550\n%s", r, err, c.Transcript())
	}
	c.mustPassive(t, "EPSV") // and never connect
	r, err := c.cmd("RETR " + oneFile)
	if err == nil && r.Code < 200 {
		r, err = c.finalReply(30 * time.Second)
	}
	if err != nil || r.Code != 425 {
		t.Fatalf("RETR without a data connection: %q, %v; want 425\n%s", r, err, c.Transcript())
	}

	for _, tc := range []struct {
		name   string
		code   int
		result string
	}{{missing, 550, "refused"}, {oneFile, 425, "failed"}} {
		rec := waitAuditRecord(ctx, t, audit, func(r logRecord) bool {
			return r.str("type") == "transfer" && strings.HasSuffix(r.str("path"), tc.name)
		})
		code, _ := rec.num("code")
		switch {
		case code != int64(tc.code), rec.str("result") != tc.result, rec.str("cause") == "",
			rec.str("verb") != "RETR", rec.str("direction") != "download", rec.str("user") != e2eUser,
			recordHost(rec, "client") != clientV4, rec.str("time") == "":
			t.Errorf("audit record of the %d: want verb RETR, direction download, code %d, result %s, a cause, user %s, client %s: %s",
				tc.code, tc.code, tc.result, e2eUser, clientV4, rec)
		}
		x := waitXferlog(ctx, t, xferlog, tc.name)
		if x.Host != clientV4 || x.Size != 0 || x.Type != "b" || x.Action != "_" || x.Direction != "o" || x.Access != "r" ||
			x.User != e2eUser || x.Service != "ftp" || x.AuthMethod != "0" || x.AuthUser != "*" || x.Status != "i" {
			t.Errorf("xferlog line of the %d: %+v; want host %s, size 0, b _ o r %s ftp 0 * i", tc.code, x, clientV4, e2eUser)
		}
		if d := time.Since(x.Time); d < -time.Minute || d > 5*time.Minute {
			t.Errorf("xferlog line of the %d: current-time %s is not now", tc.code, x.Time)
		}
	}
}

// xferlogLine is one xferlog(5) line, field by field.
type xferlogLine struct {
	Time       time.Time
	Seconds    int64
	Host       string
	Size       int64
	File       string
	Type       string // b or a
	Action     string // special-action-flag
	Direction  string // o, i, d
	Access     string // a, r, g
	User       string
	Service    string
	AuthMethod string
	AuthUser   string
	Status     string // c or i
	raw        string
}

// parseXferlog parses one line: a ctime(3) date (24 characters, the day padded with a space),
// then 13 fields separated by single spaces.
func parseXferlog(line string) (xferlogLine, error) {
	x := xferlogLine{raw: line}
	if len(line) < 25 || line[24] != ' ' {
		return x, fmt.Errorf("xferlog line %q: no ctime date", line)
	}
	t, err := time.ParseInLocation(time.ANSIC, line[:24], time.Local)
	if err != nil {
		return x, fmt.Errorf("xferlog line %q: date: %w", line, err)
	}
	x.Time = t
	f := strings.Split(line[25:], " ")
	if len(f) != 13 {
		return x, fmt.Errorf("xferlog line %q: %d fields after the date, want 13", line, len(f))
	}
	if x.Seconds, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return x, fmt.Errorf("xferlog line %q: transfer-time: %w", line, err)
	}
	if x.Size, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return x, fmt.Errorf("xferlog line %q: file-size: %w", line, err)
	}
	x.Host, x.File, x.Type, x.Action, x.Direction, x.Access = f[1], f[3], f[4], f[5], f[6], f[7]
	x.User, x.Service, x.AuthMethod, x.AuthUser, x.Status = f[8], f[9], f[10], f[11], f[12]
	return x, nil
}

// waitXferlog waits (up to 10 s) for the xferlog line whose filename ends in name and parses it.
func waitXferlog(ctx context.Context, t *testing.T, path, name string) xferlogLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		lines := readFileLines(t, path)
		for _, l := range lines {
			x, err := parseXferlog(l)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(x.File, name) {
				return x
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no xferlog line for %s in %s:\n%s", name, path, strings.Join(lines, "\n"))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitAuditRecord waits (up to 10 s) for exactly one JSON audit record that match accepts, and
// returns it; every line must be a JSON object.
func waitAuditRecord(ctx context.Context, t *testing.T, path string, match func(logRecord) bool) logRecord {
	t.Helper()
	recs := waitAuditRecords(ctx, t, path, 1, match)
	if len(recs) != 1 {
		t.Fatalf("%d matching audit records, want one:\n%s", len(recs), excerpt(recs, 5))
	}
	return recs[0]
}

// waitAuditRecords waits (up to 10 s) until n audit records match, and returns all that do.
func waitAuditRecords(ctx context.Context, t *testing.T, path string, n int, match func(logRecord) bool) []logRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var all, got []logRecord
		for _, l := range readFileLines(t, path) {
			var r logRecord
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("audit log %s: line %q is not JSON: %v", path, l, err)
			}
			all = append(all, r)
			if match(r) {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d matching audit records, want %d; the audit log:\n%s", len(got), n, excerpt(all, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sighup sends SIGHUP to ftpgate and waits for the next log record with msg.
func (g *gate) sighup(ctx context.Context, t *testing.T, msg string) logRecord {
	t.Helper()
	seen := len(g.logs.Records(msg))
	if err := g.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := 0
	rec, err := g.logs.Wait(ctx, msg, func(logRecord) bool { n++; return n > seen })
	if err != nil {
		t.Fatalf("after SIGHUP: %v\nlog tail:\n%s", err, g.logs.Tail(20))
	}
	return rec
}

// scrape returns ftpgate's /metrics.
func (g *gate) scrape(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	body, code, err := g.get(ctx, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", code, err)
	}
	return []byte(body)
}

// waitMetric scrapes until series has at least want (up to 10 s), and returns the scrape; a
// value above want is an error (a counter that moved by more than the test did).
func (g *gate) waitMetric(ctx context.Context, t *testing.T, series string, want float64) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		body := g.scrape(ctx, t)
		got := metricValue(body, series)
		if got > want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
		if got >= want {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s = %v, want %v", series, got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// metricValue returns the value of one series (name with its labels in the order the
// exposition writes them, sorted by name) in a text-format scrape, or 0 if it is absent.
func metricValue(scrape []byte, series string) float64 {
	for _, line := range strings.Split(string(scrape), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return 0
}

// promtool finds promtool on PATH or where scripts/install-test-deps.sh unpacks it.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	const unpacked = "/opt/ftpgate-e2e/prometheus/usr/bin/promtool"
	if _, err := os.Stat(unpacked); err != nil {
		msg := "promtool not found on PATH or at " + unpacked + "; " + installHint
		if testenv.Strict() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return unpacked
}

func runPromtool(ctx context.Context, tool string, scrape []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	return cmd.CombinedOutput()
}

// sum is a sha256 writer that counts what it hashed.
type sum struct {
	h hash.Hash
	n int64
}

func newSum() *sum { return &sum{h: sha256.New()} }

func (s *sum) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return s.h.Write(p)
}

func (s *sum) String() string { return hex.EncodeToString(s.h.Sum(nil)) }
