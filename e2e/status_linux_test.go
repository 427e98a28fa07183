//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// The slow download `ftpgate status` watches: sparse, and limited by curl to
// a rate at which it runs for several seconds whatever the socket buffers
// hold ahead of the client.
const (
	statusFile  = "status.bin"
	statusSize  = 96 << 20
	statusLimit = "8M" // curl --limit-rate: about 12 s for the file
)

// statusJSON is the part of GET /status (`ftpgate status --json`) the test reads.
type statusJSON struct {
	Totals struct {
		Sessions  int64 `json:"sessions"`
		Accepted  int64 `json:"accepted"`
		Transfers int64 `json:"transfers"`
		Pinholes  int64 `json:"pinholes"`
	} `json:"totals"`
	Sessions []struct {
		Client   string `json:"client"`
		Server   string `json:"server"`
		User     string `json:"user"`
		Mode     string `json:"mode"`
		Transfer *struct {
			Verb      string `json:"verb"`
			Path      string `json:"path"`
			Direction string `json:"direction"`
			Bytes     int64  `json:"bytes"`
			Size      int64  `json:"size"`
		} `json:"transfer"`
	} `json:"sessions"`
	Pinholes []struct {
		Peer        string `json:"peer"`
		Local       string `json:"local"`
		RemainingNS int64  `json:"remaining_ns"`
	} `json:"pinholes"`
}

