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

// FTPS end to end (issue #7): real servers requiring TLS with session reuse, real TLS clients,
// ftpgate terminating TLS on both legs in between. Every transfer is checked by checksum, and
// ftpgate's transfer record must name the TLS of each data leg. The other FTPS tests are the
// ftps_*_linux_test.go files, one feature each.

// TestFTPSInterop: vsftpd (ssl_enable, force_local_logins_ssl, force_local_data_ssl,
// require_ssl_reuse) and proftpd (mod_tls, TLSRequired on) behind ftpgate in mirror mode, for
// both server-side data modes; curl --ssl-reqd, lftp (ftp:ssl-force, ftp:ssl-protect-data) and
// Python's FTP_TLS (resuming the session on data connections) download and upload 10 MiB in
// passive and active modes, from IPv4 and IPv6 clients.
//
// curl is run in passive modes only: Debian 12's curl 7.88.1 cannot do active-mode FTPS at all
// (it fails with "sa_addr inet_ntop() failed with errno 97" after accepting the data connection,
// directly against vsftpd too). lftp and Python cover the active modes.
func TestFTPSInterop(t *testing.T) {
	t.Parallel()
	for _, kind := range ftpsServerKinds {
		for _, sm := range serverModes {
			t.Run(kind+"/server-"+sm, func(t *testing.T) {
				t.Parallel()
				requirePrereqs(t, serverNeed(kind), needCurl, needLftp, needPython, needFtpgate)
				requireServerTLS(t, kind)
				tp := newTopology(t)
				pki := newFTPSPKI(t)
				srv := startServerTLS(t, tp, kind, pki.Server)
				g := startGate(t, tp, gateConfig{ServerMode: sm, Extra: pki.gateFlags()})
				curl := ftpsCurl{ns: tp.Client, ca: pki.GateCA}
				py := ftpsPy{ns: tp.Client, ca: pki.GateCA}
				base := ftpsWarmUp(t, tp, g, curl)
				t.Run("load", func(t *testing.T) { ftpsLoad(t, tp, srv, g, pki, curl, py) })
				t.Run("settled", func(t *testing.T) { checkSettled(t, g, base, sm) })
			})
		}
	}
}

// ftpsLoad is TestFTPSInterop's transfers, as parallel subtests.
func ftpsLoad(t *testing.T, tp *topology, srv *ftpServer, g *gate, pki *ftpsPKI, curl ftpsCurl, py ftpsPy) {
	for _, tc := range []struct {
		name string
		c    getPutter
		ep   endpoint
		m    dataMode
	}{
		{"curl", curl, gateV4(), modeEPSV}, {"curl", curl, gateV4(), modePASV}, {"curl", curl, gateV6(), modeEPSV},
		{"ftplib", py, gateV4(), modeEPSV}, {"ftplib", py, gateV4(), modePORT}, {"ftplib", py, gateV6(), modeEPRT},
	} {
		fam := map[bool]string{false: "ipv4", true: "ipv6"}[tc.ep.v6()]
		t.Run(fmt.Sprintf("%s/%s/%s", tc.name, fam, tc.m), func(t *testing.T) {
			t.Parallel()
			tag := strings.ToLower(fmt.Sprintf("%s-%s-%s", tc.name, fam, tc.m))
			ftpsGetPut(t, tp, srv, g, tc.c, tc.ep, tc.m, tag, true)
		})
	}
	for _, tc := range []struct {
		ep      endpoint
		passive bool
	}{{gateV4(), true}, {gateV4(), false}, {gateV6(), false}} {
		name := map[bool]string{false: "ipv4", true: "ipv6"}[tc.ep.v6()] + "-" + map[bool]string{true: "passive", false: "active"}[tc.passive]
		t.Run("lftp/"+name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			local := filepath.Join(t.TempDir(), bigFile)
			remote := "up-lftp-" + name + ".bin"
			err := runLftp(ctx, tp.Client, tc.ep, lftpRun{Passive: tc.passive, CA: pki.GateCA, Transfers: 2},
				"get "+bigFile+" -o "+local, "put "+filepath.Join(suite.fixtures, bigFile)+" -o "+remote)
			if err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Errorf("lftp download: %v", err)
			}
			if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
				t.Errorf("lftp upload, on the server: %v", err)
			}
			checkTransferTLS(t, g, remote, true, true)
		})
	}
}

// ftpsWarmUp downloads one file over FTPS through ftpgate (so that whatever it creates lazily
// exists), waits until it is idle, and returns its resource counts as the baseline: idle means no
// session, the same goroutine and fd counts twice in a row, and two garbage collections since
// the warm-up (see warmUp and waitSettled on pooled splice pipes).
func ftpsWarmUp(t *testing.T, tp *topology, g *gate, curl ftpsCurl) gateVars {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := curl.Get(ctx, gateV4(), modeEPSV, oneFile, filepath.Join(t.TempDir(), oneFile)); err != nil {
		t.Fatalf("FTPS warm-up through ftpgate: %v", err)
	}
	v := idleBaseline(ctx, t, g)
	t.Logf("ftpgate baseline after the FTPS warm-up: %s", v)
	return v
}
