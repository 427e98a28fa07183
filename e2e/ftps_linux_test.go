//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FTPS end to end (issue #7): real servers requiring TLS with session reuse, real TLS clients,
// ftpgate terminating TLS on both legs in between. Every transfer is checked by checksum, and
// ftpgate's transfer record must name the TLS of each data leg.

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
	for _, kind := range []string{vsftpd, proftpd} {
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
			err := lftpFTPS(ctx, tp.Client, pki.GateCA, tc.ep, tc.passive,
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

// getPutter is a client that downloads and uploads.
type getPutter interface {
	Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error
	Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error
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

// TestFTPSImplicitClient: a client of ftpgate's implicit FTPS listener (curl ftps://, TLS from
// connect) reaches an explicit-TLS server: mirroring the client, ftpgate sends AUTH TLS.
func TestFTPSImplicitClient(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	srv := startServerTLS(t, tp, vsftpd, pki.Server)
	g := startGate(t, tp, gateConfig{Extra: pki.gateFlags("--implicit-listen", hostPort(proxyClientV4, 990))})
	curl := ftpsCurl{ns: tp.Client, ca: pki.GateCA, implicit: true}
	for _, m := range []dataMode{modeEPSV, modePASV} { // passive only: see TestFTPSInterop on curl
		t.Run(string(m), func(t *testing.T) {
			ftpsGetPut(t, tp, srv, g, curl, gateV4(), m, "implicit-"+strings.ToLower(string(m)), true)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, leg := range []string{"client", "server"} {
		if _, err := g.logs.Wait(ctx, "tls", func(r logRecord) bool {
			return r.str("leg") == leg && r.str("channel") == "control" && (leg == "server" || r["implicit"] == true)
		}); err != nil {
			t.Errorf("no %s-leg control TLS record: %v", leg, err)
		}
	}
}

// TestFTPSClearClientRequire: clear-text clients (curl, Python ftplib) reach a server that
// requires TLS for logins and data, through --server-tls require: the WAN leg is protected, the
// client leg is not.
func TestFTPSClearClientRequire(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{vsftpd, proftpd} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, serverNeed(kind), needCurl, needPython, needFtpgate)
			requireServerTLS(t, kind)
			tp := newTopology(t)
			pki := newFTPSPKI(t)
			srv := startServerTLS(t, tp, kind, pki.Server)
			g := startGate(t, tp, gateConfig{ServerMode: "client", Extra: []string{"--server-tls", "require", "--server-ca", pki.ServerCA}})
			for _, c := range []ftpClient{curlClient{tp.Client}, ftplibClient{tp.Client}} {
				for _, m := range []dataMode{modeEPSV, modePORT} {
					t.Run(c.Name()+"/"+string(m), func(t *testing.T) {
						t.Parallel()
						ftpsGetPut(t, tp, srv, g, c, gateV4(), m, strings.ToLower("clear-"+c.Name()+"-"+string(m)), false)
					})
				}
			}
		})
	}
}

// TestFTPSImplicitServer: --upstream ftps://server:990 speaks implicit FTPS toward the server,
// for an explicit-FTPS client (mirror) and for a clear-text one (require).
func TestFTPSImplicitServer(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	pki.Server.Implicit = true
	srv := startServerTLS(t, tp, vsftpd, pki.Server)
	up := "ftps://" + hostPort(serverV4, 990)
	t.Run("explicit-client", func(t *testing.T) {
		g := startGate(t, tp, gateConfig{Upstream: up, Extra: pki.gateFlags()})
		ftpsGetPut(t, tp, srv, g, ftpsCurl{ns: tp.Client, ca: pki.GateCA}, gateV4(), modeEPSV, "implicit-upstream-tls", true)
	})
	t.Run("clear-client", func(t *testing.T) {
		g := startGate(t, tp, gateConfig{Upstream: up, AdminListen: "127.0.0.1:9122",
			Extra: []string{"--server-tls", "require", "--server-ca", pki.ServerCA}})
		ftpsGetPut(t, tp, srv, g, curlClient{tp.Client}, gateV4(), modePORT, "implicit-upstream-clear", false)
	})
}

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

// TestFTPSCertificateReload: SIGHUP with a new certificate on disk: a new connection sees it,
// and a transfer running during the reload completes intact.
func TestFTPSCertificateReload(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	startServerTLS(t, tp, vsftpd, pki.Server)
	g := startGate(t, tp, gateConfig{Extra: pki.gateFlags()})
	first := presentedSerial(t, tp, pki)

	// A slow download (10 MiB at 2 MB/s) is running while the certificate changes.
	ctx, cancel := withTimeout(context.Background())
	defer cancel()
	local := filepath.Join(t.TempDir(), bigFile)
	slow := ftpsCurl{ns: tp.Client, ca: pki.GateCA, extra: []string{"--limit-rate", "2M"}}
	done := make(chan error, 1)
	go func() { done <- slow.Get(ctx, gateV4(), modeEPSV, bigFile, local) }()
	if _, err := g.logs.Wait(ctx, "tls", func(r logRecord) bool { return r.str("leg") == "client" }); err != nil {
		t.Fatalf("the slow download's session did not start: %v", err)
	}
	time.Sleep(time.Second) // well into the transfer

	c2, k2 := pki.issue(t, pki.gateCA, "gate-renewed", "ftpgate e2e renewed", proxyClientV4, proxyClientV6)
	for _, mv := range [][2]string{{c2, pki.Gate}, {k2, pki.GateK}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := g.logs.Wait(ctx, "SIGHUP: certificate reloaded; new sessions present it", nil); err != nil {
		t.Fatal(err)
	}
	second := presentedSerial(t, tp, pki)
	if second == first {
		t.Errorf("a new connection after SIGHUP still sees certificate %s", first)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(tp.diagnose(err))
		}
	case <-ctx.Done():
		t.Fatal("the download running during the reload did not finish")
	}
	if err := sameFile(local, bigFile); err != nil {
		t.Fatalf("download running during the reload: %v", err)
	}
	if g.proc.Exited() {
		t.Fatal("ftpgate exited on SIGHUP")
	}
}

// presentedSerial connects to ftpgate from the client namespace, upgrades with AUTH TLS and
// returns the serial number of the certificate ftpgate presents (verified against the gate CA).
func presentedSerial(t *testing.T, tp *topology, pki *ftpsPKI) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialIn(ctx, tp.Client, "tcp", hostPort(proxyClientV4, 21))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		t.Fatalf("greeting %q %v", line, err)
	}
	fmt.Fprintf(c, "AUTH TLS\r\n")
	if line, err = r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "234") {
		t.Fatalf("AUTH TLS: %q %v", line, err)
	}
	pem, err := os.ReadFile(pki.GateCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: proxyClientV4})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS with ftpgate: %v", err)
	}
	fmt.Fprintf(tc, "QUIT\r\n")
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

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
	for _, kind := range []string{vsftpd, proftpd} {
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
				if err := lftpFTPS(ctx, tp.Client, pki.GateCA, gateV4(), true, "put "+filepath.Join(suite.fixtures, bigFile)+" -o "+remote); err != nil {
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
