package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// sessionTLS is a session's FTPS state. The loop goroutine owns it, except
// the switch channels and the counters the reader goroutines set.
type sessionTLS struct {
	tickets  ticketBinding // which session tickets the client leg may resume
	cfg      *TLSConfig
	mode     ListenMode
	upstream string           // reverse mode's server, for the name its certificate must bear
	fallback time.Duration    // handshake timeout when cfg has none: the connect timeout
	implicit bool             // the client came through an implicit FTPS listener
	cert     *tls.Certificate // what this session presents; nil: no TLS toward the client

	// The client leg.
	clientCfg    *tls.Config
	rec          *recordConn // the client's socket under the control channel's TLS layer
	client       *tls.Conn   // the control channel's TLS layer; nil while it is clear
	clientState  *tlsState   // of the control channel, kept after CCC for the logs
	secured      bool        // AUTH (or implicit TLS) happened: PBSZ and PROT are allowed
	cleared      bool        // CCC returned the control channel to clear text
	pbsz         bool
	prot         byte // 'C' or 'P'; zero means 'C'
	clientSwitch chan net.Conn
	pipelined    atomic.Int64 // bytes the client reader held after AUTH or CCC

	// The server leg.
	serverCfg      *tls.Config
	server         *tls.Conn
	serverState    *tlsState
	serverPBSZ     bool
	serverProt     byte // what the server accepted; zero means 'C'
	serverSwitch   chan net.Conn
	authPending    atomic.Bool  // AUTH TLS sent to the server: its reader pauses after a 234
	serverBuffered atomic.Int64 // bytes the server reader held after that 234

	// The running transfer's data legs, for its log record.
	dataClient, dataServer *tlsState
}

// clientStream is what the client reader reads: the TLS layer, or the socket.
func (t *sessionTLS) clientStream(sock net.Conn) io.Reader {
	if t.client != nil {
		return t.client
	}
	return sock
}

// serverStream is what the server reader reads: the TLS layer, or the socket.
func (t *sessionTLS) serverStream(sock net.Conn) io.Reader {
	if t.server != nil {
		return t.server
	}
	return sock
}

func newSessionTLS(cfg *Config, implicit bool) *sessionTLS {
	t := &sessionTLS{
		cfg:          &cfg.TLS,
		mode:         cfg.Mode,
		upstream:     cfg.Upstream,
		fallback:     cfg.ConnectTimeout,
		implicit:     implicit,
		clientSwitch: make(chan net.Conn),
		serverSwitch: make(chan net.Conn),
	}
	if st := cfg.TLS.Certificate; st != nil {
		t.cert = st.Current() // pinned: a reload leaves this session as it is
	}
	return t
}

func (t *sessionTLS) handshakeTimeout() time.Duration {
	if d := t.cfg.HandshakeTimeout; d > 0 {
		return d
	}
	return t.fallback
}

// clientTLSAllowed reports whether this session's client may use TLS: there
// is a certificate and, in the transparent modes, the destination is one
// the operator chose to intercept.
func (t *sessionTLS) clientAllowed(dst netip.Addr) bool {
	if t.cert == nil {
		return false
	}
	if !t.mode.Transparent() {
		return true
	}
	return inPrefixes(t.cfg.Intercept, dst)
}

func (t *sessionTLS) clientConfig() (*tls.Config, error) {
	if t.clientCfg == nil {
		lo, hi := t.cfg.versions()
		cfg, err := newClientTLSConfig(t.cert, lo, hi, t.tickets)
		if err != nil {
			return nil, err
		}
		t.clientCfg = cfg
	}
	return t.clientCfg, nil
}

// serverConfig is the TLS client configuration toward server.
func (t *sessionTLS) serverConfig(server netip.Addr) *tls.Config {
	if t.serverCfg == nil {
		name := t.cfg.ServerName
		if name == "" {
			name = server.String()
			if t.mode == ModeReverse {
				if host, _, err := net.SplitHostPort(t.upstream); err == nil {
					name = host
				}
			}
		}
		t.serverCfg = newServerTLSConfig(t.cfg, name)
	}
	return t.serverCfg
}

// acceptImplicit runs the TLS handshake of a client that came through an
// implicit FTPS listener, before anything else is said.
func (s *session) acceptImplicit(ctx context.Context) error {
	if !s.ftps.implicit {
		return nil
	}
	return s.handshakeClient(ctx)
}

