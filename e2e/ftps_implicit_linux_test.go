//go:build linux

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

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
		ftpsGetPut(t, tp, srv, g, curlClient{ns: tp.Client}, gateV4(), modePORT, "implicit-upstream-clear", false)
	})
}