// runStatus runs the built `ftpgate status` with args in the proxy namespace and returns what
// it printed; it fails the test if the command fails.
func runStatus(ctx context.Context, t *testing.T, tp *topology, args ...string) string {
	t.Helper()
	out, errOut, err := runIn(ctx, tp.Proxy, suite.ftpgate, append([]string{"status"}, args...)...)
	if err != nil {
		t.Fatalf("ftpgate status %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return string(out)
}

// statusWhen polls `ftpgate status --json` until ok holds for what it printed, and returns it.
func statusWhen(ctx context.Context, t *testing.T, tp *topology, g *gate, what string, ok func(statusJSON) bool) statusJSON {
	t.Helper()
	for {
		out := runStatus(ctx, t, tp, "--admin", g.admin, "--json")
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("ftpgate status --json printed %q: %v", out, err)
		}
		if ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ftpgate status --json: never %s; last:\n%s", what, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestStatus runs `ftpgate status` in the gateway's namespace against a reverse-mode ftpgate
// while curl downloads slowly through it and a second client waits after EPSV: the JSON and the
// table show both sessions, the transfer with its bytes so far and its percentage, and the
// pinhole with its remaining time; --watch redraws until SIGINT; after the download the totals
// count it.
func TestStatus(t *testing.T) {
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	t.Parallel()
	tp := newTopology(t)
	g := startGate(t, tp, gateConfig{}) // reverse mode: sessions dial the server when they start
	srv := startServer(t, tp, vsftpd)
	srv.addSparseFile(t, statusFile, statusSize)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	idle := runStatus(ctx, t, tp) // the default endpoint, 127.0.0.1:9121, is the harness's
	for _, want := range []string{"Sessions: none", "Transfers in flight: none", "Pinholes: none", "0 completed"} {
		if !strings.Contains(idle, want) {
			t.Fatalf("idle ftpgate: no %q in\n%s", want, idle)
		}
	}

	local := filepath.Join(t.TempDir(), statusFile)
	curlDone := make(chan error, 1)
	go func() {
		_, err := (curlClient{ns: tp.Client}).run(ctx, gateV4(), modeEPSV, "--limit-rate", statusLimit, "-o", local, gateV4().url(statusFile))
		curlDone <- err
	}()
	curlFinished := false
	defer func() {
		if !curlFinished {
			cancel()
			<-curlDone
		}
	}()

	inFlight := func(st statusJSON) bool {
		for _, s := range st.Sessions {
			if s.Transfer != nil && s.Transfer.Bytes > 0 {
				return true
			}
		}
		return false
	}
	statusWhen(ctx, t, tp, g, "a download in flight with bytes", inFlight)
	// Meanwhile a second session waits after EPSV: its pinhole is open until the peer comes.
	ctl := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	ctl.mustPassive(t, "EPSV")
	st := statusWhen(ctx, t, tp, g, "the download in flight and a pinhole", func(st statusJSON) bool {
		return inFlight(st) && len(st.Pinholes) > 0
	})
	if len(st.Sessions) != 2 || st.Totals.Sessions != 2 {
		t.Fatalf("want 2 sessions (the download, the one after EPSV): %+v", st)
	}
	var tr = st.Sessions[0].Transfer
	dl := st.Sessions[0]
	if tr == nil {
		dl, tr = st.Sessions[1], st.Sessions[1].Transfer
	}
	client, err := netip.ParseAddrPort(dl.Client)
	if err != nil || client.Addr().Unmap().String() != clientV4 {
		t.Errorf("download session client %q, want %s:PORT", dl.Client, clientV4)
	}
	if dl.Server != hostPort(serverV4, 21) || dl.User != e2eUser || dl.Mode != "reverse" {
		t.Errorf("download session %+v: want server %s, user %s, mode reverse", dl, hostPort(serverV4, 21), e2eUser)
	}
	if tr.Verb != "RETR" || !strings.HasSuffix(tr.Path, statusFile) || tr.Direction != "download" ||
		tr.Size != statusSize || tr.Bytes <= 0 || tr.Bytes > statusSize {
		t.Errorf("transfer %+v: want RETR %s, download, size %d (vsftpd's 150), 0 < bytes <= size", *tr, statusFile, statusSize)
	}
	ph := st.Pinholes[0]
	if len(st.Pinholes) != 1 || ph.Peer != clientV4 || !strings.HasPrefix(ph.Local, proxyClientV4+":400") || ph.RemainingNS <= 0 {
		t.Errorf("pinholes %+v: want one for %s to %s:400xx with time left", st.Pinholes, clientV4, proxyClientV4)
	}

	table := runStatus(ctx, t, tp, "--admin", g.admin)
	percent := regexp.MustCompile(`\b\d{1,3}\.\d%`)
	for _, want := range []string{"Sessions: 2", clientV4 + ":", hostPort(serverV4, 21), e2eUser, "reverse",
		"Transfers in flight: 1", "RETR", statusFile, "download", "96.0 MiB", "/s", "Pinholes: 1", clientV4 + " "} {
		if !strings.Contains(table, want) {
			t.Errorf("table: no %q in\n%s", want, table)
		}
	}
	if !percent.MatchString(table) {
		t.Errorf("table: no percentage in\n%s", table)
	}
	t.Logf("ftpgate status during the download:\n%s", table)

	// --watch redraws in place until SIGINT, with the transfer on screen.
	var watched syncBuffer
	var watchErr syncBuffer
	watch := nsrun.Command(ctx, tp.Proxy, suite.ftpgate, "status", "--admin", g.admin, "--watch", "--interval", "200ms")
	watch.Stdout, watch.Stderr = &watched, &watchErr
	wp := startProcess(t, "ftpgate status --watch", watch)
	for strings.Count(watched.String(), "\x1b[H\x1b[2J") < 2 {
		if wp.Exited() {
			t.Fatalf("ftpgate status --watch exited: %v\nstderr: %s", wp.err, watchErr.String())
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ftpgate status --watch: not two frames: %q", watched.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := watch.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := wp.Wait(10 * time.Second); err != nil {
		t.Fatalf("ftpgate status --watch after SIGINT: %v\nstderr: %s", err, watchErr.String())
	}
	frames := strings.Split(watched.String(), "\x1b[H\x1b[2J")
	if last := frames[len(frames)-1]; !strings.Contains(last, "RETR") || !strings.Contains(last, "Ctrl-C to quit") {
		t.Errorf("--watch frame without the transfer or the hint:\n%s", last)
	}

	// After the download: no session, and the totals count it.
	if err := ctl.quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	select {
	case err := <-curlDone:
		curlFinished = true
		if err != nil {
			t.Fatalf("curl download: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("curl still downloading after 120s")
	}
	if fi, err := os.Stat(local); err != nil {
		t.Fatal(err)
	} else if fi.Size() != statusSize {
		t.Fatalf("downloaded %d bytes, want %d", fi.Size(), statusSize)
	}
	st = statusWhen(ctx, t, tp, g, "idle after the download", func(st statusJSON) bool { return len(st.Sessions) == 0 })
	if st.Totals.Transfers != 1 || st.Totals.Accepted != 2 || st.Totals.Sessions != 0 || st.Totals.Pinholes != 0 {
		t.Errorf("totals after the download %+v: want 1 transfer, 2 accepted, no session or pinhole", st.Totals)
	}
	done := runStatus(ctx, t, tp, "--admin", g.admin)
	if !strings.Contains(done, "sessions 0 open, 2 accepted; transfers 1 completed, 0 in flight") {
		t.Errorf("table after the download:\n%s", done)
	}
}