// handshakeClient puts TLS on the client's control connection, with
// ftpgate as the TLS server.
func (s *session) handshakeClient(ctx context.Context) error {
	t := s.ftps
	cfg, err := s.ftps.clientConfig()
	if err != nil {
		s.log.Error("client TLS configuration", zap.Error(err))
		return err
	}
	t.rec = &recordConn{Conn: s.ctl.client}
	tc := tls.Server(t.rec, cfg)
	lift := handshakeDeadline(s.ctl.client, s.ftps.handshakeTimeout())
	err = tc.HandshakeContext(ctx)
	lift()
	s.srv.obs.Observe(TLSHandshakeEvent{Leg: "client", Resumed: err == nil && tc.ConnectionState().DidResume, Err: err})
	if err != nil {
		s.log.Warn("client TLS handshake failed", zap.Bool("implicit", t.implicit), zap.Error(err))
		return fmt.Errorf("client TLS handshake: %w", err)
	}
	t.client, t.secured = tc, true
	t.clientState = stateOf(tc.ConnectionState())
	s.ctl.cw = rewrite.NewWriter(tc)
	s.log.Info("tls", zap.String("leg", "client"), zap.String("channel", "control"), zap.Bool("implicit", t.implicit),
		zap.String("sni", tc.ConnectionState().ServerName), zap.Object("tls", t.clientState))
	return nil
}

// connectServerTLS starts TLS toward an implicit FTPS server right after
// connecting.
func (s *session) connectServerTLS(ctx context.Context) error {
	if !s.cfg.TLS.ServerImplicit {
		return nil
	}
	return s.handshakeServer(ctx)
}

// handshakeServer puts TLS on the server's control connection, with
// ftpgate as the TLS client.
func (s *session) handshakeServer(ctx context.Context) error {
	t := s.ftps
	cfg := s.ftps.serverConfig(s.serverPeer.Addr())
	tc := tls.Client(s.ctl.server, cfg)
	lift := handshakeDeadline(s.ctl.server, s.ftps.handshakeTimeout())
	err := tc.HandshakeContext(ctx)
	lift()
	s.srv.obs.Observe(TLSHandshakeEvent{Leg: "server", Resumed: err == nil && tc.ConnectionState().DidResume, Err: err})
	if err != nil {
		s.ctl.server.Close() // at once: a failed handshake leaves nothing to say on it
		s.log.Error("server TLS handshake failed", zap.String("server_name", cfg.ServerName), zap.Error(err))
		return fmt.Errorf("server TLS handshake: %w", err)
	}
	t.server = tc
	t.serverState = stateOf(tc.ConnectionState())
	s.ctl.sw = rewrite.NewWriter(tc)
	fields := []zap.Field{zap.String("leg", "server"), zap.String("channel", "control"),
		zap.Bool("implicit", s.cfg.TLS.ServerImplicit), zap.String("server_name", cfg.ServerName),
		zap.Object("tls", t.serverState)}
	if cfg.InsecureSkipVerify {
		s.log.Warn("tls: server certificate NOT verified (insecure mode)", fields...)
	} else {
		s.log.Info("tls", fields...)
	}
	return nil
}

// afterGreeting starts TLS toward the server once it has greeted, when the
// mode requires it or the client came in with implicit TLS (mirror).
func (s *session) afterGreeting(ctx context.Context) error {
	if s.ftps.server != nil {
		return nil // implicit FTPS toward the server
	}
	mode := s.cfg.TLS.serverMode()
	if mode != ServerTLSRequire && !(mode == ServerTLSMirror && s.ftps.implicit) {
		return nil
	}
	rep, err := s.serverAUTH(ctx)
	if err != nil {
		return err
	}
	if rep != nil {
		s.log.Error("the FTP server refused AUTH TLS", zap.String("server_tls", string(mode)), zap.Stringer("reply", rep))
		s.ctl.replyf(421, "Service not available: the FTP server refused TLS.")
		return fmt.Errorf("server refused AUTH TLS with %d", rep.Code)
	}
	return nil
}

// serverAUTH upgrades the server's control connection: AUTH TLS, then the
// handshake. A refusal returns the server's reply; a failed handshake has
// told the client (421) and ends the session.
func (s *session) serverAUTH(ctx context.Context) (*rewrite.Reply, error) {
	t := s.ftps
	t.authPending.Store(true)
	rep, err := s.ctl.exchange(ctx, "AUTH", "TLS")
	t.authPending.Store(false)
	if err != nil {
		return nil, err
	}
	if rep.Code != 234 {
		s.log.Info("server refused AUTH TLS", zap.Stringer("reply", rep))
		return rep, nil
	}
	if n := t.serverBuffered.Load(); n > 0 {
		s.log.Warn("server sent data after 234 before the TLS handshake", zap.Int64("bytes", n))
		s.ctl.replyf(421, "Service not available: the FTP server broke the TLS upgrade.")
		return nil, fmt.Errorf("server sent %d bytes after 234", n)
	}
	if err := s.handshakeServer(ctx); err != nil {
		s.ctl.replyf(421, "Service not available: TLS toward the FTP server failed.")
		return nil, err
	}
	releaseReader(ctx, t.serverSwitch, t.server)
	return nil, nil
}

