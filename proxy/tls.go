package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// FTPS (RFC 4217) on both legs. ftpgate terminates TLS: toward the client it
// is the TLS server (with the operator's certificate), toward the server the
// TLS client; in between it reads the clear control channel as it always
// does, so pinholes stay exact for FTPS too. The two legs are independent:
// a clear-text client may reach a TLS-only server, a TLS client a clear one.

// ServerTLSMode is how ftpgate protects the connections toward the server.
type ServerTLSMode string

// Server TLS modes.
const (
	// ServerTLSMirror uses TLS toward the server when the client uses it
	// (AUTH TLS, or an implicit listener), and protects data connections
	// toward the server as the client protects its own (PROT).
	ServerTLSMirror ServerTLSMode = "mirror"
	// ServerTLSRequire always uses TLS toward the server, control and data,
	// even for a clear-text client: the WAN leg is protected whatever the
	// client does.
	ServerTLSRequire ServerTLSMode = "require"
	// ServerTLSOff never uses TLS toward the server: TLS ends at ftpgate.
	ServerTLSOff ServerTLSMode = "off"
)

// CCCPolicy says what ftpgate does with a client's CCC (clear command
// channel, RFC 4217 §6).
type CCCPolicy string

// CCC policies.
const (
	// CCCRefuse answers CCC with 534: the control channel stays protected.
	CCCRefuse CCCPolicy = "refuse"
	// CCCAllow lets the client's control channel return to clear text after
	// a TLS close_notify exchange; ftpgate keeps parsing it. The server leg
	// is not affected.
	CCCAllow CCCPolicy = "allow"
)

// TLSConfig is FTPS on both legs. The zero value means no TLS toward
// clients (AUTH is refused with 502 and TLS features are hidden from FEAT)
// and TLS toward servers only when the client uses it, which without a
// certificate it cannot.
type TLSConfig struct {
	// Certificate is what ftpgate presents to clients. Nil means clients
	// cannot use TLS. Swapping the store's certificate (on SIGHUP, say)
	// affects sessions that start afterwards; a running session keeps the
	// certificate it started with.
	Certificate *CertStore
	// ImplicitListen are control listen addresses where TLS starts at
	// connect (implicit FTPS, port 990 by convention). Reverse mode only.
	ImplicitListen []string
	// MinVersion and MaxVersion bound the TLS versions on both legs; zero
	// means TLS 1.2 and TLS 1.3 (which is preferred when both sides have it).
	MinVersion, MaxVersion uint16
	// DataReuseOptional accepts a client's protected data connection that
	// does not resume the session's control TLS session. By default such a
	// connection is refused (522) and logged: reuse binds a data connection
	// to its control connection and defeats data-connection theft.
	DataReuseOptional bool
	// CCC is what a client's CCC gets; the zero value means CCCRefuse.
	CCC CCCPolicy
	// Intercept, in the transparent modes, are the destinations whose
	// sessions may use TLS: ftpgate then terminates the client's TLS with
	// Certificate, which is interception and needs clients that trust the
	// operator's certificate. Other destinations get 502 to AUTH, as without
	// a certificate. Ignored in reverse mode, where every session may use TLS.
	Intercept []netip.Prefix

	// Server is the TLS mode toward servers; the zero value means
	// ServerTLSMirror.
	Server ServerTLSMode
	// ServerImplicit makes TLS start at connect toward the server (implicit
	// FTPS, an ftps:// upstream). It needs a Server mode other than off.
	ServerImplicit bool
	// ServerCAs verify server certificates; nil means the system's roots.
	ServerCAs *x509.CertPool
	// ServerName is the name a server certificate must carry; empty means
	// the upstream's host (or, in the transparent modes, the server's
	// address).
	ServerName string
	// ServerInsecure skips verifying server certificates. Every session
	// that relies on it logs a warning.
	ServerInsecure bool
	// HandshakeTimeout bounds each TLS handshake; zero means
	// Config.ConnectTimeout.
	HandshakeTimeout time.Duration
}

// validate checks the TLS settings against the proxy mode.
func (c TLSConfig) validate(mode ListenMode) error {
	for _, v := range []uint16{c.MinVersion, c.MaxVersion} {
		if v != 0 && (v < tls.VersionTLS10 || v > tls.VersionTLS13) {
			return fmt.Errorf("tls: version %#x: want TLS 1.0 to 1.3", v)
		}
	}
	if c.MinVersion != 0 && c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return fmt.Errorf("tls: minimum version %s above maximum %s", tls.VersionName(c.MinVersion), tls.VersionName(c.MaxVersion))
	}
	if c.Certificate != nil && c.Certificate.Current() == nil {
		return errors.New("tls: certificate store holds no certificate")
	}
	if len(c.ImplicitListen) > 0 {
		if c.Certificate == nil {
			return errors.New("tls: implicit FTPS listeners need a certificate")
		}
		if mode.Transparent() {
			return fmt.Errorf("tls: implicit FTPS listeners work in reverse mode, not %s", mode)
		}
	}
	for _, l := range c.ImplicitListen {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return fmt.Errorf("tls: implicit listen address %q: %w", l, err)
		}
	}
	switch c.CCC {
	case "", CCCRefuse, CCCAllow:
	default:
		return fmt.Errorf("tls: CCC policy %q: want allow or refuse", c.CCC)
	}
	switch c.Server {
	case "", ServerTLSMirror, ServerTLSRequire, ServerTLSOff:
	default:
		return fmt.Errorf("tls: server TLS mode %q: want mirror, require or off", c.Server)
	}
	if c.ServerImplicit && c.Server == ServerTLSOff {
		return errors.New("tls: an implicit FTPS (ftps://) upstream needs TLS toward the server, not --server-tls off")
	}
	if len(c.Intercept) > 0 {
		if !mode.Transparent() {
			return errors.New("tls: interception destinations are for the transparent modes")
		}
		if c.Certificate == nil {
			return errors.New("tls: interception needs a certificate")
		}
		for _, p := range c.Intercept {
			if !p.IsValid() {
				return fmt.Errorf("tls: interception destination %v is not a valid network", p)
			}
		}
	}
	return nil
}

