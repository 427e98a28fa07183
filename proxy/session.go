package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// session is one client's control connection and its server counterpart.
// Everything but the two reader goroutines and the data relay runs on the
// session's loop goroutine, so its fields need no locks.
type session struct {
	srv  *Server
	cfg  *Config // the configuration when the session began; a reload does not change it
	id   uint64
	log  *zap.Logger // grows server and user fields as they become known
	base *zap.Logger // session and client only, for the session-end record

	// dialCtx is the context the upstream dial runs in: run's parent, not
	// the session's own (see dialServer).
	dialCtx context.Context

	ctl *control // the control channel: both connections and their framing

	clientPeer, clientLocal netip.AddrPort
	serverPeer, serverLocal netip.AddrPort
	// clientHop is the control connection's transport peer: the client, or
	// the load balancer whose PROXY header named clientPeer. Pinholes admit
	// the hop, since that is the address the kernel sees.
	clientHop netip.AddrPort
	// clientSide is our address toward the client for data connections:
	// the control connection's local address, except in tproxy mode, where
	// that is the server's address. Invalid means the kernel's choice.
	clientSide netip.Addr

	user       string
	cwd        string    // the server's working directory, when known (paths.go)
	loginStart time.Time // the latest USER or REIN, or the session's start: the login timeout counts from it
	warns      *rate.Limiter
	warnsLost  int    // peer-misbehaviour warnings not logged for the rate limit
	result     string // the session record's result when not told by its error ("refused")
	loggedIn   bool
	epsvAll    bool
	noEPSV     bool // the server refused EPSV: use PASV
	noEPRT     bool // the server refused EPRT: use PORT
	ascii      bool // the server accepted TYPE A: transfers are ASCII (for records)
	plan       *dataPlan
	asked      *dataPlan // the plan whose server reply is still to be read (answersAhead, datasetup.go)
	start      time.Time
	bytesUp    int64 // data bytes client -> server
	bytesDown  int64 // data bytes server -> client

	ftps *sessionTLS // FTPS on either leg (tls_control.go)
	seen sessionSeen // what snapshots read (snapshot.go)
}

func newSession(srv *Server, c *net.TCPConn, implicit bool) *session {
	cfg := srv.config()
	now := time.Now()
	s := &session{
		srv:         srv,
		id:          srv.nextID.Add(1),
		clientPeer:  addrPortOf(c.RemoteAddr()),
		clientHop:   addrPortOf(c.RemoteAddr()),
		clientLocal: addrPortOf(c.LocalAddr()),
		start:       now,
		loginStart:  now,
		warns:       rate.NewLimiter(rate.Every(time.Second), warnBurst),
		cfg:         cfg,
		ftps:        newSessionTLS(cfg, implicit),
	}
	s.base = sessionLogger(srv.log, zap.Uint64("session", s.id), zap.Stringer("client", s.clientPeer))
	s.ctl = newControl(c, cfg.Limits.Reader(), cfg.IdleTimeout, s.base)
	s.ftps.tickets = ticketBinding{key: srv.ticketKey, issuer: s.id, accept: s.sharesTickets}
	s.setLog(s.base)
	return s
}

// setLog sets the session's logger, which grows fields as the session
// learns its server and user; the control channel logs with it too.
func (s *session) setLog(l *zap.Logger) {
	s.log = l
	s.ctl.log = l
}

// run drives the session until it ends and closes everything it opened.
func (s *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.dialCtx = parent
	if !s.begin() {
		return
	}
	defer s.srv.live.remove(s)
	if !s.admit() {
		s.ctl.client.Close()
		s.logEnd(nil)
		return
	}
	defer s.srv.adm.leave(s.clientPeer.Addr())
	s.oobInline()
	// The start phase (connect.go): the server, its greeting and, when
	// ftpgate greets the client itself (explicit mode, lazy connect), the
	// login up to the server's choice. It starts the control readers.
	err := s.open(ctx)
	if err == nil {
		err = s.loop(ctx)
	}
	cancel()
	s.end(err)
}

