package proxy

// Setting a session up: the PROXY header of a trusted balancer, the choice
// of the server (reverse: the upstream; redirect and tproxy: the original
// destination, checked against loops and the destination policy; explicit:
// the one the client names at login, explicit.go), the upstream control
// connection and the server's greeting.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// target decides which server a new session goes to.
func (s *session) target() (string, error) {
	cfg := s.cfg
	var dst netip.AddrPort
	switch cfg.Mode {
	case ModeReverse, "":
		return cfg.Upstream, nil
	case ModeRedirect:
		if cfg.Hooks.OriginalDst == nil {
			return "", fmt.Errorf("redirect mode without an original-destination lookup")
		}
		var err error
		dst, err = cfg.Hooks.OriginalDst(s.ctl.client)
		if err != nil {
			return "", fmt.Errorf("original destination: %w", err)
		}
	case ModeTProxy:
		dst = s.clientLocal
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if s.isSelf(dst) {
		return "", errLoop
	}
	if d := cfg.Policy.Destination(dst); !d.Allow {
		return "", &destinationError{dst: dst, reason: d.Reason}
	}
	return dst.String(), nil
}

// isSelf reports whether dst is one of ftpgate's own control listeners: a
// client that connected to the proxy port directly, whose "original
// destination" is the listener itself.
func (s *session) isSelf(dst netip.AddrPort) bool {
	if dst == s.clientLocal && s.cfg.Mode == ModeRedirect {
		return true // not redirected at all
	}
	for _, lp := range s.srv.Addrs() {
		if lp.Port() != dst.Port() {
			continue
		}
		if lp.Addr() == dst.Addr() || lp.Addr().IsUnspecified() && s.isLocal(dst.Addr()) {
			return true
		}
	}
	return false
}

func (s *session) isLocal(a netip.Addr) bool {
	if h := s.cfg.Hooks.IsLocal; h != nil {
		return h(a)
	}
	return a.IsLoopback()
}

// proxyHeader reads the PROXY header a trusted load balancer sends first,
// and makes its source the session's client.
func (s *session) proxyHeader() error {
	pp := s.cfg.ProxyProtocol
	if !pp.Control || !pp.trusted(s.clientHop.Addr()) {
		return nil
	}
	src, err := readProxyHeader(s.ctl.client)
	if err != nil {
		return err
	}
	s.clientPeer = src
	s.base = sessionLogger(s.srv.log, zap.Uint64("session", s.id), zap.Stringer("client", s.clientPeer),
		zap.Stringer("via", s.clientHop))
	s.setLog(s.base)
	return nil
}

// open is the session's start phase, up to the first client command the
// command loop handles. Eagerly (the default in reverse and the transparent
// modes) it connects to the server, relays the server's greeting and starts
// TLS toward the server where required. In explicit mode and with
// Config.Limits.UpstreamConnect lazy, ftpgate greets the client itself and connects only
// after USER (explicit.go). It starts the control readers; on
// failure the client has heard why (421) and the reason is logged.
func (s *session) open(ctx context.Context) error {
	if err := s.acceptImplicit(ctx); err != nil {
		return err
	}
	if s.greetsItself() {
		return s.openLazy(ctx)
	}
	if err := s.connectServer(ctx); err != nil {
		return err
	}
	s.ctl.startClientReader(ctx, s.ftps)
	s.ctl.startServerReader(ctx, s.ftps)
	if err := s.serverGreeting(ctx, true); err != nil {
		return err
	}
	return s.afterGreeting(ctx)
}

// serverGreeting waits for the server's greeting (possibly 120 first, then
// 220); relay passes it on to the client, otherwise only a refusal is
// passed on (ftpgate has greeted the client itself).
func (s *session) serverGreeting(ctx context.Context, relay bool) error {
	for {
		rep, err := s.ctl.serverReply(ctx, s.cfg.LoginTimeout)
		if err != nil {
			return err
		}
		if relay || rep.Code >= 400 {
			if err := s.ctl.reply(rep); err != nil {
				return err
			}
		}
		if rep.Code >= 400 {
			return fmt.Errorf("server refused the session with %d: %w", rep.Code, errSessionEnd)
		}
		if rep.Code >= 200 {
			return nil
		}
	}
}

// errBadLine: the client sent a line that is not a command; it has been
// answered (500) and the session goes on.
var errBadLine = errors.New("bad command line")

// checkCommand looks at what the session's loop (or, when ftpgate greets
// itself, the start phase) read from the client, before it is handled: on
// the first read a PROXY header from a source that is not a trusted
// balancer ends the session (421); a bad line is answered with 500
// (errBadLine: read on); the client leaving ends the session normally. A
// good command is logged at debug level.
func (s *session) checkCommand(cmd rewrite.Command, err error, first bool) error {
	if first && s.untrustedProxyHeader(cmdEvent{cmd, err}) {
		s.log.Warn("PROXY header from untrusted source refused", zap.Stringer("from", s.clientHop))
		s.ctl.replyf(421, "PROXY protocol header not accepted from this address.")
		return errors.New("PROXY header from an untrusted source")
	}
	switch {
	case err == nil:
		if ce := s.log.Check(zapcore.DebugLevel, "command"); ce != nil {
			ce.Write(zap.Stringer("cmd", cmd), zap.Bool("logged_in", s.loggedIn))
		}
		return nil
	case recoverable(err):
		s.peerWarn("bad command line from client", zap.Error(err))
		if err := s.ctl.replyf(500, "Command line not understood: %s.", lineError(err)); err != nil {
			return err
		}
		return errBadLine
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("client left: %w", errSessionEnd)
	}
	return err
}

// connectServer finds the session's server, checks it against policy and
// dials it. On failure the client has heard a 421 and the reason is logged.
func (s *session) connectServer(ctx context.Context) error {
	s.setClientSide()
	upstream, err := s.target()
	if err != nil {
		s.refuseTarget(err)
		return err
	}
	return s.connectUpstream(ctx, upstream)
}

// setClientSide sets our address toward the client for data connections.
func (s *session) setClientSide() {
	cfg := s.cfg
	s.clientSide = s.clientLocal.Addr()
	if cfg.Mode == ModeTProxy {
		s.clientSide = netip.Addr{}
		if h := cfg.Hooks.LocalToward; h != nil {
			if a, err := h(s.clientPeer.Addr()); err == nil {
				s.clientSide = a
			} else {
				s.log.Warn("no local address toward the client; data connections use the kernel's choice", zap.Error(err))
			}
		}
	}
}

// refuseTarget tells the client why target found no server.
func (s *session) refuseTarget(err error) {
	var de *destinationError
	switch {
	case errors.As(err, &de):
		s.log.Warn("destination refused", zap.Stringer("destination", de.dst), zap.String("reason", de.reason))
		s.result = "refused"
		s.deny("policy", "", "destination", de.reason, 421)
		s.ctl.replyf(421, "Service not available: %s.", de.reason)
	case errors.Is(err, errLoop):
		s.log.Warn("connection to ftpgate itself refused", zap.Stringer("local", s.clientLocal))
		s.result = "refused"
		s.deny("policy", "", "loop", "connection addressed to ftpgate itself", 421)
		s.ctl.replyf(421, "This is a transparent FTP gateway; connect to the FTP server's own address.")
	default:
		s.log.Error("cannot tell the server of an intercepted connection", zap.Error(err))
		s.ctl.replyf(421, "Service not available.")
	}
}

// connectUpstream dials the first of upstreams that answers (the addresses
// of one server, in order) and sends it the PROXY header when configured.
// On failure the client has heard a 421.
func (s *session) connectUpstream(ctx context.Context, upstreams ...string) error {
	cfg := s.cfg
	err := errors.New("no address to dial")
	for _, upstream := range upstreams {
		if err = s.dialServer(ctx, upstream); err == nil {
			break
		}
		s.log.Warn("upstream unreachable", zap.String("upstream", upstream), zap.Error(err))
		if s.ctl.server != nil { // connected, then failed (TLS): the session is over
			break
		}
	}
	if err != nil {
		s.ctl.replyf(421, "Service not available: cannot reach the FTP server.")
		return err
	}
	if v := cfg.ProxyProtocol.SendUpstream; v != 0 {
		s.ctl.server.SetWriteDeadline(time.Now().Add(cfg.ConnectTimeout))
		if err := writeProxyHeader(s.ctl.server, v, s.clientPeer, s.clientLocal); err != nil {
			s.ctl.server.Close()
			s.log.Warn("sending the PROXY header upstream failed", zap.Error(err))
			s.ctl.replyf(421, "Service not available: cannot reach the FTP server.")
			return err
		}
	}
	return nil
}

// dialServer opens the control connection to upstream, from the configured
// source address (or the client's own, in tproxy mode when preserving it).
func (s *session) dialServer(ctx context.Context, upstream string) error {
	cfg := s.cfg
	ka := keepAlive(s.cfg)
	d := net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: keepAliveIdle(ka), KeepAliveConfig: ka, Control: cfg.Hooks.DialControl}
	if cfg.PreserveClientAddress {
		d.Control = bindAddressOnly(cfg.Hooks.TransparentDialControl)
		d.LocalAddr = &net.TCPAddr{IP: s.clientPeer.Addr().AsSlice()}
	} else if src := s.upstreamSource(upstream); src.IsValid() {
		d.Control = bindAddressOnly(d.Control)
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	began := time.Now()
	// The dial's deadline context is a child of the context it is given,
	// and a context that once had a child keeps the map it was put in:
	// under the session's own context that was 368 bytes for the whole of
	// every session. The parent is the same thing here (the session's
	// context ends before the parent only when run returns, and run is
	// here, dialling).
	c, err := d.DialContext(s.dialCtx, "tcp", upstream)
	s.srv.obs.Observe(UpstreamConnectEvent{Duration: time.Since(began), Err: err})
	if err != nil {
		return err
	}
	s.ctl.attachServer(c.(*net.TCPConn))
	s.serverPeer = addrPortOf(s.ctl.server.RemoteAddr())
	s.serverLocal = addrPortOf(s.ctl.server.LocalAddr())
	s.setLog(s.log.With(zap.Stringer("server", s.serverPeer)))
	s.publish()
	return s.connectServerTLS(ctx)
}

// upstreamSource is the configured source address toward upstream
// ("host:port" or "ip:port"), or invalid for the kernel's choice.
func (s *session) upstreamSource(upstream string) netip.Addr {
	if s.cfg.UpstreamSource == nil {
		return netip.Addr{}
	}
	v6 := false
	if ap, err := netip.ParseAddrPort(upstream); err == nil {
		v6 = ap.Addr().Unmap().Is6()
	}
	a, ok := s.cfg.UpstreamSource.Addr(v6)
	if !ok {
		return netip.Addr{}
	}
	return a
}