// handleSecurity answers AUTH, PBSZ, PROT and CCC. The client's side of TLS
// is ftpgate's own; the server's follows the server TLS mode.
func (s *session) handleSecurity(ctx context.Context, cmd rewrite.Command) error {
	switch cmd.Verb {
	case "AUTH":
		return s.handleAUTH(ctx, cmd)
	case "CCC":
		return s.handleCCC(ctx)
	case "PBSZ":
		return s.handlePBSZ(cmd)
	case "PROT":
		return s.handlePROT(ctx, cmd)
	}
	return s.ctl.replyf(502, "%s is not supported by this gateway.", cmd.Verb)
}

func (s *session) handleAUTH(ctx context.Context, cmd rewrite.Command) error {
	t := s.ftps
	pipelined := t.pipelined.Load()
	carryOn := func(code int, text string) error {
		releaseReader(ctx, t.clientSwitch, nil)
		return s.ctl.replyf(code, "%s", text)
	}
	if !s.ftps.clientAllowed(s.serverPeer.Addr()) {
		return carryOn(502, "AUTH is not supported by this gateway.")
	}
	if t.secured {
		return carryOn(503, "TLS is already in use.")
	}
	mech := strings.ToUpper(strings.TrimSpace(cmd.Arg))
	switch mech {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		return carryOn(504, "Security mechanism not supported; use AUTH TLS.")
	}
	if pipelined > 0 {
		s.log.Warn("client sent more after AUTH before the TLS handshake", zap.Int64("bytes", pipelined))
		s.ctl.replyf(421, "Nothing may follow AUTH before the TLS handshake.")
		return fmt.Errorf("client sent %d bytes after AUTH before the TLS handshake", pipelined)
	}
	if s.cfg.TLS.serverMode() == ServerTLSMirror && t.server == nil && s.ctl.server != nil { // no server yet: mirrorClientTLS
		rep, err := s.serverAUTH(ctx)
		if err != nil {
			return err
		}
		if rep != nil { // the client hears what the server said
			releaseReader(ctx, t.clientSwitch, nil)
			return s.ctl.reply(rep)
		}
	}
	if err := s.ctl.replyf(234, "AUTH %s successful.", mech); err != nil {
		return err
	}
	if err := s.handshakeClient(ctx); err != nil {
		return err
	}
	if mech == "SSL" || mech == "TLS-P" {
		// The pre-RFC 4217 mechanisms protect data connections too.
		t.pbsz, t.prot = true, 'P'
	}
	releaseReader(ctx, t.clientSwitch, t.client)
	return nil
}

func (s *session) handleCCC(ctx context.Context) error {
	t := s.ftps
	pipelined := t.pipelined.Load()
	if t.client == nil {
		releaseReader(ctx, t.clientSwitch, nil)
		return s.ctl.replyf(533, "CCC needs a protected control channel.")
	}
	if s.cfg.TLS.CCC != CCCAllow {
		releaseReader(ctx, t.clientSwitch, nil)
		s.log.Info("CCC refused by policy")
		return s.ctl.replyf(534, "CCC refused by policy: the control channel stays protected.")
	}
	if pipelined > 0 {
		s.log.Warn("client sent more after CCC before the TLS shutdown", zap.Int64("bytes", pipelined))
		s.ctl.replyf(421, "Nothing may follow CCC before the TLS shutdown.")
		return fmt.Errorf("client sent %d bytes after CCC before the TLS shutdown", pipelined)
	}
	if err := s.ctl.replyf(200, "CCC command successful: the control channel returns to clear text."); err != nil {
		return err
	}
	// ftpgate's close_notify ends its TLS; the client's, if it sends one, is
	// read by the client reader (cccConn), whose recordConn has read nothing
	// past the last TLS record.
	tc := t.client
	if err := tc.CloseWrite(); err != nil {
		s.log.Warn("CCC: cannot send close_notify", zap.Error(err))
		return fmt.Errorf("CCC: %w", err)
	}
	t.client, t.cleared = nil, true
	s.ctl.cw = rewrite.NewWriter(s.ctl.client)
	s.log.Info("control channel back in clear text (CCC)")
	releaseReader(ctx, t.clientSwitch, &cccConn{recordConn: t.rec, tls: tc})
	return nil
}

// awaitCloseNotify reads the peer's close_notify, which crypto/tls reports
// as io.EOF.
func awaitCloseNotify(c *tls.Conn) error {
	var b [64]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		return errDataAfterCCC
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return errDataAfterCCC
	}
	return err
}