func (c TLSConfig) serverMode() ServerTLSMode {
	if c.Server == "" {
		return ServerTLSMirror
	}
	return c.Server
}

func (c TLSConfig) versions() (lo, hi uint16) {
	lo, hi = c.MinVersion, c.MaxVersion
	if lo == 0 {
		lo = tls.VersionTLS12
	}
	if hi == 0 {
		hi = tls.VersionTLS13
	}
	return lo, hi
}

// CertStore holds the certificate ftpgate presents to clients and lets it be
// replaced while sessions run.
type CertStore struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewCertStore returns a store holding c.
func NewCertStore(c *tls.Certificate) *CertStore {
	s := &CertStore{}
	s.cert.Store(c)
	return s
}

// Store replaces the certificate: sessions that start afterwards present c.
func (s *CertStore) Store(c *tls.Certificate) { s.cert.Store(c) }

// Current returns the certificate new sessions present.
func (s *CertStore) Current() *tls.Certificate { return s.cert.Load() }

// alpnFTP is the ALPN protocol ID of FTP (IANA registry).
const alpnFTP = "ftp"

// controlMark is written into every session ticket ftpgate issues to a
// client, naming the control session it belongs to.
const controlMark = "ftpgate-control:"

// ticketBinding ties the session tickets of one session's client leg to
// control sessions. Tickets are encrypted with one key for the whole process
// and carry the mark of the control session that issued them; a connection
// may resume a ticket only if accept says yes for its issuer. That lets a
// client that keeps one TLS session cache for all its connections (rclone,
// many Go and Java clients) open data connections on any of its control
// connections, while a ticket from another client or from a closed control
// connection gets a full handshake, which data connections refuse (522).
type ticketBinding struct {
	key    [32]byte          // the process's ticket key
	issuer uint64            // the session this configuration serves
	accept func(uint64) bool // whether a ticket issued by that session may be resumed here
}

// markFor is the mark of session id's tickets.
func markFor(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(controlMark), id)
}

// issuerOf is the session a ticket's mark names.
func issuerOf(extra [][]byte) (uint64, bool) {
	for _, e := range extra {
		if rest, ok := bytes.CutPrefix(e, []byte(controlMark)); ok && len(rest) == 8 {
			return binary.BigEndian.Uint64(rest), true
		}
	}
	return 0, false
}

// newClientTLSConfig is the TLS server configuration of one session's
// client leg, control and data alike. It pins cert, so a certificate reload
// leaves the session as it was, and it binds session tickets to control
// sessions as b says.
func newClientTLSConfig(cert *tls.Certificate, lo, hi uint16, b ticketBinding) (*tls.Config, error) {
	mark := markFor(b.issuer)
	c := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   lo,
		MaxVersion:   hi,
	}
	c.SetSessionTicketKeys([][32]byte{b.key})
	c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = slices.DeleteFunc(ss.Extra, func(e []byte) bool { return bytes.HasPrefix(e, []byte(controlMark)) })
		ss.Extra = append(ss.Extra, mark)
		return c.EncryptTicket(cs, ss)
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := c.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		if id, ok := issuerOf(ss.Extra); !ok || (id != b.issuer && (b.accept == nil || !b.accept(id))) {
			return nil, nil // not resumable here: a full handshake, which data connections refuse
		}
		return ss, nil
	}
	// ALPN "ftp" is selected when the client offers it. A Go server with
	// NextProtos refuses clients that offer only other protocols, so the
	// list is set only for clients that offer ftp.
	withALPN := c.Clone()
	withALPN.NextProtos = []string{alpnFTP}
	c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(h.SupportedProtos, alpnFTP) {
			return withALPN, nil
		}
		return nil, nil
	}
	return c, nil
}

// newServerTLSConfig is the TLS client configuration of one session's
// server leg, control and data alike. Its session cache belongs to the
// session and is keyed by name, so data connections resume the control
// connection's TLS session, as servers with require_ssl_reuse (vsftpd) or
// without NoSessionReuseRequired (proftpd) demand.
func newServerTLSConfig(c *TLSConfig, name string) *tls.Config {
	lo, hi := c.versions()
	return &tls.Config{
		ServerName:         name,
		RootCAs:            c.ServerCAs,
		InsecureSkipVerify: c.ServerInsecure,
		MinVersion:         lo,
		MaxVersion:         hi,
		NextProtos:         []string{alpnFTP},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
}
