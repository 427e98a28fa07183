//go:build linux

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Session limits and the data idle timeout (issue #11), with the real kernel and vsftpd: what an
// operator exposing ftpgate to the Internet checks.

// TestSessionLimitPerClient: in reverse mode vsftpd sees every session as ftpgate's own address,
// so its max_per_ip=5 is a cap for all users together. One client host opens 50 idle control
// connections; ftpgate (--max-sessions-per-client 4, below the server's cap) lets 4 through and
// answers the other 46 with 421 itself, before any upstream connection: vsftpd never holds more
// than 4 of them. A second client host then still logs in and downloads (checksum).
func TestSessionLimitPerClient(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	const serverCap, perClient, idle = 5, 4, 50
	tp := newTopology(t)
	srv := startVsftpd(t, tp.Server, vsftpdOptions{ReadyFrom: tp.Client, MaxPerIP: serverCap})
	g := startGate(t, tp, gateConfig{Extra: []string{"--max-sessions-per-client", fmt.Sprint(perClient)}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	baseConnects := vsftpdConnectsFrom(t, srv, proxyServerV4) // the harness's readiness probes came directly

	var greeted, refused int
	for i := range idle {
		c, greeting, err := dialCtl(ctx, tp.Client, hostPort(proxyClientV4, 21))
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		defer c.Close()
		switch greeting.Code {
		case 220:
			greeted++
			if !strings.Contains(greeting.Text, "vsFTPd") {
				t.Errorf("idle connection %d: greeting %q does not come from vsftpd", i, greeting)
			}
		case 421:
			refused++
		default:
			t.Errorf("idle connection %d: greeting %q, want 220 or 421", i, greeting)
		}
	}
	if greeted != perClient || refused != idle-perClient {
		t.Errorf("of %d idle connections from one host, %d were greeted by the server and %d refused; want %d and %d",
			idle, greeted, refused, perClient, idle-perClient)
	}
	if n := established(ctx, t, tp.Server, 21); n > perClient {
		t.Errorf("vsftpd holds %d control connections from ftpgate, want at most %d (its own cap is %d)", n, perClient, serverCap)
	}
	if n := len(vsftpdConnectsFrom(t, srv, proxyServerV4)) - len(baseConnects); n != perClient {
		t.Errorf("vsftpd logged %d connections from ftpgate, want %d: a refused session must not reach the server", n, perClient)
	}
	if err := waitRecords(ctx, g, "session refused", idle-perClient); err != nil {
		t.Error(err)
	}
	refusals := g.logs.Records("session refused")
	if len(refusals) != idle-perClient {
		t.Errorf("ftpgate logged %d \"session refused\" records, want %d\n%s", len(refusals), idle-perClient, excerpt(refusals, 5))
	}
	for _, r := range refusals {
		if r.str("level") != "warn" || recordHost(r, "client") != clientV4 {
			t.Errorf("refusal record: want level warn and client %s: %s", clientV4, r)
			break
		}
	}

	// The second host: its own sessions, and the server still has a slot for ftpgate.
	other := endpoint{"ftpgate", proxyClientV4, 21, proxyClientV4}
	local := filepath.Join(t.TempDir(), oneFile)
	if err := (curlClient{ns: tp.Host}).Get(ctx, other, modeEPSV, oneFile, local); err != nil {
		t.Fatalf("second client host, while the first holds %d connections: %v", idle, tp.diagnose(err))
	}
	if err := sameFile(local, oneFile); err != nil {
		t.Errorf("second client host's download: %v", err)
	}
}

// vsftpdConnectsFrom returns the CONNECT lines of vsftpd's log from addr.
func vsftpdConnectsFrom(t *testing.T, srv *ftpServer, addr string) []string {
	t.Helper()
	all, err := vsftpdConnects(srv)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range all {
		if a == addr {
			out = append(out, a)
		}
	}
	return out
}

// established counts the established TCP connections to local port port in namespace ns (ss).
func established(ctx context.Context, t *testing.T, ns string, port int) int {
	t.Helper()
	out, err := nsrun.Command(ctx, ns, "ss", "-Htn", "state", "established", fmt.Sprintf("( sport = :%d )", port)).Output()
	if err != nil {
		t.Fatalf("ss in %s: %v", ns, err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// TestDataIdleTimeout: a download whose server stops sending in the middle (a rule in the
// server's namespace drops every data segment it sends) is aborted by ftpgate
// (--data-idle-timeout 3s) within the timeout plus 2 s: the client gets 426, and the xferlog and
// audit records say the transfer is incomplete and why.
func TestDataIdleTimeout(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	const idleTimeout = 3 * time.Second
	const stallFile, stallSize = "stall.bin", 100 << 20
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	srv.addSparseFile(t, stallFile, stallSize)
	dir := t.TempDir()
	audit, xferlog := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "xferlog")
	startGate(t, tp, gateConfig{Extra: []string{"--data-idle-timeout", idleTimeout.String(),
		"--audit-log", audit, "--xferlog", xferlog}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ctl := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	data := startSlowRETR(ctx, t, ctl, stallFile)
	if _, err := io.ReadFull(data, make([]byte, 1<<20)); err != nil {
		t.Fatalf("first MiB of the download: %v", err)
	}
	// The server goes silent: its data segments are dropped, its connection stays up.
	nftIn(ctx, t, tp.Server, `table inet e2e_stall {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp sport `+fmt.Sprintf("%d-%d", serverPassiveLo, serverPassiveHi)+` drop
	}
}`)
	stalled := time.Now()
	got := make(chan int64, 1)
	go func() { // the client keeps reading, as a real one would
		n, _ := io.Copy(io.Discard, data)
		got <- n + 1<<20
	}()
	final, err := ctl.finalReply(idleTimeout + 2*time.Second)
	if err != nil {
		t.Fatalf("no final reply within %s of the stall: %v\n%s", idleTimeout+2*time.Second, err, ctl.Transcript())
	}
	t.Logf("final reply %.0fs after the stall: %s", time.Since(stalled).Seconds(), final)
	if final.Code != 426 {
		t.Fatalf("stalled download: final reply %q, want 426\n%s", final, ctl.Transcript())
	}
	var received int64
	select {
	case received = <-got:
	case <-ctx.Done():
		t.Fatal("the client's data connection was not closed after the 426")
	}
	if received >= stallSize {
		t.Errorf("the client received all %d bytes of a transfer that stalled", received)
	}
	// The session goes on: the next command is answered.
	if _, err := ctl.expect("NOOP", 200); err != nil {
		t.Errorf("after the aborted transfer: %v\n%s", err, ctl.Transcript())
	}

	rec := waitAuditRecord(ctx, t, audit, func(r logRecord) bool {
		return r.str("type") == "transfer" && r.str("verb") == "RETR" && strings.HasSuffix(r.str("path"), stallFile)
	})
	if code, _ := rec.num("code"); code != 426 || rec.str("result") == "ok" || !strings.Contains(rec.str("cause"), "idle") {
		t.Errorf("audit record of the stalled download: want code 426, a failed result and the idle cause: %s", rec)
	}
	line := waitXferlog(ctx, t, xferlog, stallFile)
	if line.Status != "i" || line.Direction != "o" || line.Size >= stallSize {
		t.Errorf("xferlog line of the stalled download: want status i, direction o, fewer than %d bytes: %+v", stallSize, line)
	}
}

// nftIn loads an nft ruleset into namespace ns (a test namespace, never the root one); the
// namespace's removal takes it away.
func nftIn(ctx context.Context, t *testing.T, ns, ruleset string) {
	t.Helper()
	cmd := nsrun.Command(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f in %s: %v\n%s\n%s", ns, err, out, ruleset)
	}
}

// zeroSHA256 is the sha256 of n zero bytes (a sparse file's content).
func zeroSHA256(n int64) string {
	h := sha256.New()
	_, _ = io.CopyN(h, zeroReader{}, n)
	return hex.EncodeToString(h.Sum(nil))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// readFileLines returns the lines of a file written by ftpgate, or none if it does not exist yet.
func readFileLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// startSlowRETR starts a download of name over EPSV on a data connection with a small receive
// window (see dialSmallWindow), so that most of a large file is still in flight while the test
// acts; the 1xx reply has come. The connection is closed when the test ends, and reads from it
// time out after a minute.
func startSlowRETR(ctx context.Context, t *testing.T, ctl *ftpCtl, name string) net.Conn {
	t.Helper()
	target := ctl.mustPassive(t, "EPSV")
	data, err := dialSmallWindow(ctx, ctl.ns, target.String())
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	t.Cleanup(func() { data.Close() })
	if _, err := ctl.startTransfer("RETR " + name); err != nil {
		t.Fatalf("%v\n%s", err, ctl.Transcript())
	}
	_ = data.SetReadDeadline(time.Now().Add(60 * time.Second))
	return data
}
