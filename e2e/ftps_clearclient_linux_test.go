//go:build linux

package e2e

import (
	"strings"
	"testing"
)

// TestFTPSClearClientRequire: clear-text clients (curl, Python ftplib) reach a server that
// requires TLS for logins and data, through --server-tls require: the WAN leg is protected, the
// client leg is not.
func TestFTPSClearClientRequire(t *testing.T) {
	t.Parallel()
	for _, kind := range ftpsServerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, serverNeed(kind), needCurl, needPython, needFtpgate)
			requireServerTLS(t, kind)
			tp := newTopology(t)
			pki := newFTPSPKI(t)
			srv := startServerTLS(t, tp, kind, pki.Server)
			g := startGate(t, tp, gateConfig{ServerMode: "client", Extra: []string{"--server-tls", "require", "--server-ca", pki.ServerCA}})
			for _, c := range []ftpClient{curlClient{ns: tp.Client}, ftplibClient{tp.Client}} {
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
