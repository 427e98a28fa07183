package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
)

// tlsConfig is the client side of FTPS in the config file ("tls:").
type tlsConfig struct {
	Cert           string   `yaml:"cert"`            // PEM certificate (chain) presented to clients
	Key            string   `yaml:"key"`             // its PEM private key
	ImplicitListen []string `yaml:"implicit_listen"` // implicit FTPS listen addresses (port 990 by convention)
	MinVersion     string   `yaml:"min_version"`     // 1.2 (default) or 1.3
	MaxVersion     string   `yaml:"max_version"`     // 1.3 (default) or 1.2
	SessionReuse   string   `yaml:"session_reuse"`   // required (default) or optional
	CCC            string   `yaml:"ccc"`             // refuse (default) or allow
	Intercept      []string `yaml:"intercept"`       // transparent modes: destination networks whose TLS is intercepted
}

// serverTLSConfig is the server side of FTPS in the config file
// ("server_tls:").
type serverTLSConfig struct {
	Mode     string `yaml:"mode"`     // mirror (default), require or off
	CA       string `yaml:"ca"`       // PEM bundle that verifies servers (default: the system's roots)
	Name     string `yaml:"name"`     // name server certificates must carry (default: the upstream's host)
	Insecure bool   `yaml:"insecure"` // do not verify server certificates (logged loudly)
}

// addTLSFlags registers the FTPS flags of `ftpgate run`.
func addTLSFlags(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.TLS.Cert, "tls-cert", "", "PEM certificate `file` presented to FTPS clients (reloaded on SIGHUP)")
	fs.StringVar(&fc.TLS.Key, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.Func("implicit-listen", "implicit FTPS listen `address`, TLS from connect (repeat; port 990 by convention)", func(s string) error {
		fc.TLS.ImplicitListen = append(fc.TLS.ImplicitListen, s)
		return nil
	})
	fs.StringVar(&fc.TLS.MinVersion, "tls-min-version", "", "lowest TLS `version` on both legs: 1.2 (default) or 1.3")
	fs.StringVar(&fc.TLS.MaxVersion, "tls-max-version", "", "highest TLS `version` on both legs: 1.3 (default) or 1.2")
	fs.StringVar(&fc.TLS.SessionReuse, "tls-session-reuse", "", "client data connections must resume the control TLS session: required (default) or optional")
	fs.StringVar(&fc.TLS.CCC, "tls-ccc", "", "a client's CCC (clear command channel): refuse (default, 534) or allow")
	fs.Func("tls-intercept", "transparent modes: destination `networks` whose FTPS ftpgate terminates with --tls-cert (interception)", listFlag(&fc.TLS.Intercept))
	fs.StringVar(&fc.ServerTLS.Mode, "server-tls", "", "TLS toward servers: mirror (what the client did; default), require or off")
	fs.StringVar(&fc.ServerTLS.CA, "server-ca", "", "PEM CA bundle `file` that verifies server certificates (default: the system's roots)")
	fs.StringVar(&fc.ServerTLS.Name, "server-name", "", "`name` server certificates must carry (default: the upstream's host)")
	fs.BoolVar(&fc.ServerTLS.Insecure, "server-tls-insecure", false, "do not verify server certificates (logged loudly; for tests only)")
}

// tlsOverrides lets the FTPS flags that were given override the file.
func tlsOverrides(over func(string, func()), fc fileConfig, base *fileConfig) {
	over("tls-cert", func() { base.TLS.Cert = fc.TLS.Cert })
	over("tls-key", func() { base.TLS.Key = fc.TLS.Key })
	over("implicit-listen", func() { base.TLS.ImplicitListen = fc.TLS.ImplicitListen })
	over("tls-min-version", func() { base.TLS.MinVersion = fc.TLS.MinVersion })
	over("tls-max-version", func() { base.TLS.MaxVersion = fc.TLS.MaxVersion })
	over("tls-session-reuse", func() { base.TLS.SessionReuse = fc.TLS.SessionReuse })
	over("tls-ccc", func() { base.TLS.CCC = fc.TLS.CCC })
	over("tls-intercept", func() { base.TLS.Intercept = fc.TLS.Intercept })
	over("server-tls", func() { base.ServerTLS.Mode = fc.ServerTLS.Mode })
	over("server-ca", func() { base.ServerTLS.CA = fc.ServerTLS.CA })
	over("server-name", func() { base.ServerTLS.Name = fc.ServerTLS.Name })
	over("server-tls-insecure", func() { base.ServerTLS.Insecure = fc.ServerTLS.Insecure })
}

