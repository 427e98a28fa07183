//go:build linux

package e2e

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKillNine: kill -9 of ftpgate in the middle of a transfer, with another client's passive
// transfer pending: table inet ftpgate, and every pinhole in it, is gone within a second,
// because the kernel deletes an owned table with its owner. An ftpgate started again works.
func TestKillNine(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	cfg := gateConfig{}
	g := startGate(t, tp, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A download the client reads slowly, through a small receive window: it is still running.
	busy := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	target := busy.mustPassive(t, "EPSV")
	data, err := dialSmallWindow(ctx, tp.Client, target.String())
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	defer data.Close()
	if _, err := busy.startTransfer("RETR " + bigFile); err != nil {
		t.Fatalf("%v\n%s", err, busy.Transcript())
	}
	_ = data.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(data, make([]byte, 64<<10)); err != nil {
		t.Fatalf("first 64 KiB of the download: %v", err)
	}
	// And a second session with a pinhole pending.
	pending := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV6, 21))
	pendingTarget := pending.mustPassive(t, "EPSV")
	if els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets); !isOnly(els, ownPinholes6, pinholeKey(clientV6, proxyClientV6, int(pendingTarget.Port()))) {
		t.Fatalf("before the kill table inet ftpgate holds %v; want the pending session's pinhole only", els)
	}
	if recs := g.logs.Records("transfer"); len(recs) != 0 {
		t.Fatalf("the download ended before the kill: %s", excerpt(recs, 3))
	}

	killed := time.Now()
	if err := g.Kill(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for {
		has, err := hasTable(ctx, tp.Proxy, "inet "+ownTable)
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			t.Logf("table inet ftpgate gone %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("table inet ftpgate still exists %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The download was cut short: what ftpgate had read from the server but not yet sent is lost.
	_, n, err := dataSum(data, 10*time.Second)
	t.Logf("the interrupted download ended after %d more bytes (%v)", n, err)
	if n+(64<<10) >= bigSize {
		t.Errorf("the client received all %d bytes: the transfer was over before the kill", n+(64<<10))
	}

	// A restart works: a download through the new ftpgate.
	startGate(t, tp, cfg)
	dir := t.TempDir()
	for _, ep := range []endpoint{gateV4(), gateV6()} {
		local := filepath.Join(dir, ep.Name+"-"+strings.ReplaceAll(ep.Host, ":", "_")+"-"+bigFile)
		if err := (curlClient{ns: tp.Client}).Get(ctx, ep, modeEPSV, bigFile, local); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	}
}
