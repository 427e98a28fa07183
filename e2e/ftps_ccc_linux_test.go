//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFTPSCCC: curl --ftp-ssl-ccc drops TLS from the control channel after login, in both of
// curl's CCC modes (passive: it only reads ftpgate's close_notify; active: it sends its own).
// With --tls-ccc allow ftpgate follows and keeps parsing the clear control channel (the
// protected transfer works); with refuse it answers 534, which curl ignores, going on over TLS.
//
// The allowing gateway does not require session reuse: in passive CCC mode curl frees its control
// TLS session without a shutdown, so OpenSSL drops the session and curl's data connection cannot
// resume it (with reuse required ftpgate refuses it, as it should).
func TestFTPSCCC(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	startServerTLS(t, tp, vsftpd, pki.Server)
	for i, policy := range []string{"allow", "refuse"} {
		t.Run(policy, func(t *testing.T) {
			flags := pki.gateFlags("--tls-ccc", policy)
			if policy == "allow" {
				flags = append(flags, "--tls-session-reuse", "optional")
			}
			g := startGate(t, tp, gateConfig{AdminListen: fmt.Sprintf("127.0.0.1:%d", 9121+i), Extra: flags})
			for _, mode := range []string{"passive", "active"} {
				t.Run("curl-ccc-"+mode, func(t *testing.T) {
					ctx, cancel := withTimeout(context.Background())
					defer cancel()
					local := filepath.Join(t.TempDir(), bigFile)
					curl := ftpsCurl{ns: tp.Client, ca: pki.GateCA, extra: []string{"--ftp-ssl-ccc", "--ftp-ssl-ccc-mode", mode}}
					before := len(g.logs.Records("control channel back in clear text (CCC)"))
					_, verbose, err := curl.run(ctx, gateV4(), modeEPSV, "-o", local, curl.url(gateV4(), bigFile))
					if err != nil {
						t.Fatal(err)
					}
					if err := sameFile(local, bigFile); err != nil {
						t.Fatalf("download: %v", err)
					}
					want := map[string]string{"allow": "\n< 200 CCC", "refuse": "\n< 534"}[policy]
					if !strings.Contains(string(verbose), want) {
						t.Fatalf("no %q in curl's output:\n%s", strings.TrimSpace(want), tail(verbose, 30))
					}
					if policy == "allow" {
						if err := waitRecords(ctx, g, "control channel back in clear text (CCC)", before+1); err != nil {
							t.Error(err)
						}
						return
					}
					time.Sleep(100 * time.Millisecond) // let a wrong record show
					if after := len(g.logs.Records("control channel back in clear text (CCC)")); after != before {
						t.Errorf("CCC refused, yet %d records say the control channel is clear", after-before)
					}
				})
			}
		})
	}
}
