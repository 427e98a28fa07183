//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/ftpgate/ftpgate/internal/testenv"
)

const rcloneBin = "/usr/bin/rclone" // Debian's, from scripts/install-test-deps.sh

// TestFTPSSharedSessionCache: rclone keeps one TLS session cache for all its FTP connections
// and runs several control connections at once (--transfers 4 --checkers 4), so its data
// connections resume tickets that ftpgate issued to another of its live control connections.
// With the default --tls-session-reuse required, an explicit-FTPS upload and download of 200
// files through ftpgate to a TLS-only vsftpd succeed (checksums), ftpgate refuses no data
// connection (no 522), the sessions overlapped, and data connections resumed.
//
// That a ticket from another client address is still refused is proven by the unit test
// proxy.TestFTPSSharedTicketCache.
//
// Go's client cache keeps only the latest ticket per server name, and a control connection
// gets its ticket at its handshake, before its USER. So when rclone opens a control connection
// while another one transfers, that transfer's data connection may offer the ticket of a
// session that has not sent USER yet, which ftpgate refuses today (522); a failure says which
// sessions had not logged in at the refusal.
func TestFTPSSharedSessionCache(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	if _, err := os.Stat(rcloneBin); err != nil {
		msg := fmt.Sprintf("rclone: %v; %s", err, installHint)
		if testenv.Strict() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	srv := startServerTLS(t, tp, vsftpd, pki.Server)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	g := startGate(t, tp, gateConfig{Extra: pki.gateFlags("--audit-log", audit)})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const refusal = "data connection refused: its TLS session does not resume the control connection's"
	resumed := `ftpgate_tls_resumed_handshakes_total{leg="client-data"}`
	before := metricValue(g.scrape(ctx, t), resumed)

	obscured, err := osexec.CommandContext(ctx, rcloneBin, "obscure", e2ePassword).Output()
	if err != nil {
		t.Fatalf("rclone obscure: %v", err)
	}
	rc := rclone{ns: tp.Client, config: filepath.Join(t.TempDir(), "rclone.conf"), env: []string{
		"RCLONE_FTP_HOST=" + proxyClientV4,
		"RCLONE_FTP_USER=" + e2eUser,
		"RCLONE_FTP_PASS=" + strings.TrimSpace(string(obscured)),
		"RCLONE_FTP_EXPLICIT_TLS=true",
		"RCLONE_FTP_NO_CHECK_CERTIFICATE=true", // rclone's FTP backend takes no CA file
	}}
	writeFile(t, rc.config, "")

	up := "rclone-up"
	if err := rc.run(ctx, "copy", filepath.Join(suite.fixtures, mirrorDir), ":ftp:"+up); err != nil {
		t.Error(err)
	}
	got, err := treeSums(filepath.Join(srv.Root, up))
	if err == nil {
		err = diffTrees(got, fixtureTree(mirrorDir))
	}
	if err != nil {
		t.Errorf("rclone upload, on the server: %v", err)
	}
	local := filepath.Join(t.TempDir(), "down")
	if err := rc.run(ctx, "copy", ":ftp:"+mirrorDir, local); err != nil {
		t.Error(err)
	}
	got, err = treeSums(local)
	if err == nil {
		err = diffTrees(got, fixtureTree(mirrorDir))
	}
	if err != nil {
		t.Errorf("rclone download: %v", err)
	}

	if recs := g.logs.Records(refusal); len(recs) > 0 {
		t.Errorf("ftpgate refused %d of rclone's data connections:\n%s%s", len(recs), excerpt(recs, 3), notLoggedIn(g, recs))
	}
	if n := sessionsAtOnce(waitAuditRecords(ctx, t, audit, 2, func(r logRecord) bool { return r.str("type") == "session_end" })); n < 2 {
		t.Errorf("at most %d of rclone's control connections were open at once; the test needs several in parallel", n)
	}
	if after := metricValue(g.scrape(ctx, t), resumed); after <= before {
		t.Errorf("%s did not rise (%v): rclone's data connections did not resume TLS sessions", resumed, after)
	}
}

// reply522 finds an FTP 522 reply (the code, then its text, capitalized as ftpgate and
// servers write it) in rclone's output, not the digits inside a number or a path (the
// suite's temporary directory has random digits: /tmp/ftpgate-e2e-1522555028 failed a run).
var reply522 = regexp.MustCompile(`(^|[^0-9.])522[ -][A-Z]`)

// rclone runs rclone in a namespace with an on-the-fly FTP remote from environment variables.
type rclone struct {
	ns, config string
	env        []string
}

func (r rclone) run(ctx context.Context, args ...string) error {
	all := append([]string{"--config", r.config, "--transfers", "4", "--checkers", "4", "--retries", "1",
		"--low-level-retries", "1", "--contimeout", "10s", "--timeout", "30s", "-vv"}, args...)
	out, err := runEnv(ctx, r.ns, r.env, rcloneBin, all...)
	if err == nil && reply522.Match(out) {
		err = fmt.Errorf("a 522 reply in its output")
	}
	if err != nil {
		return fmt.Errorf("rclone %s: %w\n%s", strings.Join(args, " "), err, tail(out, 40))
	}
	return nil
}

// runEnv runs a program in namespace ns with more environment variables, and returns its
// combined output.
func runEnv(ctx context.Context, ns string, env []string, name string, args ...string) ([]byte, error) {
	cmd := nsrun.Command(ctx, ns, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// sessionsAtOnce is the most sessions open at once, from session_end audit records (end time and
// duration).
func sessionsAtOnce(ends []logRecord) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, r := range ends {
		end, err := time.Parse(time.RFC3339Nano, r.str("time"))
		d, ok := r["duration_seconds"].(float64)
		if err != nil || !ok {
			continue
		}
		edges = append(edges, edge{end.Add(-time.Duration(d * float64(time.Second))), 1}, edge{end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta // an end before a start at the same instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// notLoggedIn describes, for each refusal, the control sessions that had started but not yet
// logged in when it happened: a client that caches only the latest TLS ticket may offer one
// such a session was just issued.
func notLoggedIn(g *gate, refusals []logRecord) string {
	var b strings.Builder
	for _, r := range refusals {
		at := r.str("ts")
		started := map[string]bool{}
		for _, rec := range g.logs.Records("") {
			if rec.str("ts") > at {
				break
			}
			switch rec.str("msg") {
			case "session start":
				started[rec.str("session")] = true
			case "login", "session end":
				delete(started, rec.str("session"))
			}
		}
		var ids []string
		for id := range started {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fmt.Fprintf(&b, "at the refusal in session %s (%s), sessions started but not logged in: %v\n", r.str("session"), at, ids)
	}
	return b.String()
}
