//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverModes are ftpgate's --server-mode values the matrix covers.
var serverModes = []string{"passive", "active"}

func serverNeed(kind string) string {
	switch kind {
	case proftpd:
		return needProftpd
	case pureFTPd:
		return needPureFTPd
	default:
		return needVsftpd
	}
}

// TestBaseline runs every client and mode directly against every server, routed through the
// proxy namespace without ftpgate. It proves the harness (topology, servers, clients,
// checksums) and is the reference the ftpgate tests are compared with.
func TestBaseline(t *testing.T) {
	t.Parallel()
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, serverNeed(kind), needCurl, needLftp, needPython)
			tp := newTopology(t)
			srv := startServer(t, tp, kind)
			t.Run("transfers", func(t *testing.T) {
				runMatrix(t, tp, srv, nil, directV4(), directV6())
				runMirrors(t, tp, srv, directV4())
			})
		})
	}
}

// TestInterop is issue #3's interoperability matrix through ftpgate: for each server and each
// server mode, curl and ftplib in every client mode download, upload, list and resume over IPv4
// and from IPv6 clients; lftp mirrors both ways; 50 sessions run at once. Afterwards ftpgate
// must hold no more goroutines, fds or listeners than before the load.
func TestInterop(t *testing.T) {
	t.Parallel()
	for _, kind := range serverKinds {
		for _, sm := range serverModes {
			t.Run(kind+"/server-"+sm, func(t *testing.T) {
				t.Parallel()
				requirePrereqs(t, serverNeed(kind), needCurl, needLftp, needPython, needFtpgate)
				tp := newTopology(t)
				srv := startServer(t, tp, kind)
				g := startGate(t, tp, gateConfig{ServerMode: sm})
				base := warmUp(t, tp, g, gateV4(), gateV6())
				t.Run("load", func(t *testing.T) {
					runMatrix(t, tp, srv, g, gateV4(), gateV6())
					runMirrors(t, tp, srv, gateV4())
					t.Run("concurrent-50", func(t *testing.T) {
						t.Parallel()
						runConcurrent(t, tp, gateV4(), 50)
					})
				})
				t.Run("settled", func(t *testing.T) { checkSettled(t, g, base, sm) })
			})
		}
	}
}

// TestIPv6EndToEnd runs IPv6 clients through ftpgate to the servers' IPv6 addresses.
func TestIPv6EndToEnd(t *testing.T) {
	t.Parallel()
	for _, kind := range serverKinds {
		for _, sm := range serverModes {
			t.Run(kind+"/server-"+sm, func(t *testing.T) {
				t.Parallel()
				requirePrereqs(t, serverNeed(kind), needCurl, needPython, needFtpgate)
				tp := newTopology(t)
				srv := startServer(t, tp, kind)
				g := startGate(t, tp, gateConfig{
					Listen:     []string{hostPort(proxyClientV6, 21)},
					Upstream:   hostPort(serverV6, 21),
					ServerMode: sm,
				})
				base := warmUp(t, tp, g, gateV6())
				t.Run("load", func(t *testing.T) { runMatrix(t, tp, srv, g, gateV6()) })
				t.Run("settled", func(t *testing.T) { checkSettled(t, g, base, sm) })
			})
		}
	}
}

