package main

import (
	"strings"
	"testing"
)

func TestCredentialsDirectoryInPaths(t *testing.T) {
	t.Setenv(credentialsVar, "/run/credentials/ftpgate.service")
	p := writeConfig(t, "upstream: a:21\ntls:\n  cert: ${CREDENTIALS_DIRECTORY}/cert.pem\n  key: $CREDENTIALS_DIRECTORY/key.pem\nserver_tls:\n  ca: /etc/ssl/ca.pem\n")
	fc, err := newRunFlags().parse([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if fc.TLS.Cert != "/run/credentials/ftpgate.service/cert.pem" || fc.TLS.Key != "/run/credentials/ftpgate.service/key.pem" || fc.ServerTLS.CA != "/etc/ssl/ca.pem" {
		t.Errorf("cert %q, key %q, ca %q", fc.TLS.Cert, fc.TLS.Key, fc.ServerTLS.CA)
	}
	// Flags too.
	fc, err = newRunFlags().parse([]string{"--upstream", "a:21", "--server-ca", "${CREDENTIALS_DIRECTORY}/ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if fc.ServerTLS.CA != "/run/credentials/ftpgate.service/ca.pem" {
		t.Errorf("server ca %q", fc.ServerTLS.CA)
	}
}

func TestCredentialsDirectoryErrors(t *testing.T) {
	tests := []struct{ name, env, path, want string }{
		{"unset", "", "${CREDENTIALS_DIRECTORY}/key.pem", "CREDENTIALS_DIRECTORY is not set"},
		{"another variable", "/run/c", "${HOME}/key.pem", "not $HOME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(credentialsVar, tt.env)
			_, err := newRunFlags().parse([]string{"--upstream", "a:21", "--tls-key", tt.path, "--tls-cert", "/c.pem"})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "tls key") {
				t.Fatalf("error %v, want one about the tls key with %q", err, tt.want)
			}
		})
	}
}
