package proxy

// The login before the server is known. In explicit mode (the client has
// ftpgate configured as its FTP proxy and names the server at login) and
// with lazy connect (reverse and transparent modes, Config.Limits.UpstreamConnect lazy),
// ftpgate greets the client itself, answers what clients ask before logging
// in (FEAT, HELP, SYST, NOOP, AUTH TLS, PBSZ, PROT, QUIT) and dials the
// server only when USER lets it: policy.ExplicitLogin follows the explicit
// login forms, lazyLogin the plain one. From then on the session is the
// same as in the other modes.

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
)

// ExplicitConfig is the explicit mode's login. The zero value has no proxy
// authentication and uses the system resolver.
type ExplicitConfig struct {
	// Users checks proxy credentials (explicit.auth); nil turns proxy
	// authentication off.
	Users *policy.Users
	// Resolve looks a server name up, once per session; nil means
	// net.DefaultResolver (which reads /etc/hosts as nsswitch.conf says).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// ruleProxyAuth is the rule of a proxy login decision (policy.Users.Verify).
const ruleProxyAuth = "explicit.auth"

// greetsItself reports whether ftpgate greets the client before any server
// is connected.
func (s *session) greetsItself() bool {
	return s.cfg.Mode == ModeExplicit || s.cfg.Limits.UpstreamConnect == policy.UpstreamLazy
}

// openLazy is the start phase when ftpgate greets the client itself: the
// greeting, the commands before the server is known, then the connection
// and the login handed over to the server.
func (s *session) openLazy(ctx context.Context) error {
	explicit := s.cfg.Mode == ModeExplicit
	s.setClientSide()
	var upstream string
	if !explicit {
		// The server is known now (and refused at once when policy says
		// so); only the dial waits for USER.
		var err error
		if upstream, err = s.target(); err != nil {
			s.refuseTarget(err)
			return err
		}
		if ap, err := netip.ParseAddrPort(upstream); err == nil {
			s.serverPeer = ap // the TLS interception choice reads it before the dial
		}
	}
	s.ctl.startClientReader(ctx, s.ftps)
	greeting := "FTP gateway ready."
	if explicit {
		greeting = "FTP proxy ready: log in as USER user@host[:port]."
	}
	if err := s.ctl.replyf(220, "%s", greeting); err != nil {
		return err
	}
	login := policy.ExplicitLogin{Users: s.cfg.Explicit.Users}
	for first := true; ; first = false {
		ev := s.nextCommand(ctx)
		cmd := ev.cmd
		if err := s.checkCommand(cmd, ev.err, first); err != nil {
			if errors.Is(err, errBadLine) {
				continue
			}
			return err
		}
		answered, err := s.beforeServer(ctx, cmd)
		if err != nil || answered {
			if err != nil {
				return err
			}
			continue
		}
		var step policy.LoginStep
		if explicit {
			step = login.Next(cmd)
		} else {
			step = lazyLogin(cmd)
		}
		if cmd.Verb == "USER" || cmd.Verb == "REIN" {
			s.loginStart = time.Now()
		}
		if step.Auth != nil {
			s.proxyLogin(cmd.Verb, *step.Auth)
		}
		if !step.Connect {
			if err := s.ctl.replyf(step.Code, "%s", step.Text); err != nil {
				return err
			}
			continue
		}
		upstreams := []string{upstream}
		if explicit {
			var ok bool
			if upstreams, ok = s.explicitDestination(ctx, cmd.Verb, step); !ok {
				continue // refused and answered; the client may name another server
			}
		}
		return s.connectLogin(ctx, step, upstreams)
	}
}

// beforeServer answers the commands ftpgate handles itself while no server
// is connected; answered is false for the login commands.
func (s *session) beforeServer(ctx context.Context, cmd rewrite.Command) (answered bool, err error) {
	switch cmd.Verb {
	case "FEAT":
		return true, s.ctl.reply(s.ftps.features(rewrite.NewReply(211, "Features:", " UTF8", "End"), s.serverPeer.Addr()))
	case "HELP":
		return true, s.ctl.reply(s.loginHelp())
	case "NOOP":
		return true, s.ctl.replyf(200, "NOOP ok.")
	case "SYST":
		return true, s.ctl.replyf(215, "UNIX Type: L8")
	case "OPTS":
		if strings.EqualFold(strings.TrimSpace(cmd.Arg), "UTF8 ON") {
			// The FEAT above lists UTF8: ftpgate passes path names as they come.
			return true, s.ctl.replyf(200, "Always in UTF8 mode.")
		}
	case "QUIT":
		s.ctl.replyf(221, "Goodbye.")
		return true, fmt.Errorf("quit: %w", errSessionEnd)
	case "AUTH", "PBSZ", "PROT", "CCC":
		// TLS toward the client comes first; the server's follows once it
		// is connected (mirrorClientTLS).
		return true, s.handleSecurity(ctx, cmd)
	case "ADAT", "MIC", "CONF", "ENC":
		return true, s.ctl.replyf(502, "%s is not supported by this gateway.", cmd.Verb)
	case "USER", "PASS", "ACCT":
		// The command policy's login rules (require_client_tls first).
		if d := s.cfg.Policy.Command(s.facts(), cmd); !d.Allow {
			return true, s.refuseCommand(ctx, cmd, d)
		}
	}
	return false, nil
}

// loginHelp is the HELP reply before a server is chosen.
func (s *session) loginHelp() *rewrite.Reply {
	lines := []string{"ftpgate FTP gateway; commands before login:",
		" USER PASS ACCT REIN FEAT HELP NOOP SYST QUIT AUTH PBSZ PROT"}
	if s.cfg.Mode == ModeExplicit {
		lines = append(lines,
			" Log in as USER user@host[:port] (IPv6: user@[addr]:port), or OPEN host then USER user.",
			" Proxy login, when required: USER proxyuser, PASS proxypass first.")
	}
	return rewrite.NewReply(214, append(lines, "Help OK.")...)
}

// lazyLogin is the login of a lazily connected session: USER connects.
func lazyLogin(cmd rewrite.Command) policy.LoginStep {
	switch cmd.Verb {
	case "USER":
		return policy.LoginStep{Connect: true, User: cmd.Arg}
	case "REIN":
		return policy.LoginStep{Code: 220, Text: "Ready for a new login."}
	case "PASS", "ACCT":
		return policy.LoginStep{Code: 503, Text: "Login with USER first."}
	}
	return policy.LoginStep{Code: 530, Text: "Please login with USER and PASS."}
}

// proxyLogin reports the outcome of a proxy credential check.
func (s *session) proxyLogin(verb string, d policy.Decision) {
	if d.Allow {
		s.log.Info("proxy login accepted")
		return
	}
	s.proxyLoginFailed(verb, d)
}

// proxyLoginFailed reports a refused proxy login: a warn line and a denial
// of kind "policy" with rule "explicit.auth", counted toward the client's
// failed-login limit.
// Every failed proxy login passes here, once.
func (s *session) proxyLoginFailed(verb string, d policy.Decision) {
	s.peerWarn("proxy login failed", zap.String("reason", d.Reason))
	s.deny("policy", verb, d.Rule, d.Reason, d.Code)
	s.loginFailed() // counts toward the client's failed-login limit
}

// explicitDestination resolves the server the client named (once) and
// decides whether it may be reached. It returns the addresses to dial in
// order (at most maxDialAddrs); ok is false when the destination was
// refused, answered (530) and audited. No connection is attempted to a
// refused destination.
func (s *session) explicitDestination(ctx context.Context, verb string, step policy.LoginStep) (upstreams []string, ok bool) {
	t := step.Target
	s.user = step.User // for the audit record
	s.publish()
	var addrs []netip.Addr
	var lookupErr error
	if a, isIP := t.Addr(); isIP {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
		addrs, lookupErr = s.resolve(rctx, t.Host)
		cancel()
	}
	port := t.Port
	if port == 0 {
		port = policy.FTPPort
	}
	d := s.cfg.Policy.ExplicitDestination(s.facts(), t.Host, addrs, port)
	if lookupErr != nil && !d.Allow {
		d.Reason += ": " + lookupErr.Error()
	}
	for _, a := range addrs {
		dst := netip.AddrPortFrom(a.Unmap(), port)
		if d.Allow && s.isSelf(dst) {
			d = policy.Decision{Rule: "explicit.self", Code: 530, Text: "Unable to connect to " + t.Host + ": destination not allowed.",
				Reason: fmt.Sprintf("destination %s is one of ftpgate's own listeners", dst)}
		}
		if len(upstreams) < maxDialAddrs {
			upstreams = append(upstreams, dst.String())
		}
	}
	if !d.Allow {
		s.log.Warn("destination refused", zap.String("destination", t.HostPort(policy.FTPPort)),
			zap.String("rule", d.Rule), zap.String("reason", d.Reason))
		s.deny("policy", verb, d.Rule, d.Reason, d.Code)
		s.ctl.replyf(d.Code, "%s", d.Text)
		return nil, false
	}
	if _, isIP := t.Addr(); !isIP && s.cfg.TLS.ServerName == "" {
		// A server certificate must name the host the client asked for.
		s.ftps.serverCfg = newServerTLSConfig(s.ftps.cfg, t.Host)
	}
	s.log.Info("destination chosen", zap.String("destination", t.HostPort(policy.FTPPort)), zap.Strings("addresses", upstreams))
	return upstreams, true
}

// maxDialAddrs bounds the addresses of one name that are dialed in turn
// (each within the connect timeout); all of them must pass the policy.
const maxDialAddrs = 4

// resolve looks host up with the configured resolver.
func (s *session) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if r := s.cfg.Explicit.Resolve; r != nil {
		return r(ctx, host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// connectLogin connects to the chosen server (the first of upstreams that
// answers), takes its greeting, starts TLS toward it as the client's leg
// and the TLS mode want, and hands it the login: USER and the server's
// reply relayed, or, when the client has already sent its password (the
// joined forms), USER and PASS with the reply to PASS relayed.
func (s *session) connectLogin(ctx context.Context, step policy.LoginStep, upstreams []string) error {
	if err := s.connectUpstream(ctx, upstreams...); err != nil {
		if s.ctl.server == nil {
			s.serverPeer = netip.AddrPort{} // no upstream connection was made
		}
		return err
	}
	s.ctl.startServerReader(ctx, s.ftps)
	if err := s.serverGreeting(ctx, false); err != nil {
		return err
	}
	if err := s.afterGreeting(ctx); err != nil {
		return err
	}
	if err := s.mirrorClientTLS(ctx); err != nil {
		return err
	}
	user := rewrite.Command{Verb: "USER", Arg: step.User}
	if !step.HasPass {
		return s.handle(ctx, user)
	}
	s.user, s.loggedIn = step.User, false
	s.publish()
	rep, err := s.ctl.exchange(ctx, user.Verb, user.Arg)
	if err != nil {
		return err
	}
	if rep.Code == 331 || rep.Code == 332 {
		return s.handle(ctx, rewrite.Command{Verb: "PASS", Arg: step.Pass})
	}
	// No password wanted (230) or the user refused: the client hears it
	// as the answer to its PASS.
	if err := s.ctl.reply(rep); err != nil {
		return err
	}
	if rep.Code == 530 {
		s.loginFailed()
	}
	if rep.Code == 230 {
		s.loggedIn = true
		s.publish()
		s.setLog(s.log.With(zap.String("user", s.user)))
		s.log.Info("login")
	}
	return nil
}

// mirrorClientTLS starts TLS toward the server when the client secured its
// control connection (AUTH TLS) before the server was connected and the
// server leg mirrors the client's.
func (s *session) mirrorClientTLS(ctx context.Context) error {
	t := s.ftps
	if t.server != nil || !t.secured || t.implicit || s.cfg.TLS.serverMode() != ServerTLSMirror {
		return nil
	}
	rep, err := s.serverAUTH(ctx)
	if err != nil {
		return err
	}
	if rep != nil {
		s.log.Error("the FTP server refused AUTH TLS after the client's", zap.Stringer("reply", rep))
		s.ctl.replyf(421, "Service not available: the FTP server refused TLS.")
		return fmt.Errorf("server refused AUTH TLS with %d", rep.Code)
	}
	return nil
}