// oobInline has the client's urgent data (Telnet Synch) arrive in line.
func (s *session) oobInline() {
	if err := setOOBInline(s.ctl.client); err != nil {
		s.log.Debug("SO_OOBINLINE", zap.Error(err))
	}
}

// end closes the session's connections, waits for its readers and records
// its end.
func (s *session) end(err error) {
	s.closePlan()
	s.ctl.client.Close()
	if s.ctl.server != nil { // nil when no server was reached
		s.ctl.server.Close()
	}
	s.ctl.readers.Wait()
	s.logEnd(err)
}

func (s *session) logEnd(err error) {
	fields := []zap.Field{
		zap.Stringer("server", s.serverPeer),
		zap.String("user", s.user),
		zap.Duration("duration", time.Since(s.start)),
		zap.Int64("bytes_in", s.bytesUp),
		zap.Int64("bytes_out", s.bytesDown),
	}
	fields = append(fields, s.ftps.sessionFields()...)
	if s.warnsLost > 0 {
		fields = append(fields, zap.Int("warnings_suppressed", s.warnsLost))
	}
	if err != nil && !errors.Is(err, errSessionEnd) {
		fields = append(fields, zap.String("reason", err.Error()))
	}
	s.base.Info("session end", fields...)
	ev := SessionEndEvent{Session: s.id, Time: time.Now(), Mode: s.cfg.Mode, Client: s.clientPeer,
		Server: s.serverPeer, User: s.user, Duration: time.Since(s.start), BytesUp: s.bytesUp, BytesDown: s.bytesDown,
		Result: s.result}
	if err != nil && !errors.Is(err, errSessionEnd) {
		ev.Reason = err.Error()
	}
	if ev.Result == "" {
		ev.Result = endResult(err)
	}
	s.srv.obs.Observe(ev)
}

// endResult classifies how a session ended for its record.
func endResult(err error) string {
	var te interface{ Timeout() bool }
	switch {
	case err == nil || errors.Is(err, errSessionEnd):
		return "ok"
	case errors.Is(err, errTimeout) || errors.As(err, &te) && te.Timeout():
		return "timeout"
	}
	return "error"
}

// deny reports a refusal the client has been (or is being) answered for.
func (s *session) deny(kind, verb, rule, reason string, code int) {
	s.srv.obs.Observe(DenialEvent{Session: s.id, Time: time.Now(), Client: s.clientPeer, User: s.user,
		Kind: kind, Verb: verb, Rule: rule, Reason: reason, Code: code})
}

// begin reads a PROXY header if one is expected, records the session's
// start and lists it live; false: the session is over (its client closed).
// It is run's prologue, kept out of run's frame (see nextCommand).
func (s *session) begin() bool {
	if err := s.proxyHeader(); err != nil {
		s.log.Warn("PROXY header refused", zap.Error(err))
		s.deny("protocol", "", "proxy-protocol", "PROXY header refused: "+err.Error(), 0)
		s.ctl.client.Close()
		return false
	}
	s.log.Info("session start", zap.Stringer("local", s.clientLocal))
	start := SessionStartEvent{Session: s.id, Time: s.start, Mode: s.cfg.Mode, Client: s.clientPeer, Local: s.clientLocal}
	if s.clientHop != s.clientPeer {
		start.Via = s.clientHop
	}
	s.srv.obs.Observe(start)
	s.seen.lastActive.Store(time.Now().UnixNano())
	s.publish()
	s.srv.live.add(s)
	return true
}

// nextCommand returns the next client command, enforcing the idle and login
// timeouts. A server reply meanwhile, when no command is outstanding, is
// dropped (a 421 ends the session).
func (s *session) nextCommand(ctx context.Context) *cmdEvent {
	if len(s.ctl.queued) > 0 {
		return s.ctl.dequeue()
	}
	t := s.commandTimer()
	defer t.Stop()
	for {
		select {
		case ev := <-s.ctl.cmds:
			s.seen.lastActive.Store(time.Now().UnixNano())
			return ev
		case ev := <-s.ctl.replies:
			if err := s.unaskedReply(ev); err != nil {
				return &cmdEvent{err: err}
			}
		case <-t.C:
			return &cmdEvent{err: s.idleTimeout()}
		case <-s.srv.draining:
			return &cmdEvent{err: s.drained()}
		case <-ctx.Done():
			return &cmdEvent{err: ctx.Err()}
		}
	}
}

