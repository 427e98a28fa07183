//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Issue #5's acceptance tests: ftpgate as the transparent edge gateway of an operator's
// default-drop router (harness_gateway_linux_test.go), with no FTP conntrack helper anywhere.
// The other gateway tests are gateway_interceptports_linux_test.go and
// gateway_allowdestinations_linux_test.go.

// TestGatewayTransfers: in redirect and in tproxy mode, clients behind the gateway address the
// server's own address and curl and lftp download and upload, passive (EPSV, PASV) and active
// (EPRT, PORT), over IPv4 and IPv6, with checksums on both ends. With ftpgate stopped the same
// transfers fail, and ftpgate's table (and tproxy's policy routing) is gone, the operator's
// ruleset unchanged. In tproxy mode, with --preserve-client-address, the server's log names
// the client's address instead of the gateway's.
func TestGatewayTransfers(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redirect", "tproxy"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, needVsftpd, needCurl, needLftp, needFtpgate)
			tp := newTopology(t)
			srv := startServer(t, tp, vsftpd)
			makeGateway(t, tp)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			before, err := nftShape(ctx, tp.Proxy)
			if err != nil || len(before) == 0 {
				t.Fatalf("the operator's ruleset: %q, %v", before, err)
			}
			g := startGate(t, tp, gatewayConfig(mode))
			if has, err := hasTable(ctx, tp.Proxy, "inet "+ownTable); err != nil || !has {
				t.Fatalf("ftpgate in %s mode created no table inet ftpgate for its interception rules (err %v)", mode, err)
			}
			if running, err := nftShape(ctx, tp.Proxy); err != nil {
				t.Fatal(err)
			} else if i := slices.IndexFunc(running, func(l string) bool { return strings.Contains(l, "helper") }); i >= 0 {
				t.Errorf("the gateway's ruleset uses a conntrack helper: %s", running[i])
			}
			if mode == "tproxy" {
				for _, fam := range []string{"-4", "-6"} {
					out, err := nsrun.Command(ctx, tp.Proxy, "ip", fam, "rule", "show").CombinedOutput()
					if err != nil || !strings.Contains(string(out), fmt.Sprintf("fwmark %#x lookup %d", tproxyMark, tproxyRouteTable)) {
						t.Errorf("ftpgate in tproxy mode: ip %s rule show has no tproxy rule (%v):\n%s", fam, err, out)
					}
				}
			}
			t.Run("pending", func(t *testing.T) { checkGatewayPending(ctx, t, tp) })
			t.Run("transfers", func(t *testing.T) { runGatewayMatrix(t, tp, srv, g, mode) })
			t.Run("pinholes-closed", func(t *testing.T) {
				if els := readPinholes(ctx, t, tp.Proxy, edgePinholeSets); len(els) != 0 {
					t.Errorf("after the transfers the operator's pinhole sets hold %v", els)
				}
				if els, err := nftMapElements(ctx, tp.Proxy, "inet", ownTable, ownDivert4, ownDivert6); err != nil || len(els) != 0 {
					t.Errorf("after the transfers ftpgate's divert maps hold %v (%v)", els, err)
				}
			})
			t.Run("ftpgate-stopped", func(t *testing.T) {
				if err := g.proc.Stop(15 * time.Second); err != nil {
					t.Fatalf("ftpgate stop: %v", err)
				}
				checkGatewayGone(ctx, t, tp, before)
				checkGatewayNeedsFtpgate(ctx, t, tp)
			})
			if mode == "tproxy" {
				t.Run("preserve-client-address", func(t *testing.T) {
					startGate(t, tp, gatewayConfig(mode, "--preserve-client-address"))
					checkClientAddressPreserved(ctx, t, tp, srv)
				})
			}
		})
	}
}