// runMatrix runs, as parallel subtests, every client in every mode of each endpoint's family:
// a 10 MiB download and upload with checksums on both ends, a listing compared by name with
// the server's directory, and a download resumed with REST. g is nil for direct endpoints.
func runMatrix(t *testing.T, tp *topology, srv *ftpServer, g *gate, eps ...endpoint) {
	clients := []ftpClient{curlClient{tp.Client}, ftplibClient{tp.Client}}
	wantNames, err := listNames(listDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps {
		fam := "ipv4"
		modes := modesV4
		if ep.v6() {
			fam, modes = "ipv6", modesV6
		}
		for _, c := range clients {
			for _, m := range modes {
				t.Run(fmt.Sprintf("%s-%s/%s/%s", ep.Name, fam, c.Name(), m), func(t *testing.T) {
					t.Parallel()
					dir := t.TempDir()
					tag := strings.ToLower(fmt.Sprintf("%s-%s-%s-%s", ep.Name, fam, c.Name(), m))

					t.Run("get", func(t *testing.T) {
						ctx, cancel := withTimeout(context.Background())
						defer cancel()
						local := filepath.Join(dir, "get-"+bigFile)
						if err := c.Get(ctx, ep, m, bigFile, local); err != nil {
							t.Fatal(tp.diagnose(err))
						}
						if err := sameFile(local, bigFile); err != nil {
							t.Fatalf("download: %v", err)
						}
					})
					t.Run("put", func(t *testing.T) {
						ctx, cancel := withTimeout(context.Background())
						defer cancel()
						remote := "up-" + tag + ".bin"
						if err := c.Put(ctx, ep, m, filepath.Join(suite.fixtures, bigFile), remote); err != nil {
							t.Fatal(tp.diagnose(err))
						}
						if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
							t.Fatalf("upload, on the server: %v", err)
						}
						if g != nil {
							checkTransferLog(t, g, "STOR", remote, bigSize)
						}
					})
					t.Run("list", func(t *testing.T) {
						ctx, cancel := withTimeout(context.Background())
						defer cancel()
						got, err := c.List(ctx, ep, m, listDir)
						if err != nil {
							t.Fatal(tp.diagnose(err))
						}
						if !slices.Equal(got, wantNames) {
							t.Fatalf("listing of %s:\n got %q\nwant %q", listDir, got, wantNames)
						}
					})
					t.Run("rest", func(t *testing.T) {
						ctx, cancel := withTimeout(context.Background())
						defer cancel()
						local := filepath.Join(dir, "rest-"+bigFile)
						if err := writePrefix(local, bigFile, restOffset); err != nil {
							t.Fatal(err)
						}
						if err := c.Resume(ctx, ep, m, bigFile, local, restOffset); err != nil {
							t.Fatal(tp.diagnose(err))
						}
						if err := sameFile(local, bigFile); err != nil {
							t.Fatalf("resumed download at %d: %v", restOffset, err)
						}
					})
				})
			}
		}
	}
}

// checkTransferLog waits for ftpgate's "transfer" record of an upload and checks its size.
func checkTransferLog(t *testing.T, g *gate, command, name string, size int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := g.logs.Wait(ctx, "transfer", func(r logRecord) bool {
		return strings.HasSuffix(r.str("path"), name)
	})
	if err != nil {
		t.Errorf("ftpgate logged no transfer of %s: %v\nrecent transfer records:\n%s", name, err, excerpt(g.logs.Records("transfer"), 5))
		return
	}
	if got := rec.str("command"); !strings.EqualFold(got, command) {
		t.Errorf("transfer record of %s: command %q, want %s\n%s", name, got, command, rec)
	}
	if n, ok := rec.num("bytes"); !ok || n != size {
		t.Errorf("transfer record of %s: bytes %v, want %d\n%s", name, rec["bytes"], size, rec)
	}
}

// runMirrors has lftp upload the 200-file directory in passive mode (EPSV) and download it in
// active mode (PORT/EPRT), comparing every file's checksum.
func runMirrors(t *testing.T, tp *topology, srv *ftpServer, ep endpoint) {
	t.Run("lftp-mirror-up-passive", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := withTimeout(context.Background())
		defer cancel()
		dst := "mirror-up-" + ep.Name
		if err := lftpMirror(ctx, tp.Client, ep, true, true, filepath.Join(suite.fixtures, mirrorDir), dst); err != nil {
			t.Fatal(err)
		}
		got, err := treeSums(filepath.Join(srv.Root, dst))
		if err != nil {
			t.Fatalf("uploaded tree: %v", err)
		}
		if err := diffTrees(got, fixtureTree(mirrorDir)); err != nil {
			t.Fatalf("lftp mirror -R, on the server: %v", err)
		}
	})
	t.Run("lftp-mirror-down-active", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := withTimeout(context.Background())
		defer cancel()
		dst := filepath.Join(t.TempDir(), "down")
		if err := lftpMirror(ctx, tp.Client, ep, false, false, "/"+mirrorDir, dst); err != nil {
			t.Fatal(err)
		}
		got, err := treeSums(dst)
		if err != nil {
			t.Fatalf("downloaded tree: %v", err)
		}
		if err := diffTrees(got, fixtureTree(mirrorDir)); err != nil {
			t.Fatalf("lftp mirror, downloaded: %v", err)
		}
	})
}