// The helpers of nextCommand hold what is rare out of its frame: an idle
// session's goroutine waits in nextCommand, and a small frame there lets
// the runtime shrink that goroutine's stack.

// unaskedReply handles a server reply that came while no command was
// outstanding; a non-nil error ends the session.
func (s *session) unaskedReply(ev replyEvent) error {
	if ev.err != nil {
		return s.ctl.serverBroke(ev.err)
	}
	if ev.reply.Code == 421 { // the server closes the session: the one reply a server may send unasked
		s.ctl.reply(ev.reply)
		return fmt.Errorf("server closing: %w", errSessionEnd)
	}
	if s.asked != nil { // asked, not waited for (answersAhead)
		return s.serverAnsweredAhead(ev.reply)
	}
	// Relaying it would answer the client's next command with it and shift
	// every later reply by one.
	s.peerWarn("server reply while no command was outstanding: dropped", zap.Int("code", ev.reply.Code))
	return nil
}

// commandTimer runs until the login or idle timeout of the next command.
func (s *session) commandTimer() *time.Timer {
	timeout := s.cfg.IdleTimeout
	if !s.loggedIn {
		timeout = min(timeout, time.Until(s.loginStart.Add(s.cfg.LoginTimeout)))
	}
	return s.ctl.waitTimer(max(timeout, 0))
}

// drained tells the client the service is shutting down.
func (s *session) drained() error {
	s.ctl.replyf(421, "Service shutting down.")
	return fmt.Errorf("shutdown: %w", errSessionEnd)
}

// idleTimeout tells the client its login or idle time is over.
func (s *session) idleTimeout() error {
	if !s.loggedIn {
		s.ctl.replyf(421, "Login timeout.")
		return fmt.Errorf("login: %w", errTimeout)
	}
	s.ctl.replyf(421, "Idle timeout.")
	return fmt.Errorf("idle: %w", errTimeout)
}

// loop reads and handles client commands until the session ends.
func (s *session) loop(ctx context.Context) error {
	// The greeting was handled by the start phase (session.open, connect.go).
	for first := true; ; first = false {
		if err := s.dispatch(ctx, s.nextCommand(ctx), first); err != nil {
			if errors.Is(err, errBadLine) {
				continue
			}
			return err
		}
	}
}

// dispatch checks one command read and handles it (errBadLine: read on).
// It is out of loop's frame: an idle session waits in loop (nextCommand).
func (s *session) dispatch(ctx context.Context, ev *cmdEvent, first bool) error {
	if err := s.checkCommand(ev.cmd, ev.err, first && !s.greetsItself()); err != nil { // connect.go
		return err
	}
	return s.handle(ctx, ev.cmd)
}

// untrustedProxyHeader reports whether the first thing a client sent looks
// like a PROXY header while the client is not a trusted balancer.
func (s *session) untrustedProxyHeader(ev cmdEvent) bool {
	pp := s.cfg.ProxyProtocol
	return pp.Control && !pp.trusted(s.clientHop.Addr()) && looksLikeProxyHeader(ev)
}

func lineError(err error) string {
	if errors.Is(err, rewrite.ErrLineTooLong) {
		return "line too long"
	}
	var pe *rewrite.ProtocolError
	if errors.As(err, &pe) {
		return pe.Msg
	}
	return "invalid"
}