// checkGatewayPending drives sessions through the gateway step by step. While a passive
// transfer is pending, the passive reply carries the server's address; the operator's set
// holds exactly the pinhole (client, gateway's LAN address, port) and ftpgate's divert map
// exactly the flow client -> server:port, mapped to the gateway's LAN address and that port;
// once the client connected, both are gone. An active-mode client (PORT/EPRT naming its own
// address) needs neither: ftpgate dials it from the gateway's LAN address. Each download
// arrives whole.
func checkGatewayPending(ctx context.Context, t *testing.T, tp *topology) {
	cases := []struct {
		name string
		ep   endpoint
		verb string
		gw   string // the gateway's address toward the client
	}{
		{"ipv4-EPSV", viaGatewayV4(), "EPSV", proxyClientV4},
		{"ipv4-PASV", viaGatewayV4(), "PASV", proxyClientV4},
		{"ipv6-EPSV", viaGatewayV6(), "EPSV", proxyClientV6},
		{"ipv4-PORT", viaGatewayV4(), "PORT", proxyClientV4},
		{"ipv6-EPRT", viaGatewayV6(), "EPRT", proxyClientV6},
	}
	noElements := func(t *testing.T, when string) {
		t.Helper()
		if els := readPinholes(ctx, t, tp.Proxy, edgePinholeSets); len(els) != 0 {
			t.Errorf("%s, the operator's sets hold %v; want none", when, els)
		}
		if els, err := nftMapElements(ctx, tp.Proxy, "inet", ownTable, ownDivert4, ownDivert6); err != nil || len(els) != 0 {
			t.Errorf("%s, ftpgate's divert maps hold %v (%v); want none", when, els, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl := mustLogin(ctx, t, tp.Client, hostPort(tc.ep.Host, tc.ep.Port))
			if tc.verb == "PORT" || tc.verb == "EPRT" {
				ln, err := ctl.active(tc.verb)
				if err != nil {
					t.Fatalf("%v\n%s", err, ctl.Transcript())
				}
				defer ln.Close()
				noElements(t, "with an active-mode transfer pending")
				if _, err := ctl.startTransfer("RETR " + bigFile); err != nil {
					t.Fatalf("%v\n%s", err, ctl.Transcript())
				}
				_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
				data, err := ln.Accept()
				if err != nil {
					t.Fatalf("ftpgate's active-mode data connection: %v\n%s", err, ctl.Transcript())
				}
				defer data.Close()
				if from := data.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String(); from != tc.gw {
					t.Errorf("the active-mode data connection came from %s, want the gateway's %s", from, tc.gw)
				}
				if err := readDownload(data, bigFile, func() {}); err != nil {
					t.Fatal(err)
				}
				if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
					t.Errorf("RETR final reply %q (%v), want 226\n%s", r, err, ctl.Transcript())
				}
			} else {
				checkDiverted(ctx, t, tp, ctl, tc.ep, tc.verb, tc.gw, func() { noElements(t, "with the data connection up") })
			}
			if err := ctl.quit(); err != nil {
				t.Error(err)
			}
		})
	}
}

// checkDiverted sends PASV or EPSV through the gateway, checks the reply's address, the
// pinhole and the divert element, connects to the server's address and downloads (final reply
// 226), calling between() once the data connection is up.
func checkDiverted(ctx context.Context, t *testing.T, tp *topology, ctl *ftpCtl, ep endpoint, verb, gw string, between func()) {
	t.Helper()
	target := ctl.mustPassive(t, verb)
	if target.Addr().String() != ep.Host {
		t.Errorf("%s through the gateway: data address %s, want the server's %s", verb, target, ep.Host)
	}
	port := fmt.Sprint(target.Port())
	pinSet, divert := edgePinholeSets.forFamily(ep.v6()), ownDivert4
	if ep.v6() {
		divert = ownDivert6
	}
	if pins := readPinholes(ctx, t, tp.Proxy, edgePinholeSets); !isOnly(pins, pinSet, pinholeKey(ep.clientAddr(), gw, int(target.Port()))) {
		t.Errorf("while the %s transfer is pending the operator's sets hold %v; want exactly %s: %s . %s . %s",
			verb, pins, pinSet, ep.clientAddr(), gw, port)
	}
	diverts, err := nftMapElements(ctx, tp.Proxy, "inet", ownTable, ownDivert4, ownDivert6)
	if err != nil {
		t.Fatal(err)
	}
	wantKey, wantVal := []string{ep.clientAddr(), ep.Host, port}, []string{gw, port}
	if len(diverts) != 1 || !diverts[0].is(divert, wantKey, wantVal) || diverts[0].Timeout == 0 {
		t.Errorf("while the %s transfer is pending ftpgate's divert maps hold %v; want exactly %s: %s : %s with a timeout",
			verb, diverts, divert, strings.Join(wantKey, " . "), strings.Join(wantVal, " . "))
	}
	if err := retrieve(ctx, ctl, tp.Client, target, bigFile, between); err != nil {
		t.Fatal(err)
	}
}