// tlsSettings fills pc.TLS from the file and flags: it loads the
// certificate, key and CA bundle, and turns an ftps:// upstream into an
// address with implicit TLS toward the server.
func (fc fileConfig) tlsSettings(pc *proxy.Config) error {
	t, s := fc.TLS, fc.ServerTLS
	up, implicit, err := parseUpstream(pc.Upstream)
	if err != nil {
		return err
	}
	pc.Upstream = up
	c := proxy.TLSConfig{
		ImplicitListen: t.ImplicitListen,
		Server:         proxy.ServerTLSMode(s.Mode),
		ServerImplicit: implicit,
		ServerName:     s.Name,
		ServerInsecure: s.Insecure,
		CCC:            proxy.CCCPolicy(t.CCC),
	}
	switch {
	case t.Cert != "" && t.Key != "":
		cert, err := loadCertificate(t.Cert, t.Key)
		if err != nil {
			return err
		}
		c.Certificate = proxy.NewCertStore(cert)
	case t.Cert != "" || t.Key != "":
		return errors.New("tls: give both --tls-cert and --tls-key")
	}
	if c.MinVersion, err = parseTLSVersion("minimum", t.MinVersion); err != nil {
		return err
	}
	if c.MaxVersion, err = parseTLSVersion("maximum", t.MaxVersion); err != nil {
		return err
	}
	switch t.SessionReuse {
	case "", "required":
	case "optional":
		c.DataReuseOptional = true
	default:
		return fmt.Errorf("tls: session reuse %q: want required or optional", t.SessionReuse)
	}
	if c.Intercept, err = parsePrefixes("tls intercept destination", t.Intercept); err != nil {
		return err
	}
	if s.CA != "" {
		pem, err := os.ReadFile(s.CA)
		if err != nil {
			return fmt.Errorf("server CA bundle: %w", err)
		}
		c.ServerCAs = x509.NewCertPool()
		if !c.ServerCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("server CA bundle %s: no PEM certificate in it", s.CA)
		}
	}
	pc.TLS = c
	return nil
}

// parseUpstream accepts host:port, ftp://host[:port] and ftps://host[:port]
// (implicit FTPS, port 990 by default).
func parseUpstream(s string) (addr string, implicit bool, err error) {
	if !strings.Contains(s, "://") {
		return s, false, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false, fmt.Errorf("upstream %q: %w", s, err)
	}
	port := "21"
	switch u.Scheme {
	case "ftp":
	case "ftps":
		port, implicit = "990", true
	default:
		return "", false, fmt.Errorf("upstream %q: scheme %q, want ftp or ftps", s, u.Scheme)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Hostname() == "" {
		return "", false, fmt.Errorf("upstream %q: want scheme://host[:port] and nothing else", s)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return net.JoinHostPort(u.Hostname(), port), implicit, nil
}

func parseTLSVersion(what, s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: %s version %q: want 1.2 or 1.3", what, s)
}

// loadCertificate reads a PEM certificate chain and its key.
func loadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func certFields(c *tls.Certificate) []zap.Field {
	if c == nil || c.Leaf == nil {
		return nil
	}
	return []zap.Field{
		zap.String("subject", c.Leaf.Subject.String()),
		zap.String("serial", c.Leaf.SerialNumber.String()),
		zap.Time("not_after", c.Leaf.NotAfter),
	}
}
