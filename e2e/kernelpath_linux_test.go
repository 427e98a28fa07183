//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKernelDataPath: with --data-path kernel on the routing proxy namespace, passive
// downloads (EPSV, PASV) and uploads with curl and ftplib against vsftpd are forwarded by the
// kernel: the files arrive whole (sha256), ftpgate's transfer records carry the exact byte
// counts and data_path "kernel", and a 1 GiB download makes no splice(2) call in ftpgate and
// reads and writes no more than its control channel (strace). An active-mode transfer, and one of an IPv6 client to
// the IPv4 server, are spliced, with a log line saying why; an ABOR ends a forwarded download and the session goes on. Nothing is left in
// the flow maps afterwards, and ftpgate is back to its resources before the transfers.
func TestKernelDataPath(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needPython, needStrace, needFtpgate)
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	// A flow log group of its own, not the default: the exact byte counts below come from
	// that group, so they show that --flow-log-group reaches both the rules and the reader.
	g := startGate(t, tp, gateConfig{Extra: []string{"--data-path", "kernel", "--flow-log-group", "4711"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The baseline before any transfer (warmUp's listings would add records the checks below
	// count): the forwarded transfers must leave no goroutine, descriptor or listener behind.
	base := idleBaseline(ctx, t, g)
	ep := gateV4()
	for _, tc := range []struct {
		name string
		c    getPutter
		m    dataMode
	}{
		{"curl/EPSV", curlClient{ns: tp.Client}, modeEPSV},
		{"curl/PASV", curlClient{ns: tp.Client}, modePASV},
		{"ftplib/EPSV", ftplibClient{tp.Client}, modeEPSV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := filepath.Join(t.TempDir(), bigFile)
			if err := tc.c.Get(ctx, ep, tc.m, bigFile, local); err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Fatalf("download: %v", err)
			}
			remote := "up-" + strings.ReplaceAll(tc.name, "/", "-") + ".bin"
			if err := tc.c.Put(ctx, ep, tc.m, filepath.Join(suite.fixtures, bigFile), remote); err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
				t.Fatalf("upload, on the server: %v", err)
			}
			checkTransferLog(t, g, "STOR", remote, bigSize)
		})
	}
	if l := g.logs.Find("kernel data path not used"); l != "" {
		t.Errorf("a passive transfer was spliced:\n%s", l)
	}
	var kernel int
	for _, r := range g.logs.Records("transfer") {
		if r.str("data_path") != "kernel" {
			t.Errorf("transfer record without data_path kernel: %s", r)
			continue
		}
		if n, _ := r.num("bytes"); n != bigSize {
			t.Errorf("transfer record: bytes %v, want %d: %s", r["bytes"], bigSize, r)
		}
		kernel++
	}
	if kernel != 6 {
		t.Errorf("%d transfers forwarded by the kernel, want 6", kernel)
	}
	t.Run("no byte through ftpgate", func(t *testing.T) {
		// The relay splices (which /proc/PID/io does not count): strace is what tells the two
		// apart. A forwarded 1 GiB download makes no splice call and a few reads and writes
		// of the control channel; relayed, it takes over a thousand splice calls.
		srv.addSparseFile(t, hugeFile, hugeSize)
		sum, _, err := straceDownload(t, tp, g)
		if err != nil {
			t.Fatal(err)
		}
		if n, rw := sum.calls["splice"], sum.calls["read"]+sum.calls["write"]; n != 0 || rw > 200 {
			t.Errorf("ftpgate made %d splice and %d read/write calls for a forwarded download:\n%s", n, rw, sum.text)
		}
	})

	t.Run("IPv6 client, IPv4 server: spliced", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), oneFile)
		if err := (curlClient{ns: tp.Client}).Get(ctx, gateV6(), modeEPSV, oneFile, local); err != nil {
			t.Fatal(tp.diagnose(err))
		}
		if err := sameFile(local, oneFile); err != nil {
			t.Fatalf("download: %v", err)
		}
		if !g.logs.Contains("kernel data path not used: the client and the server are of different address families; splicing instead") {
			t.Error("no log line says why the IPv6 client's transfer was spliced")
		}
	})
	t.Run("active is spliced", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), oneFile)
		if err := (curlClient{ns: tp.Client}).Get(ctx, ep, modeEPRT, oneFile, local); err != nil {
			t.Fatal(tp.diagnose(err))
		}
		if err := sameFile(local, oneFile); err != nil {
			t.Fatalf("download: %v", err)
		}
		if !g.logs.Contains("kernel data path not used: the client leg is active; splicing instead") {
			t.Error("no log line says why the active transfer was spliced")
		}
	})
	t.Run("abort", func(t *testing.T) {
		// ABOR of a forwarded download: the server ends the data connection, the client hears
		// both replies, the record says aborted, and the session goes on.
		srv.addSparseFile(t, hugeFile, hugeSize)
		local := filepath.Join(t.TempDir(), bigFile)
		out, transcript, err := runIn(ctx, tp.Client, python3Bin, ftplibArgs(ep, modeEPSV, "abort-get", hugeFile, bigFile, local)...)
		if err != nil {
			t.Fatalf("ftplib abort-get: %v\nstdout: %s\ntranscript:\n%s", err, out, tail(transcript, 25))
		}
		if !strings.Contains(string(out), `"aborted"`) {
			t.Fatalf("no abort record in %s", out)
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Fatalf("download after ABOR: %v", err)
		}
		rec, err := g.logs.Wait(ctx, "transfer", func(r logRecord) bool { return r["aborted"] == true })
		if err != nil {
			t.Fatalf("no aborted transfer record: %v\n%s", err, g.logs.Tail(20))
		}
		if n, _ := rec.num("bytes"); rec.str("data_path") != "kernel" || n >= hugeSize {
			t.Errorf("aborted transfer record: %s", rec)
		}
	})
	t.Run("EPSV never used", func(t *testing.T) {
		// The flow is open once the 229 is out; a session that then ends leaves nothing.
		out, transcript, err := runIn(ctx, tp.Client, python3Bin, ftplibArgs(ep, modeEPSV, "raw", "EPSV")...)
		if err != nil || !strings.Contains(string(out), "229") {
			t.Fatalf("ftplib raw EPSV: %v\n%s\n%s", err, out, transcript)
		}
	})
	if err := waitRecords(ctx, g, "session end", 10); err != nil {
		t.Fatal(err)
	}
	maps, err := nftMapElements(ctx, tp.Proxy, "inet", "ftpgate", "flow_dnat4", "flow_snat4", "flow_dnat6", "flow_snat6")
	if err != nil {
		t.Fatal(err)
	}
	sets, err := nftSetElements(ctx, tp.Proxy, "inet", "ftpgate", "flow_log4", "flow_log6")
	if err != nil {
		t.Fatal(err)
	}
	if len(maps)+len(sets) != 0 {
		t.Errorf("flow elements left after the transfers: %v %v", maps, sets)
	}
	checkSettled(t, g, base, "passive")
	rules, err := nftJSON(ctx, tp.Proxy, "list", "chain", "inet", "ftpgate", "flow_log")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(rules); !bytes.Contains(b, []byte(`"group":4711`)) {
		t.Errorf("chain flow_log does not log to group 4711: %s", b)
	}
}