// runConcurrent starts n curl sessions at once, each downloading the 1 MiB file in one of the
// four modes, and checks that all of them got the exact file within a bounded time.
func runConcurrent(t *testing.T, tp *topology, ep endpoint, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	modes := []dataMode{modeEPSV, modePASV, modeEPRT, modePORT}
	c := curlClient{tp.Client}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := filepath.Join(dir, fmt.Sprintf("one-%02d.bin", i))
			m := modes[i%len(modes)]
			if err := c.Get(ctx, ep, m, oneFile, local); err != nil {
				errs[i] = fmt.Errorf("session %d (%s): %w", i, m, tp.diagnose(err))
				return
			}
			if err := sameFile(local, oneFile); err != nil {
				errs[i] = fmt.Errorf("session %d (%s): %w", i, m, err)
			}
		}()
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	t.Logf("%d concurrent 1 MiB downloads via %s in %s", n, ep.Name, time.Since(start).Round(time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("%d of %d concurrent sessions failed; first: %v", len(failed), n, failed[0])
		for _, err := range failed[1:min(len(failed), 3)] {
			t.Errorf("also: %v", err)
		}
	}
}

// warmUp runs one passive and one active listing through each endpoint of ftpgate (so whatever
// it creates lazily, per address family or mode, exists), waits until it is idle, and returns
// its resource counts as the baseline.
func warmUp(t *testing.T, tp *topology, g *gate, eps ...endpoint) gateVars {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := curlClient{tp.Client}
	for _, ep := range eps {
		for _, m := range []dataMode{modeEPSV, modeEPRT} {
			if _, err := c.List(ctx, ep, m, listDir); err != nil {
				t.Fatalf("warm-up through ftpgate: %v", err)
			}
		}
	}
	v := idleBaseline(ctx, t, g)
	t.Logf("ftpgate baseline after warm-up: %s", v)
	return v
}

// checkSettled checks that after the load ftpgate returns to its baseline resources, ended
// every session it started, and logged sessions and transfers with the documented fields.
func checkSettled(t *testing.T, g *gate, base gateVars, serverMode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := g.waitSettled(ctx, base)
	if err != nil {
		t.Errorf("ftpgate did not return to its baseline after the load: %v\n before: %s\n after:  %s\n ftpgate vars: %s",
			err, base, v, v.raw)
	} else {
		t.Logf("ftpgate after the load: %s (baseline %s)", v, base)
	}

	// Every session that started has ended.
	var starts, ends []logRecord
	for range 50 {
		starts, ends = g.logs.Records("session start"), g.logs.Records("session end")
		if len(starts) == len(ends) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(starts) == 0 || len(starts) != len(ends) {
		t.Errorf(`%d "session start" but %d "session end" records\nlast:\n%s`, len(starts), len(ends), excerpt(ends, 3))
	}
	for _, r := range ends {
		if missing := missingFields(r, "client", "server", "user", "duration", "bytes_in", "bytes_out"); missing != "" {
			t.Errorf(`"session end" record without %s: %s`, missing, r)
			break
		}
	}
	if !slices.ContainsFunc(ends, func(r logRecord) bool { return r.str("user") == e2eUser }) {
		t.Errorf(`no "session end" record with user %q; last:\n%s`, e2eUser, excerpt(ends, 3))
	}
	transfers := g.logs.Records("transfer")
	if len(transfers) == 0 {
		t.Errorf(`no "transfer" records`)
	}
	modes := map[string]int{}
	for _, r := range transfers {
		if missing := missingFields(r, "command", "path", "direction", "bytes", "duration", "client_mode", "server_mode", "code"); missing != "" {
			t.Errorf(`"transfer" record without %s: %s`, missing, r)
			break
		}
		modes[r.str("client_mode")+"/"+r.str("server_mode")]++
	}
	t.Logf("transfers by client_mode/server_mode (configured --server-mode %s): %v", serverMode, modes)
}

func missingFields(r logRecord, fields ...string) string {
	var missing []string
	for _, f := range fields {
		if _, ok := r[f]; !ok {
			missing = append(missing, f)
		}
	}
	return strings.Join(missing, ", ")
}
