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

// runMatrix runs, as parallel subtests, every client in every mode of each endpoint's family:
// a 10 MiB download and upload with checksums on both ends, a listing compared by name with
// the server's directory, and a download resumed with REST. g is nil for direct endpoints.
func runMatrix(t *testing.T, tp *topology, srv *ftpServer, g *gate, eps ...endpoint) {
	clients := []ftpClient{curlClient{ns: tp.Client}, ftplibClient{tp.Client}}
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

// runMirrors has lftp upload the 200-file directory in passive mode (EPSV) and download it in
// active mode (PORT/EPRT), comparing every file's checksum.
func runMirrors(t *testing.T, tp *topology, srv *ftpServer, ep endpoint) {
	t.Run("lftp-mirror-up-passive", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := withTimeout(context.Background())
		defer cancel()
		dst := "mirror-up-" + ep.Name
		if err := runLftp(ctx, tp.Client, ep, lftpRun{Passive: true}, "mirror -R --parallel=4 "+filepath.Join(suite.fixtures, mirrorDir)+" "+dst); err != nil {
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
		if err := runLftp(ctx, tp.Client, ep, lftpRun{}, "mirror --parallel=4 /"+mirrorDir+" "+dst); err != nil {
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
	c := curlClient{ns: tp.Client}
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
