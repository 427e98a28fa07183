package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testpki"
	"go.uber.org/zap/zaptest/observer"
)

// FTPS test fixtures: a throw-away PKI, TLS on the fake server and on the
// gateway, and FTPS clients.

// testPKI is a throwaway certificate authority.
type testPKI struct {
	ca   *testpki.CA
	pool *x509.CertPool
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	ca := testpki.NewCA(t, name)
	return &testPKI{ca: ca, pool: ca.Pool()}
}

// leaf issues a certificate for the loopback addresses ftpgate and the fake
// server use.
func (p *testPKI) leaf(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	return p.ca.Issue(t, cn, "127.0.0.1", "127.0.0.2", "ftp.test")
}

// tlsSetup is the PKI of one TLS test: ftpgate's certificate (clientPKI,
// which the client trusts) and the fake server's (serverPKI, which ftpgate
// trusts).
type tlsSetup struct {
	clientPKI, serverPKI *testPKI
	gateCert             *tls.Certificate
	store                *CertStore
}

func newTLSSetup(t *testing.T) *tlsSetup {
	cp, sp := newTestPKI(t, "gate CA"), newTestPKI(t, "server CA")
	gc := cp.leaf(t, "ftpgate")
	return &tlsSetup{clientPKI: cp, serverPKI: sp, gateCert: gc, store: NewCertStore(gc)}
}

// fakeTLS makes the fake server speak FTPS like vsftpd with
// force_local_logins_ssl, force_local_data_ssl and require_ssl_reuse.
func (ts *tlsSetup) fakeTLS(t *testing.T, f *fakeFTP) {
	cert := ts.serverPKI.leaf(t, "fake server")
	f.configure(func(f *fakeFTP) {
		f.tlsCfg = &tls.Config{Certificates: []tls.Certificate{*cert}}
		f.requireTLS, f.requireReuse = true, true
	})
}

// gateTLS gives ftpgate its certificate and trust in the fake server's CA.
func (ts *tlsSetup) gateTLS(c *Config, mode ServerTLSMode) {
	c.TLS.Certificate = ts.store
	c.TLS.Server = mode
	c.TLS.ServerCAs = ts.serverPKI.pool
}

// clientConfig is a TLS client configuration that trusts ftpgate; its
// session cache makes data connections resume the control session.
func (ts *tlsSetup) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ts.clientPKI.pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

// startTLS upgrades the client's control connection after a 234.
func (c *client) startTLS(cfg *tls.Config) *tls.Conn {
	c.t.Helper()
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("client TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.c, c.tp = tc, textproto.NewConn(tc)
	return tc
}

// dialFTPS connects, upgrades with AUTH TLS, logs in and protects data.
func (h *harness) dialFTPS(cfg *tls.Config) *client { return h.dialFTPSAs("", "u", cfg) }

// dialFTPSAs logs in over FTPS as user from the loopback source address src
// ("" for the kernel's choice).
func (h *harness) dialFTPSAs(src, user string, cfg *tls.Config) *client {
	h.t.Helper()
	cl := h.dialOnly(src)
	cl.expect(220)
	cl.cmd(234, "AUTH TLS")
	cl.startTLS(cfg)
	cl.cmd(331, "USER %s", user)
	cl.cmd(230, "PASS secret-password")
	cl.cmd(200, "PBSZ 0")
	cl.cmd(200, "PROT P")
	return cl
}

// xfer runs one transfer over a new data connection in mode, with TLS on it
// when dataTLS is set, and expects final as the closing reply. It returns
// what was downloaded.
func (c *client) xfer(mode, command string, data []byte, dataTLS *tls.Config, final int) []byte {
	c.t.Helper()
	var conn net.Conn
	var ln net.Listener
	switch mode {
	case "PASV", "EPSV":
		conn = dialData(c.t, c.passive(mode))
	default:
		ln = c.active(mode)
		defer ln.Close()
	}
	c.cmd(150, "%s", command)
	if ln != nil {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		var err error
		if conn, err = ln.Accept(); err != nil {
			c.t.Fatalf("accepting the active data connection: %v", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if dataTLS != nil {
		tc := tls.Client(conn, dataTLS)
		if err := tc.Handshake(); err != nil && final/100 == 2 {
			c.t.Fatalf("data TLS handshake: %v", err)
		}
		conn = tc
	}
	var got []byte
	if data != nil {
		conn.Write(data)
		conn.Close()
	} else {
		got, _ = io.ReadAll(conn)
	}
	c.expect(final)
	return got
}

// checkTLSTransferLogs checks that both transfer records name each data
// leg's TLS version and cipher suite.
func checkTLSTransferLogs(t *testing.T, logs *observer.ObservedLogs, serverTLS bool) {
	t.Helper()
	recs := transferRecords(t, logs, 2)
	for _, r := range recs {
		m := r.ContextMap()
		cli, ok := m["client_tls"].(map[string]any)
		if !ok || !strings.HasPrefix(fmt.Sprint(cli["version"]), "TLS 1.") || cli["cipher"] == "" || cli["resumed"] != true {
			t.Errorf("transfer record's client_tls = %v, want a resumed TLS session with version and cipher", m["client_tls"])
		}
		srv := m["server_tls"]
		if _, isObj := srv.(map[string]any); isObj != serverTLS {
			t.Errorf("transfer record's server_tls = %v, want TLS: %v", srv, serverTLS)
		}
	}
	ends := logs.FilterMessage("tls").All()
	if len(ends) == 0 {
		t.Error(`no "tls" record for the control handshakes`)
	}
}
