//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
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

	gateCA, serverCA *issuer
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newFTPSPKI generates the certificates of one test.
func newFTPSPKI(t testing.TB) *ftpsPKI {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &ftpsPKI{Dir: dir}
	p.gateCA = newIssuer(t, "ftpgate e2e operator CA")
	p.serverCA = newIssuer(t, "ftpgate e2e server CA")
	p.GateCA = p.writeCert(t, "gate-ca.pem", p.gateCA.cert.Raw)
	p.ServerCA = p.writeCert(t, "server-ca.pem", p.serverCA.cert.Raw)
	p.Gate, p.GateK = p.issue(t, p.gateCA, "gate", "ftpgate e2e", proxyClientV4, proxyClientV6, serverV4, serverV6)
	sc, sk := p.issue(t, p.serverCA, "server", "ftp server e2e", serverV4, serverV6)
	p.Server = &serverTLS{Cert: sc, Key: sk}
	return p
}

func newIssuer(t testing.TB, cn string) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{cert: cert, key: key}
}

// issue writes name.pem and name.key: a server certificate from ca for the given addresses.
func (p *ftpsPKI) issue(t testing.TB, ca *issuer, name, cn string, addrs ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, a := range addrs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(a))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = p.writeCert(t, name+".pem", der)
	keyFile = filepath.Join(p.Dir, name+".key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func (p *ftpsPKI) writeCert(t testing.TB, name string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.Dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// gateFlags are ftpgate's FTPS flags for this PKI, followed by more.
func (p *ftpsPKI) gateFlags(more ...string) []string {
	return append([]string{"--tls-cert", p.Gate, "--tls-key", p.GateK, "--server-ca", p.ServerCA}, more...)
}
