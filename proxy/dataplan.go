package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// dataPlan is how the next transfer's two legs will connect. The client leg
// is what the client asked for; the server leg is chosen by ServerMode. Each
// leg either listens (and has a pinhole) or dials.
type dataPlan struct {
	clientMode string         // PASV, EPSV, LPSV, SPSV, PORT, EPRT or LPRT
	clientLn   *dataListener  // client leg passive: we listen
	clientAddr netip.AddrPort // client leg active: we dial the client

	serverMode string         // EPSV, PASV, EPRT or PORT
	serverLn   *dataListener  // server leg active: the server dials us
	serverAddr netip.AddrPort // server leg passive: we dial the server
}

func (p *dataPlan) clientPassive() bool { return p.clientLn != nil }
func (p *dataPlan) serverPassive() bool { return p.serverLn == nil }

// closePlan drops the pending data plan: listeners and pinholes go.
func (s *session) closePlan() {
	if s.plan == nil {
		return
	}
	s.closeDataPlan(s.plan)
	s.plan = nil
}

func (s *session) closeDataPlan(p *dataPlan) {
	ctx := context.Background() // the kernel state must go even when the session's context is done
	s.srv.closeData(ctx, p.clientLn, s.log)
	s.srv.closeData(ctx, p.serverLn, s.log)
	p.clientLn, p.serverLn = nil, nil
}

// legError is a data-connection setup failure that the client hears about as
// a 425 but that does not end the session.
type legError struct{ msg string }

func (e *legError) Error() string { return e.msg }

func legErrorf(format string, args ...any) error { return &legError{fmt.Sprintf(format, args...)} }

// handlePassive answers PASV, EPSV, LPSV and SPSV: the client will connect to us.
func (s *session) handlePassive(ctx context.Context, cmd rewrite.Command) error {
	v6 := s.clientLocal.Addr().Is6()
	switch cmd.Verb {
	case "EPSV":
		arg, err := rewrite.ParseEPSVArg(cmd.Arg)
		if errors.Is(err, rewrite.ErrUnsupportedFamily) {
			return s.replyf(522, "Network protocol not supported, use (%d).", family(v6))
		}
		if err != nil {
			return s.replyf(501, "Syntax error in EPSV argument.")
		}
		if arg.All {
			s.epsvAll = true
			return s.replyf(200, "EPSV ALL ok.")
		}
		if arg.Family != 0 && arg.Family != family(v6) {
			return s.replyf(522, "Network protocol not supported, use (%d).", family(v6))
		}
	default:
		if s.epsvAll {
			return s.replyf(501, "%s not allowed after EPSV ALL.", cmd.Verb)
		}
	}
	if (cmd.Verb == "PASV" || cmd.Verb == "SPSV") && v6 {
		return s.replyf(425, "%s needs an IPv4 address; use EPSV.", cmd.Verb)
	}

	s.closePlan()
	plan := &dataPlan{clientMode: cmd.Verb}
	if err := s.setupServerLeg(ctx, plan, true); err != nil {
		return s.legFailed(plan, err)
	}
	local := s.clientSide
	if !local.IsValid() {
		local = s.clientLocal.Addr()
	}
	// An advertised address that is one of ours (a followed interface's new
	// address, a secondary address) is where the client will connect: listen
	// there rather than on the control connection's address.
	if adv, divert := s.advertised(netip.AddrPortFrom(local, 0)); !divert && adv.Addr() != local && s.isLocal(adv.Addr()) {
		local = adv.Addr()
	}
	dl, err := s.srv.expectData(ctx, local, s.clientPeer.Addr(), s.clientHop.Addr())
	if err != nil {
		s.log.Error("data listener", zap.Error(err))
		return s.legFailed(plan, legErrorf("no data port available"))
	}
	plan.clientLn = dl
	advAP, divert := s.advertised(dl.addr)
	if divert {
		dl.divert = advAP
	}
	if err := s.srv.pinFor(ctx, dl); err != nil {
		s.log.Error("pinhole for client", zap.Error(err))
		return s.legFailed(plan, legErrorf("firewall refused the data port"))
	}
	port := advAP.Port()
	var text string
	code := 227
	switch cmd.Verb {
	case "PASV":
		text, err = rewrite.FormatPASV(advAP)
	case "EPSV":
		code, text = 229, rewrite.FormatEPSV(port)
	case "LPSV":
		code = 228
		text, err = rewrite.FormatLPSV(advAP)
	case "SPSV":
		text = rewrite.FormatSPSV(port)
	}
	if err != nil {
		s.log.Error("format passive reply", zap.Error(err))
		return s.legFailed(plan, legErrorf("cannot express the data address"))
	}
	s.plan = plan
	s.log.Debug("passive data plan", zap.String("client_mode", plan.clientMode), zap.String("server_mode", plan.serverMode),
		zap.Stringer("listen", dl.addr), zap.Stringer("advertised", advAP))
	return s.reply(rewrite.NewReply(code, text))
}