// handle dispatches one client command, once the command policy allows it.
func (s *session) handle(ctx context.Context, cmd rewrite.Command) error {
	if err := s.settlePlan(ctx); err != nil { // datasetup.go: answering ahead
		return err
	}
	if d := s.cfg.Policy.Command(s.facts(), cmd); !d.Allow {
		return s.refuseCommand(ctx, cmd, d)
	}
	switch cmd.Verb {
	case "PASV", "EPSV", "LPSV", "SPSV":
		return s.handlePassive(ctx, cmd)
	case "PORT", "EPRT", "LPRT":
		return s.handleActive(ctx, cmd)
	case "FEAT":
		return s.handleFEAT(ctx, cmd)
	case "AUTH", "PBSZ", "PROT", "CCC":
		return s.handleSecurity(ctx, cmd)
	case "ADAT", "MIC", "CONF", "ENC":
		return s.ctl.replyf(502, "%s is not supported by this gateway.", cmd.Verb)
	case "ABOR":
		s.closePlan()
		return s.forward(ctx, cmd)
	case "USER":
		s.user = cmd.Arg
		s.loggedIn = false
		s.loginStart = time.Now()
		s.publish()
		return s.forward(ctx, cmd)
	case "REIN":
		s.closePlan()
		s.user, s.loggedIn, s.epsvAll, s.cwd = "", false, false, ""
		s.loginStart = time.Now()
		s.publish()
		return s.forward(ctx, cmd)
	case "QUIT":
		s.closePlan()
		if err := s.forward(ctx, cmd); err != nil {
			return err
		}
		return fmt.Errorf("quit: %w", errSessionEnd)
	}
	if cmd.Info().Class == rewrite.ClassTransfer {
		return s.handleTransfer(ctx, cmd)
	}
	return s.forward(ctx, cmd)
}

// asciiType reports whether a TYPE argument asks for ASCII ("A", "A N",
// "a T", ...); anything else (I, L 8, E) is a byte-for-byte transfer.
func asciiType(arg string) bool {
	arg = strings.TrimSpace(arg)
	return arg != "" && (arg[0] == 'A' || arg[0] == 'a')
}

// forward sends the command as it came and relays the server's replies.
func (s *session) forward(ctx context.Context, cmd rewrite.Command) error {
	if err := s.ctl.send(cmd); err != nil {
		return err
	}
	rep, err := s.ctl.relayReplies(ctx, func(r *rewrite.Reply) *rewrite.Reply { return s.guardAddress(cmd, r) })
	if err != nil {
		return err
	}
	if s.cfg.AbsolutePaths {
		s.followCWD(cmd, rep)
	}
	if cmd.Verb == "TYPE" && rep.Code/100 == 2 {
		s.ascii = asciiType(cmd.Arg)
	}
	if changesFiles(cmd.Verb) {
		p := cmd.Arg
		if cmd.Verb != "SITE" { // SITE's argument is a sub-command, not a path
			p = s.absPath(p)
		}
		s.srv.obs.Observe(FileCommandEvent{Session: s.id, Time: time.Now(), Client: s.clientPeer, User: s.user,
			Verb: cmd.Verb, Path: p, Code: rep.Code})
	}
	if rep.Code == 530 && (cmd.Verb == "PASS" || cmd.Verb == "USER" || cmd.Verb == "ACCT") {
		s.loginFailed()
	}
	if rep.Code == 230 || (rep.Code == 202 && cmd.Verb == "PASS") {
		if !s.loggedIn {
			s.loggedIn = true
			s.publish()
			s.setLog(s.log.With(zap.String("user", s.user)))
			s.log.Info("login")
			if s.cfg.AbsolutePaths {
				return s.learnCWD(ctx)
			}
		}
	}
	return nil
}

// handleFEAT relays the server's feature list without the server's security
// features, which are not the client's business, and adds ftpgate's own TLS
// features when the client may use TLS.
func (s *session) handleFEAT(ctx context.Context, cmd rewrite.Command) error {
	rep, err := s.ctl.exchange(ctx, cmd.Verb, cmd.Arg)
	if err != nil {
		return err
	}
	if rep.Code == 211 {
		rep = rewrite.FilterFeatures(rep, func(f rewrite.Feature) bool {
			switch f.Name {
			case "AUTH", "PBSZ", "PROT", "CCC", "ADAT", "MIC", "CONF", "ENC", "SSCN", "CPSV":
				return false
			}
			return true
		})
	}
	return s.ctl.reply(s.ftps.features(rep, s.serverPeer.Addr()))
}

