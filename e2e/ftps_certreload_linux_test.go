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