// runGatewayMatrix runs, as parallel subtests, a download and an upload of the 10 MiB file
// with curl in every mode of both families and with lftp passive and active, all addressed to
// the server's own address, and checks the files on both ends and ftpgate's transfer records.
func runGatewayMatrix(t *testing.T, tp *topology, srv *ftpServer, g *gate, mode string) {
	c := curlClient{ns: tp.Client}
	type run struct {
		ep   endpoint
		m    dataMode
		lftp bool
	}
	var runs []run
	for _, m := range []dataMode{modeEPSV, modePASVIP, modeEPRT, modePORT} {
		runs = append(runs, run{ep: viaGatewayV4(), m: m})
	}
	for _, m := range []dataMode{modeEPSV, modeEPRT} {
		runs = append(runs, run{ep: viaGatewayV6(), m: m})
	}
	for _, ep := range []endpoint{viaGatewayV4(), viaGatewayV6()} {
		runs = append(runs, run{ep: ep, m: modeEPSV, lftp: true}, run{ep: ep, m: modePORT, lftp: true})
	}
	for _, r := range runs {
		fam := "ipv4"
		if r.ep.v6() {
			fam = "ipv6"
		}
		client, what := "curl", string(r.m)
		if r.lftp {
			client, what = "lftp", map[bool]string{true: "passive", false: "active"}[r.m == modeEPSV]
		}
		name := fmt.Sprintf("%s-%s-%s", client, fam, what)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			local := filepath.Join(t.TempDir(), bigFile)
			remote := strings.ToLower(fmt.Sprintf("up-%s-%s.bin", mode, name))
			if r.lftp {
				if err := runLftp(ctx, tp.Client, r.ep, lftpRun{Passive: r.m == modeEPSV, Transfers: 2},
					"get "+bigFile+" -o "+local, "put "+local+" -o "+remote); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := c.Get(ctx, r.ep, r.m, bigFile, local); err != nil {
					t.Fatal(tp.diagnose(err))
				}
				if err := c.Put(ctx, r.ep, r.m, local, remote); err != nil {
					t.Fatal(tp.diagnose(err))
				}
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Errorf("download: %v", err)
			}
			if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
				t.Errorf("upload, on the server: %v", err)
			}
			checkTransferLog(t, g, "STOR", remote, bigSize)
		})
	}
}

// checkGatewayGone checks, after ftpgate stopped, that its table and (tproxy) its policy
// routing are gone, and that the operator's ruleset is as it was before ftpgate started.
func checkGatewayGone(ctx context.Context, t *testing.T, tp *topology, before []string) {
	t.Helper()
	after, err := nftShape(ctx, tp.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffShapes(before, after); d != "" {
		t.Errorf("after ftpgate stopped, the gateway's ruleset is not what it was before ftpgate started:\n%s", d)
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := nsrun.Command(ctx, tp.Proxy, "ip", fam, "rule", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s rule show: %v: %s", fam, err, out)
		}
		if strings.Contains(string(out), fmt.Sprintf("lookup %d", tproxyRouteTable)) {
			t.Errorf("after ftpgate stopped, ip %s rule still has tproxy's rule:\n%s", fam, out)
		}
		out, _ = nsrun.Command(ctx, tp.Proxy, "ip", fam, "route", "show", "table", fmt.Sprint(tproxyRouteTable)).CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" && !strings.Contains(s, "does not exist") {
			t.Errorf("after ftpgate stopped, ip %s route table %d still holds:\n%s", fam, tproxyRouteTable, s)
		}
	}
}

// checkGatewayNeedsFtpgate runs downloads through the gateway with ftpgate stopped: each must
// fail, its control connection timing out in the operator's default-drop forward chain.
func checkGatewayNeedsFtpgate(ctx context.Context, t *testing.T, tp *topology) {
	t.Helper()
	c := curlClient{ns: tp.Client}
	runs := []struct {
		ep endpoint
		m  dataMode
	}{{viaGatewayV4(), modeEPSV}, {viaGatewayV4(), modePORT}, {viaGatewayV6(), modeEPSV}, {viaGatewayV6(), modeEPRT}}
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, r := range runs {
		wg.Go(func() {
			local := filepath.Join(t.TempDir(), fmt.Sprintf("%d-%s", i, bigFile))
			_, err := c.run(ctx, r.ep, r.m, "--connect-timeout", "3", "--max-time", "10", "-o", local, r.ep.url(bigFile))
			var exit *exec.ExitError
			switch {
			case err == nil:
				errs[i] = fmt.Errorf("curl %s to %s succeeded with ftpgate stopped", r.m, r.ep.Host)
			case !errors.As(err, &exit) || exit.ExitCode() != 28:
				errs[i] = fmt.Errorf("curl %s to %s with ftpgate stopped: %v; want a connect timeout (exit status 28)", r.m, r.ep.Host, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// checkClientAddressPreserved uploads through ftpgate in tproxy mode with
// --preserve-client-address and checks that the server's own log names the client, not the
// gateway, for the upload.
func checkClientAddressPreserved(ctx context.Context, t *testing.T, tp *topology, srv *ftpServer) {
	t.Helper()
	c := curlClient{ns: tp.Client}
	for _, ep := range []endpoint{viaGatewayV4(), viaGatewayV6()} {
		remote := "preserve-" + map[bool]string{false: "ipv4", true: "ipv6"}[ep.v6()] + ".bin"
		if err := c.Put(ctx, ep, modeEPSV, filepath.Join(suite.fixtures, bigFile), remote); err != nil {
			t.Fatal(tp.diagnose(err))
		}
		if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
			t.Errorf("upload, on the server: %v", err)
		}
		lines, err := serverLogLines(srv, "OK UPLOAD", "/"+remote)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 1 || !strings.Contains(lines[0], `Client "`+ep.clientAddr()+`"`) &&
			!strings.Contains(lines[0], `Client "::ffff:`+ep.clientAddr()+`"`) {
			t.Errorf("vsftpd's log of the upload of %s: %q; want one line naming the client %s", remote, lines, ep.clientAddr())
		}
	}
}