// changesFiles reports whether a command changes the server's files, for the
// audit record.
func changesFiles(verb string) bool {
	switch verb {
	case "DELE", "RNFR", "RNTO", "MKD", "XMKD", "RMD", "XRMD", "SITE", "MFMT", "MFCT", "MFF":
		return true
	}
	return false
}

// warnBurst is how many peer-misbehaviour warnings a session logs at once;
// after that one a second, so that a peer sending a million bad lines writes
// a bounded number of records. The session-end record counts the rest.
const warnBurst = 20

// peerWarn logs that the peer misbehaved, within the session's rate limit.
func (s *session) peerWarn(msg string, fields ...zap.Field) {
	if !s.warns.Allow() {
		s.warnsLost++
		return
	}
	s.log.Warn(msg, fields...)
}

// guardAddress keeps a data address the server sent from reaching the client
// unrewritten. Only ftpgate's own data-setup commands may get one; a server
// that answers another command (an alias such as P@SW, an unknown verb) with
// an address-bearing reply would have the client connect past ftpgate, so
// the client hears 502 instead.
func (s *session) guardAddress(cmd rewrite.Command, r *rewrite.Reply) *rewrite.Reply {
	switch r.Code {
	case 227, 228, 229:
	default:
		return r
	}
	s.peerWarn("address-bearing reply to a command that sets up no data connection: refused",
		zap.String("verb", cmd.Verb), zap.Int("code", r.Code))
	s.deny("protocol", cmd.Verb, "address-reply", fmt.Sprintf("server answered %s with %d", cmd.Verb, r.Code), 502)
	return rewrite.NewReply(502, fmt.Sprintf("%s refused: its reply carries a data address this gateway did not set up.", cmd.Verb))
}

// refuseCommand answers a command the policy denied and writes its audit
// record. A paused client reader (AUTH, CCC) carries on as it was.
func (s *session) refuseCommand(ctx context.Context, cmd rewrite.Command, d policy.Decision) error {
	if pausesReader(cmd) {
		releaseReader(ctx, s.ftps.clientSwitch, nil)
	}
	s.peerWarn("command refused by policy", zap.String("verb", cmd.Verb), zap.String("rule", d.Rule),
		zap.String("reason", d.Reason))
	s.deny("policy", cmd.Verb, d.Rule, d.Reason, d.Code)
	return s.ctl.replyf(d.Code, "%s", d.Text)
}

// loginFailed counts a refused login against the client's address.
func (s *session) loginFailed() {
	s.srv.adm.loginFailed(s.cfg.Limits, s.clientPeer.Addr(), time.Now())
}

// ticketLoginWait bounds how long a data connection's TLS handshake waits
// for the control connection that issued its ticket to log in.
const ticketLoginWait = 3 * time.Second

// sharesTickets reports whether this session's client may resume a TLS
// session that the control connection of session id issued: that session
// is still running, has the same client address, and has logged in as the
// same user as this one. A client that keeps one ticket cache for all its
// connections (rclone) may offer the ticket of a control connection it has
// just opened and not logged in yet: the handshake then waits, a bounded
// while, for that login. A ticket of a connection that never logs in, or
// logs in as someone else, gets a full handshake, which data connections
// refuse. It runs in a TLS handshake while the session's loop waits for it.
func (s *session) sharesTickets(id uint64) bool {
	if !s.loggedIn {
		return false
	}
	// Within the data connection's handshake deadline (DataTimeout), with
	// time left for the full handshake a refusal then needs.
	deadline := time.Now().Add(min(ticketLoginWait, s.cfg.DataTimeout/2))
	for {
		issuer := s.srv.live.get(id)
		if issuer == nil || issuer.clientPeer.Addr() != s.clientPeer.Addr() {
			return false
		}
		if v := issuer.seen.view.Load(); v != nil && v.loggedIn {
			return v.user == s.user
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
