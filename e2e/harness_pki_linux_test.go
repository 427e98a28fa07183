//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"

	"github.com/ftpgate/ftpgate/internal/testpki"
)

// ftpsPKI is one test's certificates, as PEM files in Dir:
//
//	gate-ca.pem          the operator's CA, which clients trust
//	gate.pem, gate.key   ftpgate's certificate for its client-side addresses (and, for
//	                     interception, the server's address as clients see it)
//	server-ca.pem        the servers' CA, which ftpgate trusts (--server-ca)
//	server.pem, .key     the servers' certificate for their addresses
type ftpsPKI struct {
	Dir                 string
	GateCA, Gate, GateK string
	ServerCA            string
	Server              *serverTLS

	gateCA, serverCA *testpki.CA
}

// newFTPSPKI generates the certificates of one test.
func newFTPSPKI(t testing.TB) *ftpsPKI {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &ftpsPKI{Dir: dir}
	p.gateCA = testpki.NewCA(t, "ftpgate e2e operator CA")
	p.serverCA = testpki.NewCA(t, "ftpgate e2e server CA")
	p.GateCA = p.writeCert(t, "gate-ca.pem", p.gateCA.Cert.Raw)
	p.ServerCA = p.writeCert(t, "server-ca.pem", p.serverCA.Cert.Raw)
	p.Gate, p.GateK = p.issue(t, p.gateCA, "gate", "ftpgate e2e", proxyClientV4, proxyClientV6, serverV4, serverV6)
	sc, sk := p.issue(t, p.serverCA, "server", "ftp server e2e", serverV4, serverV6)
	p.Server = &serverTLS{Cert: sc, Key: sk}
	return p
}

// issue writes name.pem and name.key: a server certificate from ca for the given addresses.
func (p *ftpsPKI) issue(t testing.TB, ca *testpki.CA, name, cn string, addrs ...string) (certFile, keyFile string) {
	t.Helper()
	c := ca.Issue(t, cn, addrs...)
	certFile = p.writeCert(t, name+".pem", c.Certificate[0])
	keyFile = filepath.Join(p.Dir, name+".key")
	testpki.WriteKey(t, keyFile, c.PrivateKey.(*ecdsa.PrivateKey))
	return certFile, keyFile
}

func (p *ftpsPKI) writeCert(t testing.TB, name string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.Dir, name)
	testpki.WriteCert(t, f, der)
	return f
}

// gateFlags are ftpgate's FTPS flags for this PKI, followed by more.
func (p *ftpsPKI) gateFlags(more ...string) []string {
	return append([]string{"--tls-cert", p.Gate, "--tls-key", p.GateK, "--server-ca", p.ServerCA}, more...)
}
