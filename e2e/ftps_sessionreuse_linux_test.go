//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFTPSSessionReuseRefused: with session reuse required (the default), a client whose
// protected data connection does not resume the control connection's TLS session (Python's
// FTP_TLS as it comes) is refused, and ftpgate logs the refusal; the same client resuming the
// session transfers.
func TestFTPSSessionReuseRefused(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needPython, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	startServerTLS(t, tp, vsftpd, pki.Server)
	g := startGate(t, tp, gateConfig{Extra: pki.gateFlags()})
	for _, m := range []dataMode{modeEPSV, modePORT} {
		t.Run(string(m), func(t *testing.T) {
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			before := len(g.logs.Records("data connection refused: its TLS session does not resume the control connection's"))
			local := filepath.Join(t.TempDir(), bigFile)
			res, transcript, err := ftpsPython(ctx, tp.Client, pki.GateCA, gateV4(), m, false, "get", bigFile, local)
			if err != nil {
				t.Fatal(err)
			}
			if res.Error == "" || !strings.Contains(res.Error, "522") {
				t.Fatalf("unresumed data connection: result %+v, want a 522 error\ntranscript:\n%s", res, transcript)
			}
			if st, err := os.Stat(local); err == nil && st.Size() > 0 {
				t.Errorf("the refused client received %d bytes", st.Size())
			}
			if err := waitRecords(ctx, g, "data connection refused: its TLS session does not resume the control connection's", before+1); err != nil {
				t.Fatal(err)
			}
			recs := g.logs.Records("data connection refused: its TLS session does not resume the control connection's")
			if lvl := recs[len(recs)-1].str("level"); lvl != "warn" {
				t.Errorf("refusal logged at %q, want warn: %s", lvl, recs[len(recs)-1])
			}

			res, transcript, err = ftpsPython(ctx, tp.Client, pki.GateCA, gateV4(), m, true, "get", bigFile, local)
			if err != nil {
				t.Fatal(err)
			}
			if res.Error != "" || !res.DataResumed {
				t.Fatalf("resuming client: %+v\ntranscript:\n%s", res, transcript)
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Errorf("resuming client's download: %v", err)
			}
		})
	}
}
