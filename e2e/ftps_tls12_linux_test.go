//go:build linux

package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestFTPSTLS12: protected transfers with TLS 1.2 on both legs (--tls-max-version 1.2).
//
// Server leg: vsftpd and proftpd (OpenSSL 3) resume the sessions of Go's TLS 1.2 tickets as they
// do its TLS 1.3 ones (TestFTPSInterop's default), so nothing needs pinning toward servers.
// Client leg: Go's TLS server resumes TLS 1.2 sessions only from tickets, never from session IDs.
// Python and lftp (GnuTLS) use tickets and resume; curl 7.88 turns tickets off (SSL_OP_NO_TICKET)
// and resumes TLS 1.2 only by session ID, so with session reuse required its data connection is
// refused. In TLS 1.3 (the default) curl resumes.
func TestFTPSTLS12(t *testing.T) {
	t.Parallel()
	for _, kind := range ftpsServerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, serverNeed(kind), needCurl, needLftp, needPython, needFtpgate)
			requireServerTLS(t, kind)
			tp := newTopology(t)
			pki := newFTPSPKI(t)
			srv := startServerTLS(t, tp, kind, pki.Server)
			g := startGate(t, tp, gateConfig{Extra: pki.gateFlags("--tls-max-version", "1.2")})
			t.Run("ftplib", func(t *testing.T) {
				ftpsGetPut(t, tp, srv, g, ftpsPy{ns: tp.Client, ca: pki.GateCA}, gateV4(), modePORT, "tls12-ftplib", true)
				checkTransferVersion(t, g, "up-tls12-ftplib.bin", "TLS 1.2")
			})
			t.Run("lftp", func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				remote := "up-tls12-lftp.bin"
				if err := runLftp(ctx, tp.Client, gateV4(), lftpRun{Passive: true, CA: pki.GateCA}, "put "+filepath.Join(suite.fixtures, bigFile)+" -o "+remote); err != nil {
					t.Fatal(err)
				}
				if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
					t.Fatal(err)
				}
				checkTransferTLS(t, g, remote, true, true)
				checkTransferVersion(t, g, remote, "TLS 1.2")
			})
			t.Run("curl-refused", func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				const refused = "data connection refused: its TLS session does not resume the control connection's"
				before := len(g.logs.Records(refused))
				err := ftpsCurl{ns: tp.Client, ca: pki.GateCA}.Get(ctx, gateV4(), modeEPSV, bigFile, filepath.Join(t.TempDir(), bigFile))
				if err == nil { // curl gives up when the data connection closes, before ftpgate's 522
					t.Fatal("curl's TLS 1.2 data connection was accepted without resuming the control session")
				}
				if err := waitRecords(ctx, g, refused, before+1); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

// checkTransferVersion checks the TLS version of both data legs in the transfer record of name.
func checkTransferVersion(t *testing.T, g *gate, name, version string) {
	t.Helper()
	found := false
	for _, r := range g.logs.Records("transfer") {
		if !strings.HasSuffix(r.str("path"), name) {
			continue
		}
		found = true
		for _, leg := range []string{"client_tls", "server_tls"} {
			if obj, ok := r[leg].(map[string]any); !ok || obj["version"] != version {
				t.Errorf("%s of %s: %v, want %s: %s", leg, name, r[leg], version, r)
			}
		}
	}
	if !found {
		t.Errorf("no transfer record of %s", name)
	}
}
