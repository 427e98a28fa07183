//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

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

// warmUp runs one passive and one active listing through each endpoint of ftpgate (so whatever
// it creates lazily, per address family or mode, exists), waits until it is idle, and returns
// its resource counts as the baseline.
func warmUp(t *testing.T, tp *topology, g *gate, eps ...endpoint) gateVars {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := curlClient{ns: tp.Client}
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

// ftpsGetPut downloads and uploads the 10 MiB fixture through ftpgate with c, compares
// checksums on both ends, and checks the upload's transfer record for TLS on each leg.
func ftpsGetPut(t *testing.T, tp *topology, srv *ftpServer, g *gate, c getPutter, ep endpoint, m dataMode, tag string, clientTLS bool) {
	t.Helper()
	ctx, cancel := withTimeout(context.Background())
	defer cancel()
	local := filepath.Join(t.TempDir(), bigFile)
	if err := c.Get(ctx, ep, m, bigFile, local); err != nil {
		t.Fatal(tp.diagnose(err))
	}
	if err := sameFile(local, bigFile); err != nil {
		t.Fatalf("download: %v", err)
	}
	remote := "up-" + tag + ".bin"
	if err := c.Put(ctx, ep, m, filepath.Join(suite.fixtures, bigFile), remote); err != nil {
		t.Fatal(tp.diagnose(err))
	}
	if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
		t.Fatalf("upload, on the server: %v", err)
	}
	checkTransferTLS(t, g, remote, clientTLS, true)
}

// checkTransferTLS waits for ftpgate's transfer record of an upload of name (10 MiB) and checks
// that it names the TLS version and cipher suite of each protected data leg, "none" otherwise,
// and that a protected client leg resumed the control session.
func checkTransferTLS(t *testing.T, g *gate, name string, clientTLS, serverTLS bool) {
	t.Helper()
	checkTransferLog(t, g, "STOR", name, bigSize)
	recs := g.logs.Records("transfer")
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if !strings.HasSuffix(r.str("path"), name) {
			continue
		}
		for _, leg := range []struct {
			key  string
			want bool
		}{{"client_tls", clientTLS}, {"server_tls", serverTLS}} {
			obj, isTLS := r[leg.key].(map[string]any)
			switch {
			case isTLS != leg.want:
				t.Errorf("transfer record of %s: %s = %v, want TLS: %v\n%s", name, leg.key, r[leg.key], leg.want, r)
			case isTLS && (!strings.HasPrefix(fmt.Sprint(obj["version"]), "TLS 1.") || fmt.Sprint(obj["cipher"]) == ""):
				t.Errorf("transfer record of %s: %s = %v, want a version and cipher suite", name, leg.key, obj)
			case isTLS && obj["resumed"] != true:
				t.Errorf("transfer record of %s: %s did not resume the control session: %v", name, leg.key, obj)
			case !isTLS && r.str(leg.key) != "none":
				t.Errorf("transfer record of %s: %s = %q, want none", name, leg.key, r.str(leg.key))
			}
		}
		return
	}
}

// waitRecords waits (up to 10 s) until ftpgate has logged n records with msg: its log reaches
// the test through a pipe, after the client may already have seen the effect.
func waitRecords(ctx context.Context, g *gate, msg string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		got := len(g.logs.Records(msg))
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d %q records, want %d\nlog tail:\n%s", got, msg, n, g.logs.Tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
