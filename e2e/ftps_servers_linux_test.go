//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverTLS is how a test server speaks FTPS: TLS required for logins and data, and data
// connections that must resume the control connection's TLS session (vsftpd
// require_ssl_reuse=YES; proftpd's default without NoSessionReuseRequired).
type serverTLS struct {
	Cert, Key string // PEM files
	Implicit  bool   // TLS from connect, on port 990 (no AUTH TLS)
}

// vsftpd adds the FTPS settings to a vsftpd configuration.
func (tc *serverTLS) vsftpd(conf string) string {
	if tc == nil {
		return conf
	}
	if tc.Implicit {
		conf = strings.Replace(conf, "listen_port=21\n", "listen_port=990\n", 1)
	}
	return conf + fmt.Sprintf(`ssl_enable=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
implicit_ssl=%s
rsa_cert_file=%s
rsa_private_key_file=%s
ssl_ciphers=HIGH
ssl_request_cert=NO
`, map[bool]string{true: "YES", false: "NO"}[tc.Implicit], tc.Cert, tc.Key)
}

// proftpd adds mod_tls (from proftpd-mod-crypto, unpacked beside proftpd) to a proftpd
// configuration; dir holds its TLS log.
func (tc *serverTLS) proftpd(conf, dir string) string {
	if tc == nil {
		return conf
	}
	opts := ""
	if tc.Implicit {
		conf = strings.Replace(conf, "\nPort 21\n", "\nPort 990\n", 1)
		opts = "  TLSOptions UseImplicitSSL\n"
	}
	return conf + fmt.Sprintf(`ModulePath %s
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSLog %s
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired on
  TLSECCertificateFile %s
  TLSECCertificateKeyFile %s
  TLSVerifyClient off
  TLSRenegotiate none
%s</IfModule>
`, proftpdModules, filepath.Join(dir, "tls.log"), tc.Cert, tc.Key, opts)
}

// proftpdModules is where scripts/install-test-deps.sh unpacked proftpd-mod-crypto (mod_tls).
const proftpdModules = "/opt/ftpgate-e2e/proftpd-tls/usr/lib/proftpd"

// requireServerTLS skips (or in strict mode fails) a test of an FTPS server whose TLS support is
// not installed: proftpd's mod_tls comes from a package of its own.
func requireServerTLS(t testing.TB, kind string) {
	t.Helper()
	if kind != proftpd {
		return
	}
	if _, err := os.Stat(filepath.Join(proftpdModules, "mod_tls.so")); err != nil {
		msg := fmt.Sprintf("e2e prerequisites missing: proftpd mod_tls (%v); %s", err, installHint)
		if strict() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// probe is the port and banner startServer waits for: an implicit FTPS server says nothing in
// clear text.
func (tc *serverTLS) probe() (int, string) {
	if tc != nil && tc.Implicit {
		return 990, ""
	}
	return 21, "220"
}

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