// handleActive answers PORT, EPRT and LPRT: we will connect to the client.
func (s *session) handleActive(ctx context.Context, cmd rewrite.Command) error {
	if s.epsvAll {
		return s.replyf(501, "%s not allowed after EPSV ALL.", cmd.Verb)
	}
	var target netip.AddrPort
	var err error
	switch cmd.Verb {
	case "PORT":
		target, err = rewrite.ParsePORT(cmd.Arg)
	case "EPRT":
		target, err = rewrite.ParseEPRT(cmd.Arg)
	case "LPRT":
		target, err = rewrite.ParseLPRT(cmd.Arg)
	}
	if err != nil {
		s.log.Warn("bad active-mode address", zap.String("verb", cmd.Verb), zap.Error(err))
		if cmd.Verb == "EPRT" && errors.Is(err, rewrite.ErrUnsupportedFamily) {
			return s.replyf(522, "Network protocol not supported, use (1,2).")
		}
		return s.replyf(501, "Syntax error in %s address.", cmd.Verb)
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	if d := s.srv.cfg.Policy.ActiveTarget(s.clientPeer.Addr(), target); !d.Allow {
		s.log.Warn("bounce attempt refused", zap.String("verb", cmd.Verb), zap.Stringer("target", target),
			zap.String("reason", d.Reason))
		return s.replyf(501, "%s refused: %s.", cmd.Verb, d.Reason)
	}
	s.closePlan()
	plan := &dataPlan{clientMode: cmd.Verb, clientAddr: target}
	if err := s.setupServerLeg(ctx, plan, false); err != nil {
		return s.legFailed(plan, err)
	}
	s.plan = plan
	return s.replyf(200, "%s command successful.", cmd.Verb)
}

// legFailed closes what a half-built plan opened and tells the client. Only a
// legError is the client's to hear; anything else ends the session.
func (s *session) legFailed(plan *dataPlan, err error) error {
	s.closeDataPlan(plan)
	var le *legError
	if errors.As(err, &le) {
		return s.replyf(425, "Can't open data connection: %s.", le.msg)
	}
	return err
}

// setupServerLeg negotiates the server side of the plan: EPSV (or PASV) when
// we dial the server, EPRT (or PORT) when the server dials us.
func (s *session) setupServerLeg(ctx context.Context, plan *dataPlan, clientPassive bool) error {
	if err := s.ensureServerProt(ctx); err != nil {
		return err
	}
	passive := s.srv.cfg.ServerMode == ServerPassive || s.srv.cfg.PreserveClientAddress ||
		(s.srv.cfg.ServerMode == ServerClient && clientPassive)
	if passive {
		return s.serverPassive(ctx, plan)
	}
	return s.serverActive(ctx, plan)
}

func (s *session) serverPassive(ctx context.Context, plan *dataPlan) error {
	srvIP := s.serverPeer.Addr()
	if !s.noEPSV {
		rep, err := s.exchange(ctx, "EPSV", "")
		if err != nil {
			return err
		}
		if rep.Code == 229 {
			port, err := rewrite.ParseEPSV(rep.Text())
			if err != nil {
				s.log.Warn("server sent an invalid 229 reply", zap.Stringer("reply", rep), zap.Error(err))
				return legErrorf("server sent an invalid EPSV reply")
			}
			plan.serverMode, plan.serverAddr = "EPSV", netip.AddrPortFrom(srvIP, port)
			return nil
		}
		if rep.Code < 500 {
			return legErrorf("server answered EPSV with %d", rep.Code)
		}
		s.noEPSV = true
		s.log.Debug("server refused EPSV; using PASV", zap.Int("code", rep.Code))
	}
	if !srvIP.Is4() {
		return legErrorf("server refused EPSV and PASV cannot reach an IPv6 server")
	}
	rep, err := s.exchange(ctx, "PASV", "")
	if err != nil {
		return err
	}
	if rep.Code != 227 {
		return legErrorf("server answered PASV with %d", rep.Code)
	}
	ap, err := rewrite.ParsePASV(rep.Text())
	if err != nil {
		s.log.Warn("server sent an invalid 227 reply", zap.Stringer("reply", rep), zap.Error(err))
		return legErrorf("server sent an invalid PASV reply")
	}
	if !s.srv.cfg.TrustServerPASVAddress {
		if ap.Addr() != srvIP {
			s.log.Debug("ignoring the address in the server's 227 reply", zap.Stringer("said", ap.Addr()),
				zap.Stringer("using", srvIP))
		}
		ap = netip.AddrPortFrom(srvIP, ap.Port())
	}
	plan.serverMode, plan.serverAddr = "PASV", ap
	return nil
}

func (s *session) serverActive(ctx context.Context, plan *dataPlan) error {
	dl, err := s.srv.expectData(ctx, s.serverLocal.Addr(), s.serverPeer.Addr(), s.serverPeer.Addr())
	if err != nil {
		s.log.Error("data listener toward server", zap.Error(err))
		return legErrorf("no data port available")
	}
	plan.serverLn = dl
	if !s.noEPRT {
		arg, err := rewrite.FormatEPRT(dl.addr)
		if err != nil {
			return err
		}
		rep, err := s.exchange(ctx, "EPRT", arg)
		if err != nil {
			return err
		}
		switch {
		case rep.Code == 200:
			plan.serverMode = "EPRT"
		case rep.Code >= 500 && dl.addr.Addr().Is4():
			s.noEPRT = true
			s.log.Debug("server refused EPRT; using PORT", zap.Int("code", rep.Code))
		default:
			return legErrorf("server answered EPRT with %d", rep.Code)
		}
	}
	if plan.serverMode == "" {
		arg, err := rewrite.FormatPORT(dl.addr)
		if err != nil {
			return err
		}
		rep, err := s.exchange(ctx, "PORT", arg)
		if err != nil {
			return err
		}
		if rep.Code != 200 {
			return legErrorf("server answered PORT with %d", rep.Code)
		}
		plan.serverMode = "PORT"
	}
	// Only now that the server accepted the address may it connect.
	if err := s.srv.pinFor(ctx, dl); err != nil {
		s.log.Error("pinhole for server", zap.Error(err))
		return legErrorf("firewall refused the data port")
	}
	return nil
}

// upload reports whether a transfer command sends data from client to server.
func upload(verb string) bool {
	switch verb {
	case "STOR", "STOU", "APPE":
		return true
	}
	return false
}

// handleTransfer runs one transfer command: it connects both legs of the
// pending plan, relays the data and holds the server's completion reply
// until the relay has drained.
func (s *session) handleTransfer(ctx context.Context, cmd rewrite.Command) error {
	plan := s.plan
	if plan == nil {
		return s.replyf(425, "Use PORT, EPRT, PASV or EPSV first.")
	}
	s.plan = nil // a data connection serves one transfer
	defer s.closeDataPlan(plan)
	start := time.Now()

	var srvConn, cliConn *net.TCPConn
	defer func() {
		if srvConn != nil {
			srvConn.Close()
		}
		if cliConn != nil {
			cliConn.Close()
		}
	}()
	var err error
	if plan.serverPassive() {
		srvConn, err = s.srv.dial(ctx, s.serverLocal.Addr(), plan.serverAddr, s.srv.cfg.PreserveClientAddress)
		if err != nil {
			s.log.Warn("data connection to server failed", zap.Stringer("addr", plan.serverAddr), zap.Error(err))
			return s.replyf(425, "Can't open data connection to the server.")
		}
	}
	if err := s.send(cmd); err != nil {
		return err
	}
	first, err := s.serverReply(ctx, s.srv.cfg.IdleTimeout)
	if err != nil {
		return err
	}
	if err := s.reply(first); err != nil {
		return err
	}
	if first.Code >= 200 { // refused (550 and the like) or done without data
		return nil
	}

	clientListens, serverListens := plan.clientPassive(), !plan.serverPassive() // connectLegs ends the listening
	cliConn, srvConn, early, err := s.connectLegs(ctx, plan, srvConn)
	if err != nil {
		srvConn = nil // connectLegs closed it
		var gone *serverGaveUp
		if errors.As(err, &gone) {
			return s.reply(gone.reply)
		}
		var le *legError
		if errors.As(err, &le) {
			if early != nil { // the server has finished already
				return s.replyf(425, "Can't open data connection: %s.", le.msg)
			}
			return s.abandonTransfer(ctx, le.msg)
		}
		return err
	}

	// The ports we accepted on count as used until these connections end.
	if serverListens {
		defer s.srv.hub.touch(addrPortOf(srvConn.LocalAddr()).Port())
	}
	if clientListens {
		defer s.srv.hub.touch(addrPortOf(cliConn.LocalAddr()).Port())
	}
	cliData, srvData, err := s.secureData(ctx, cliConn, srvConn)
	if err != nil {
		return s.dataTLSFailed(ctx, err, early, srvConn, cliConn)
	}
	up := upload(cmd.Verb)
	done := make(chan relayResult, 1)
	if up {
		go relay(srvData, cliData, true, done)
	} else {
		go relay(cliData, srvData, false, done)
	}
	res, final, abort, err := s.awaitTransfer(ctx, done, early, srvConn, cliConn)
	if err != nil {
		return err
	}
	if up {
		s.bytesUp += res.n
	} else {
		s.bytesDown += res.n
	}
	s.srv.transfers.Add(1)
	s.logTransfer(cmd, plan, up, res, final, time.Since(start), abort)
	if err := s.reply(final); err != nil {
		return err
	}
	if abort != nil {
		return s.finishAbort(ctx)
	}
	return nil
}

// awaitTransfer waits until the relay has drained and the server's final
// reply has come. A client ABOR meanwhile closes the data connections and is
// passed on; other commands wait in a bounded queue.
func (s *session) awaitTransfer(ctx context.Context, done <-chan relayResult, early *rewrite.Reply, conns ...*net.TCPConn) (res relayResult, final *rewrite.Reply, abort *rewrite.Command, err error) {
	final = early
	relayed := false
	cmds := s.cmds
	var stall <-chan time.Time // after the relay ends, the server must answer in time
	for !relayed || final == nil {
		select {
		case res = <-done:
			relayed = true
			for _, c := range conns {
				c.Close() // the other direction carries nothing in stream mode
			}
			if final == nil {
				t := time.NewTimer(s.srv.cfg.IdleTimeout)
				defer t.Stop()
				stall = t.C
			}
		case ev := <-s.replies:
			if ev.err != nil {
				return res, nil, nil, s.serverBroke(ev.err)
			}
			if ev.reply.Code < 200 {
				if err := s.reply(ev.reply); err != nil {
					return res, nil, nil, err
				}
				continue
			}
			final = ev.reply
		case ev := <-cmds:
			if ev.err == nil && ev.cmd.Verb == "ABOR" && abort == nil {
				c := ev.cmd
				abort = &c
				for _, c := range conns {
					c.Close()
				}
				if err := s.sendAbort(c); err != nil {
					return res, nil, nil, err
				}
				continue
			}
			s.queued = append(s.queued, ev)
			if len(s.queued) >= maxQueued {
				cmds = nil // let the client wait in TCP until the transfer ends
			}
		case <-stall:
			s.replyf(421, "Timeout waiting for the FTP server to finish the transfer.")
			return res, nil, nil, errors.New("timeout waiting for the server's transfer reply")
		case <-ctx.Done():
			return res, nil, nil, ctx.Err()
		}
	}
	return res, final, abort, nil
}

// sendAbort passes ABOR on, with the Telnet IP and Synch the client sent.
func (s *session) sendAbort(c rewrite.Command) error {
	if c.Telnet != 0 {
		if err := s.sw.WriteTelnetAbort(); err != nil {
			return fmt.Errorf("write to server: %w", err)
		}
	}
	return s.send(c)
}

// abortReplyWait bounds the wait for the server's own reply to ABOR, after
// the transfer's final reply: some servers (pure-ftpd) swallow an ABOR that
// arrives during a transfer and never answer it.
const abortReplyWait = 2 * time.Second

// finishAbort relays the server's reply to ABOR itself, which follows the
// transfer's own final reply. A server that does not answer within
// abortReplyWait is brought back in step with a NOOP of our own: every reply
// before the NOOP's is relayed, the NOOP's 200 is not.
func (s *session) finishAbort(ctx context.Context) error {
	t := time.NewTimer(abortReplyWait)
	defer t.Stop()
	select {
	case ev := <-s.replies:
		if ev.err != nil {
			return s.serverBroke(ev.err)
		}
		return s.reply(ev.reply)
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.log.Info("no reply to ABOR from the server; resynchronising with NOOP")
	if err := s.send(rewrite.Command{Verb: "NOOP"}); err != nil {
		return err
	}
	for range 4 {
		rep, err := s.serverReply(ctx, s.srv.cfg.IdleTimeout)
		if err != nil {
			return err
		}
		if rep.Code == 200 {
			return nil
		}
		if err := s.reply(rep); err != nil {
			return err
		}
	}
	s.replyf(421, "Lost step with the FTP server after ABOR.")
	return errors.New("server replies out of step after ABOR")
}

// abandonTransfer ends a transfer whose client or server leg never came:
// the server's data connection is closed (by connectLegs), its final reply is
// swallowed, and the client hears 425.
func (s *session) abandonTransfer(ctx context.Context, why string) error {
	if _, err := s.serverReply(ctx, s.srv.cfg.IdleTimeout); err != nil {
		return err
	}
	return s.replyf(425, "Can't open data connection: %s.", why)
}

// serverGaveUp: the server sent its final reply (425, 426, ...) while we
// were still connecting the legs; that reply is the client's answer.
type serverGaveUp struct{ reply *rewrite.Reply }

func (e *serverGaveUp) Error() string { return fmt.Sprintf("server gave up with %d", e.reply.Code) }

type legResult struct {
	c   *net.TCPConn
	err error
}

// connectLegs brings up the client leg (accept or dial) and, when the server
// dials us, the server leg, within DataTimeout, while listening to the
// server: if it gives up first, its reply ends the wait. srvConn is the
// server leg when we dialed it already. On error every connection is closed.
//
// A success reply (226) that comes before the legs are up is early, not
// final: the data is in flight, so it is returned for the relay to hold.
func (s *session) connectLegs(ctx context.Context, plan *dataPlan, srvConn *net.TCPConn) (cli, srv *net.TCPConn, early *rewrite.Reply, err error) {
	legCtx, cancel := context.WithCancel(ctx)
	deadline := time.Now().Add(s.srv.cfg.DataTimeout)
	cliCh := make(chan legResult, 1)
	go func() {
		var r legResult
		if plan.clientPassive() {
			r.c, r.err = plan.clientLn.wait(legCtx, deadline)
		} else {
			r.c, r.err = s.srv.dial(legCtx, s.clientSide, plan.clientAddr, false)
		}
		cliCh <- r
	}()
	var srvCh chan legResult
	if !plan.serverPassive() {
		srvCh = make(chan legResult, 1)
		go func() {
			c, err := plan.serverLn.wait(legCtx, deadline)
			srvCh <- legResult{c, err}
		}()
	}
	srv = srvConn
	pending := 1
	if srvCh != nil {
		pending++
	}
	fail := func(e error) (*net.TCPConn, *net.TCPConn, *rewrite.Reply, error) {
		cancel()
		for ; pending > 0; pending-- { // collect what the goroutines still bring
			select {
			case r := <-cliCh:
				if r.c != nil {
					r.c.Close()
				}
			case r := <-srvCh:
				if r.c != nil {
					r.c.Close()
				}
			}
		}
		for _, c := range []*net.TCPConn{cli, srv} {
			if c != nil {
				c.Close()
			}
		}
		s.closeDataPlan(plan) // before the client hears anything
		return nil, nil, early, e
	}
	for pending > 0 {
		select {
		case r := <-cliCh:
			pending--
			if r.err != nil {
				s.log.Warn("client data connection failed", zap.String("client_mode", plan.clientMode), zap.Error(r.err))
				return fail(legErrorf("the client did not connect"))
			}
			cli = r.c
		case r := <-srvCh:
			pending--
			if r.err != nil {
				s.log.Warn("server data connection failed", zap.String("server_mode", plan.serverMode), zap.Error(r.err))
				return fail(legErrorf("the server did not connect"))
			}
			srv = r.c
		case ev := <-s.replies:
			if ev.err != nil {
				return fail(s.serverBroke(ev.err))
			}
			if ev.reply.Code < 200 {
				if err := s.reply(ev.reply); err != nil {
					return fail(err)
				}
				continue
			}
			if ev.reply.Code < 400 && early == nil {
				early = ev.reply
				continue
			}
			s.log.Warn("server ended the transfer before the data connection was up", zap.Int("code", ev.reply.Code))
			return fail(&serverGaveUp{ev.reply})
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	cancel()
	// The legs are up: their expectations and pinholes are done with.
	s.srv.closeData(ctx, plan.clientLn, s.log)
	s.srv.closeData(ctx, plan.serverLn, s.log)
	plan.clientLn, plan.serverLn = nil, nil
	return cli, srv, early, nil
}

func (s *session) logTransfer(cmd rewrite.Command, plan *dataPlan, up bool, res relayResult, final *rewrite.Reply,
	d time.Duration, abort *rewrite.Command) {
	dir := "download"
	if up {
		dir = "upload"
	}
	rate := 0.0
	if secs := d.Seconds(); secs > 0 {
		rate = float64(res.n) / secs
	}
	fields := []zap.Field{
		zap.String("command", cmd.Verb),
		zap.String("path", cmd.Arg),
		zap.String("direction", dir),
		zap.Int64("bytes", res.n),
		zap.Duration("duration", d),
		zap.Float64("rate_bps", rate),
		zap.String("client_mode", plan.clientMode),
		zap.String("server_mode", plan.serverMode),
		zap.Int("code", final.Code),
	}
	if abort != nil {
		fields = append(fields, zap.Bool("aborted", true))
	}
	if res.err != nil {
		fields = append(fields, zap.String("relay_error", res.err.Error()))
	}
	fields = append(fields, s.tlsTransferFields()...)
	s.log.Info("transfer", fields...)
}

// advertised is the address and port written into passive replies for a
// data listener on local, and whether the firewall must divert connections
// to it (transparent modes, where clients expect the server's address). The
// first advertise rule whose networks hold the client decides (split
// horizon); then Advertise; then, in transparent modes, the server; then the
// listener itself.
func (s *session) advertised(local netip.AddrPort) (netip.AddrPort, bool) {
	cfg := &s.srv.cfg
	v6 := local.Addr().Is6()
	src := cfg.Advertise
	port := local.Port()
	for _, r := range cfg.AdvertiseRules {
		if r.matches(s.clientPeer.Addr()) {
			if r.Addr != nil {
				src = r.Addr
			}
			port = r.mapPort(port)
			break
		}
	}
	if src != nil {
		if a, ok := src.Addr(v6); ok {
			return netip.AddrPortFrom(a, port), false
		}
	}
	if cfg.Mode.Transparent() && cfg.DivertData {
		if orig := s.serverPeer.Addr(); orig.Is6() == v6 {
			return netip.AddrPortFrom(orig, port), true
		}
	}
	return netip.AddrPortFrom(local.Addr(), port), false
}

func family(v6 bool) int {
	if v6 {
		return 2
	}
	return 1
}