func (s *session) handlePBSZ(cmd rewrite.Command) error {
	if !s.ftps.secured {
		return s.ctl.replyf(503, "PBSZ needs AUTH TLS first.")
	}
	s.ftps.pbsz = true
	if strings.TrimSpace(cmd.Arg) != "0" {
		return s.ctl.replyf(200, "PBSZ=0")
	}
	return s.ctl.replyf(200, "PBSZ 0 successful.")
}

func (s *session) handlePROT(ctx context.Context, cmd rewrite.Command) error {
	t := s.ftps
	if !t.secured {
		return s.ctl.replyf(503, "PROT needs AUTH TLS first.")
	}
	if !t.pbsz {
		return s.ctl.replyf(503, "PROT needs PBSZ first.")
	}
	var level byte
	switch strings.ToUpper(strings.TrimSpace(cmd.Arg)) {
	case "C":
		level = 'C'
	case "P":
		level = 'P'
	case "S", "E":
		return s.ctl.replyf(536, "Protection level not supported; use C or P.")
	default:
		return s.ctl.replyf(504, "Unknown protection level; use C or P.")
	}
	if s.cfg.TLS.serverMode() == ServerTLSMirror && t.server != nil {
		rep, err := s.setServerProt(ctx, level)
		if err != nil {
			return err
		}
		if rep != nil { // mirrored: the client hears the server's refusal
			return s.ctl.reply(rep)
		}
	}
	t.prot = level
	if level == 'P' {
		return s.ctl.replyf(200, "Protection set to Private.")
	}
	return s.ctl.replyf(200, "Protection set to Clear.")
}

// setServerProt asks the server for protection level (after PBSZ 0 if not
// sent yet). A refusal returns the server's reply.
func (s *session) setServerProt(ctx context.Context, level byte) (*rewrite.Reply, error) {
	t := s.ftps
	if !t.serverPBSZ {
		rep, err := s.ctl.exchange(ctx, "PBSZ", "0")
		if err != nil {
			return nil, err
		}
		if rep.Code/100 != 2 {
			return rep, nil
		}
		t.serverPBSZ = true
	}
	rep, err := s.ctl.exchange(ctx, "PROT", string(level))
	if err != nil {
		return nil, err
	}
	if rep.Code/100 != 2 {
		return rep, nil
	}
	t.serverProt = level
	return nil, nil
}

// wantServerProt is the protection level the server's data connections
// should have: P when TLS toward the server is required, the client's own
// when mirroring.
func (t *sessionTLS) wantServerProt() byte {
	if t.cfg.serverMode() == ServerTLSRequire {
		return 'P'
	}
	return prot(t.prot)
}

func prot(b byte) byte {
	if b == 0 {
		return 'C'
	}
	return b
}

// ensureServerProt sets the server's protection level before a data
// connection is negotiated, if it differs from what it should be.
func (s *session) ensureServerProt(ctx context.Context) error {
	t := s.ftps
	if t.server == nil {
		return nil
	}
	want := s.ftps.wantServerProt()
	if prot(t.serverProt) == want {
		return nil
	}
	rep, err := s.setServerProt(ctx, want)
	if err != nil {
		return err
	}
	if rep != nil {
		s.log.Warn("server refused the protection level", zap.String("prot", string(want)), zap.Stringer("reply", rep))
		return legErrorf("the server refused PROT %c with %d", want, rep.Code)
	}
	return nil
}

// tlsFeatures adds to a FEAT reply what ftpgate itself offers the client:
// AUTH TLS, PBSZ and PROT (and CCC when allowed), whatever the server lists.
func (t *sessionTLS) features(rep *rewrite.Reply, server netip.Addr) *rewrite.Reply {
	if rep == nil || rep.Code != 211 || !t.clientAllowed(server) {
		return rep
	}
	feats := []string{" AUTH TLS", " PBSZ", " PROT"}
	if t.cfg.CCC == CCCAllow {
		feats = append(feats, " CCC")
	}
	if len(rep.Lines) < 2 {
		return rewrite.NewReply(211, append(append([]string{"Features:"}, feats...), "End")...)
	}
	last := len(rep.Lines) - 1
	lines := make([]string, 0, len(rep.Lines)+len(feats))
	lines = append(lines, rep.Lines[:last]...)
	lines = append(lines, feats...)
	lines = append(lines, rep.Lines[last])
	return &rewrite.Reply{Code: rep.Code, Lines: lines}
}

// tlsSessionFields are the TLS facts of a session's end record.
func (t *sessionTLS) sessionFields() []zap.Field {
	if t.clientState == nil && t.serverState == nil {
		return nil
	}
	fields := []zap.Field{tlsField("client_tls", t.clientState), tlsField("server_tls", t.serverState)}
	if t.cleared {
		fields = append(fields, zap.Bool("ccc", true))
	}
	return fields
}
