//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAbort: Python's ftplib aborts a running download with ABOR sent as
// urgent data, through ftpgate, against every server: the client hears the
// transfer's end and ABOR's answer, ftpgate logs an aborted transfer, and
// the session goes on with a complete download.
func TestAbort(t *testing.T) {
	requirePrereqs(t, needVsftpd, needProftpd, needPureFTPd, needPython, needFtpgate)
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			tp := newTopology(t)
			srv := startServer(t, tp, kind)
			// Sparse and large: the transfer is still running when the
			// client aborts it, whatever the socket buffers hold.
			srv.addSparseFile(t, hugeFile, hugeSize)
			g := startGate(t, tp, gateConfig{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			local := filepath.Join(t.TempDir(), bigFile)
			out, transcript, err := runIn(ctx, tp.Client, python3Bin,
				ftplibArgs(gateV4(), modeEPSV, "abort-get", hugeFile, bigFile, local)...)
			if err != nil {
				t.Fatalf("ftplib abort-get: %v\nstdout: %s\ntranscript:\n%s", err, out, tail(transcript, 25))
			}
			var aborted struct {
				Event   string   `json:"event"`
				Replies []string `json:"replies"`
			}
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"aborted"`) {
					json.Unmarshal(sc.Bytes(), &aborted)
				}
			}
			if len(aborted.Replies) < 2 {
				t.Fatalf("no abort record in %s", out)
			}
			first := ""
			for _, r := range aborted.Replies {
				if !strings.HasPrefix(r, "1") {
					first = r
					break
				}
			}
			if !strings.HasPrefix(first, "426") && !strings.HasPrefix(first, "225") && !strings.HasPrefix(first, "226") {
				t.Fatalf("ABOR answered %q, want 426, 225 or 226 (replies %q)", first, aborted.Replies)
			}
			if last := aborted.Replies[len(aborted.Replies)-1]; !strings.HasPrefix(last, "200") {
				t.Fatalf("session out of step after ABOR: replies %q", aborted.Replies)
			}
			t.Logf("%s: ABOR replies %q", kind, aborted.Replies)
			if err := sameFile(local, bigFile); err != nil {
				t.Fatalf("download after ABOR: %v", err)
			}
			rec, err := g.logs.Wait(ctx, "transfer", func(r logRecord) bool { return r["aborted"] == true })
			if err != nil {
				t.Fatalf("no aborted transfer record: %v\n%s", err, g.logs.Tail(20))
			}
			if n, _ := rec["bytes"].(float64); n >= hugeSize {
				t.Fatalf("aborted transfer moved %v bytes: the whole file", n)
			}
		})
	}
}
