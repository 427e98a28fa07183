package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/internal/testpki"
	"github.com/ftpgate/ftpgate/proxy"
)

// writeCert writes a self-signed certificate and its key as PEM files into
// dir and returns their paths.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	ca := testpki.NewCA(t, cn)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	testpki.WriteCert(t, certFile, ca.Cert.Raw)
	testpki.WriteKey(t, keyFile, ca.Key)
	return certFile, keyFile
}

func TestTLSSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "gate")
	ca, _ := writeCert(t, dir, "server-ca")
	p := writeConfig(t, `
listen: ["198.18.0.1:21"]
upstream: ftps://ftp.example:9990
tls:
  cert: `+cert+`
  key: `+key+`
  implicit_listen: ["198.18.0.1:990"]
  min_version: "1.3"
  session_reuse: optional
  ccc: allow
server_tls:
  mode: require
  ca: `+ca+`
  name: ftp.internal
`)
	fc, err := newRunFlags().parse([]string{"--config", p, "--tls-ccc", "refuse", "--server-tls-insecure"})
	if err != nil {
		t.Fatal(err)
	}
	pc, _, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	c := pc.TLS
	switch {
	case c.Certificate == nil || c.Certificate.Current() == nil || c.Certificate.Current().Leaf.Subject.CommonName != "gate":
		t.Errorf("certificate not loaded: %+v", c.Certificate)
	case pc.Upstream != "ftp.example:9990" || !c.ServerImplicit:
		t.Errorf("upstream %q implicit %v: want ftp.example:9990 with implicit TLS", pc.Upstream, c.ServerImplicit)
	case len(c.ImplicitListen) != 1 || c.MinVersion != tls.VersionTLS13 || !c.DataReuseOptional:
		t.Errorf("client-side settings lost: %+v", c)
	case c.CCC != proxy.CCCRefuse:
		t.Errorf("CCC %q: the flag should override the file", c.CCC)
	case c.Server != proxy.ServerTLSRequire || c.ServerCAs == nil || c.ServerName != "ftp.internal" || !c.ServerInsecure:
		t.Errorf("server-side settings: %+v", c)
	}
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct {
		in, addr string
		implicit bool
		err      string
	}{
		{"198.18.1.2:21", "198.18.1.2:21", false, ""},
		{"ftps://198.18.1.2", "198.18.1.2:990", true, ""},
		{"ftps://[fd00::2]:9990", "[fd00::2]:9990", true, ""},
		{"ftp://ftp.example", "ftp.example:21", false, ""},
		{"ftps://ftp.example/", "ftp.example:990", true, ""},
		{"https://ftp.example", "", false, "scheme"},
		{"ftps://user@ftp.example", "", false, "nothing else"},
		{"ftps://ftp.example/pub", "", false, "nothing else"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			addr, implicit, err := parseUpstream(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil || addr != tc.addr || implicit != tc.implicit {
				t.Fatalf("got %q %v %v, want %q %v", addr, implicit, err, tc.addr, tc.implicit)
			}
		})
	}
}

func TestTLSSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "gate")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--upstream", "198.18.1.2:21"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", cert}, "both"},
		{"missing cert file", []string{"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", key}, "none.pem"},
		{"key of another cert", []string{"--tls-cert", cert, "--tls-key", notPEM}, "tls certificate"},
		{"bad version", []string{"--tls-min-version", "1.1"}, "want 1.2 or 1.3"},
		{"bad reuse", []string{"--tls-session-reuse", "sometimes"}, "session reuse"},
		{"bad CCC", []string{"--tls-ccc", "maybe"}, "CCC policy"},
		{"bad server mode", []string{"--server-tls", "always"}, "server TLS mode"},
		{"CA without certificates", []string{"--server-ca", notPEM}, "no PEM certificate"},
		{"implicit listener without certificate", []string{"--implicit-listen", ":990"}, "certificate"},
		{"ftps upstream with TLS off", []string{"--upstream", "ftps://198.18.1.2", "--server-tls", "off"}, "ftps://"},
		{"intercept in reverse mode", []string{"--tls-cert", cert, "--tls-key", key, "--tls-intercept", "198.18.1.0/24"}, "transparent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc, err := newRunFlags().parse(append(append([]string{}, base...), tc.args...))
			if err == nil {
				_, _, err = fc.settings()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
