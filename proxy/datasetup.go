package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// dataPlan is how the next transfer's two legs will connect. The client leg
// is what the client asked for; the server leg is chosen by ServerMode. Each
// leg either listens (and has a pinhole) or dials.
type dataPlan struct {
	clientMode string         // PASV, EPSV, LPSV, SPSV, PORT, EPRT or LPRT
	clientLn   *dataPort      // client leg passive: we listen
	clientAddr netip.AddrPort // client leg active: we dial the client

	serverMode string         // EPSV, PASV, EPRT or PORT
	serverLn   *dataPort      // server leg active: the server dials us
	serverAddr netip.AddrPort // server leg passive: we dial the server

	// The server leg passive: its connection, dialed as soon as the server
	// named its port (dialAhead), until the transfer takes it.
	ahead       chan legResult
	cancelAhead context.CancelFunc

	// The client was answered ahead of the server (answersAhead): serverAsk
	// is the request (EPSV or PASV) whose reply the session has not read
	// yet (the plan is the session's asked); serverErr, once read, why the
	// server leg cannot be set up (the transfer command hears it).
	serverAsk string
	serverErr error

	// The kernel data path (flowpath.go): wantFlow when the plan may be
	// forwarded, flow once the firewall forwards it (and nothing is dialed).
	wantFlow  bool
	flow      *nat.FlowWatch
	forwarded bool // the kernel forwarded (or forwards) its data connection
}

func (p *dataPlan) clientPassive() bool { return p.clientLn != nil }
func (p *dataPlan) serverPassive() bool { return p.serverLn == nil }

// closePlan drops the pending data plan: listeners and pinholes go.
func (s *session) closePlan() {
	if s.plan == nil {
		return
	}
	s.plan.release()
	s.plan = nil
}

// leave ends the plan's expectations once both legs are up (dataPort.leave):
// their listeners stay open until release.
func (p *dataPlan) leave() {
	p.clientLn.leave()
	p.serverLn.leave()
}

// release gives back the plan's data ports and closes their pinholes; the
// plan's connections, if any, are the transfer's to close.
func (p *dataPlan) release() {
	p.clientLn.release()
	p.serverLn.release()
	p.clientLn, p.serverLn = nil, nil
	if p.flow != nil {
		// The forwarded connection runs on in conntrack; only the
		// expectation and the log go.
		p.flow.Close(context.Background())
		p.flow = nil
	}
	if p.ahead != nil { // dialed ahead, never used
		p.cancelAhead()
		closeWhenDialed(p.ahead)
		p.ahead = nil
	}
}

// closeWhenDialed closes the connection a cancelled dial still brings.
func closeWhenDialed(ch <-chan legResult) {
	go func() {
		if r := <-ch; r.c != nil {
			r.c.Close()
		}
	}()
}

// dialAhead starts the server leg's connection as soon as the server has
// named its data port, while the client is told where to connect and sends
// its transfer command: the connect round trip leaves the transfer's path.
// Servers accept the connection of a passive data port before the command.
func (s *session) dialAhead(plan *dataPlan) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan legResult, 1)
	plan.ahead, plan.cancelAhead = ch, cancel
	local, target, transparent := s.serverLocal.Addr(), plan.serverAddr, s.cfg.PreserveClientAddress
	go func() {
		c, err := s.dialData(ctx, local, target, transparent)
		ch <- legResult{c, err}
	}()
}

// takeAhead returns the server leg dialed ahead; the plan no longer owns it.
func (p *dataPlan) takeAhead(ctx context.Context) (*net.TCPConn, error) {
	ch := p.ahead
	if ch == nil {
		return nil, errors.New("no server data connection was dialed for this plan")
	}
	p.ahead = nil
	defer p.cancelAhead()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		closeWhenDialed(ch) // the dial ends with the cancel
		return nil, ctx.Err()
	}
}

// handlePassive answers PASV, EPSV, LPSV and SPSV: the client will connect to us.
func (s *session) handlePassive(ctx context.Context, cmd rewrite.Command) error {
	v6 := s.clientLocal.Addr().Is6()
	switch cmd.Verb {
	case "EPSV":
		arg, err := rewrite.ParseEPSVArg(cmd.Arg)
		if errors.Is(err, rewrite.ErrUnsupportedFamily) {
			return s.ctl.replyf(522, "Network protocol not supported, use (%d).", family(v6))
		}
		if err != nil {
			return s.ctl.replyf(501, "Syntax error in EPSV argument.")
		}
		if arg.All {
			s.epsvAll = true
			return s.ctl.replyf(200, "EPSV ALL ok.")
		}
		if arg.Family != 0 && arg.Family != family(v6) {
			return s.ctl.replyf(522, "Network protocol not supported, use (%d).", family(v6))
		}
	default:
		if s.epsvAll {
			return s.ctl.replyf(501, "%s not allowed after EPSV ALL.", cmd.Verb)
		}
	}
	if (cmd.Verb == "PASV" || cmd.Verb == "SPSV") && v6 {
		return s.ctl.replyf(425, "%s needs an IPv4 address; use EPSV.", cmd.Verb)
	}

	s.closePlan()
	plan := &dataPlan{clientMode: cmd.Verb}
	why := s.flowVeto(s.serverLegPassive(true))
	plan.wantFlow = why == ""
	// The client's data port and its pinhole are set up while the server
	// answers our EPSV or PASV: neither depends on the other.
	var advAP netip.AddrPort
	var clientErr error
	clientLeg := sync.OnceFunc(func() { advAP, clientErr = s.passiveClientLeg(ctx, plan) })
	setup := s.setupServerLeg
	if s.answersAhead(plan) {
		setup = s.askServerAhead
	}
	if err := setup(ctx, plan, true, clientLeg); err != nil {
		return s.legFailed(plan, err)
	}
	clientLeg() // done already, unless the server leg needed no round trip
	if clientErr != nil {
		return s.legFailed(plan, clientErr)
	}
	if plan.wantFlow {
		// The server named its port: the kernel forwards the client there,
		// or the client connects to us after all (a flow is never
		// diverted: flowVeto).
		if why = s.openFlow(ctx, plan); why != "" {
			s.dialAhead(plan) // wantFlow: the server leg is passive
			if err := plan.clientLn.admit(ctx, netip.AddrPort{}); err != nil {
				s.log.Error("pinhole for client", zap.Error(err))
				return s.legFailed(plan, legErrorf("firewall refused the data port"))
			}
		}
	}
	s.noFlow(why)
	dl := plan.clientLn
	port := advAP.Port()
	var text string
	var err error
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
		zap.String("server_asked", plan.serverAsk), zap.Stringer("listen", dl.addr), zap.Stringer("advertised", advAP))
	return s.ctl.reply(rewrite.NewReply(code, text))
}

// handleActive answers PORT, EPRT and LPRT: we will connect to the client.
func (s *session) handleActive(ctx context.Context, cmd rewrite.Command) error {
	if s.epsvAll {
		return s.ctl.replyf(501, "%s not allowed after EPSV ALL.", cmd.Verb)
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
		s.peerWarn("bad active-mode address", zap.String("verb", cmd.Verb), zap.Error(err))
		if cmd.Verb == "EPRT" && errors.Is(err, rewrite.ErrUnsupportedFamily) {
			return s.ctl.replyf(522, "Network protocol not supported, use (1,2).")
		}
		return s.ctl.replyf(501, "Syntax error in %s address.", cmd.Verb)
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	if d := s.cfg.Policy.ActiveTarget(s.clientPeer.Addr(), target); !d.Allow {
		s.peerWarn("bounce attempt refused", zap.String("verb", cmd.Verb), zap.Stringer("target", target),
			zap.String("reason", d.Reason))
		s.deny("bounce", cmd.Verb, "active-target", d.Reason, 501)
		return s.ctl.replyf(501, "%s refused: %s.", cmd.Verb, d.Reason)
	}
	s.closePlan()
	s.noFlow("the client leg is active")
	plan := &dataPlan{clientMode: cmd.Verb, clientAddr: target}
	if err := s.setupServerLeg(ctx, plan, false, nil); err != nil {
		return s.legFailed(plan, err)
	}
	s.plan = plan
	return s.ctl.replyf(200, "%s command successful.", cmd.Verb)
}

// legFailed closes what a half-built plan opened and tells the client. Only a
// legError is the client's to hear; anything else ends the session.
func (s *session) legFailed(plan *dataPlan, err error) error {
	plan.release()
	var le *legError
	if errors.As(err, &le) {
		if le.code == 530 {
			return s.ctl.replyf(530, "Please log in first.")
		}
		return s.ctl.replyf(425, "Can't open data connection: %s.", le.msg)
	}
	return err
}

// setupServerLeg negotiates the server side of the plan: EPSV (or PASV) when
// we dial the server, EPRT (or PORT) when the server dials us. meanwhile
// (nil: nothing) may run while the server answers EPSV or PASV.
func (s *session) setupServerLeg(ctx context.Context, plan *dataPlan, clientPassive bool, meanwhile func()) error {
	if err := s.ensureServerProt(ctx); err != nil {
		return err
	}
	if s.serverLegPassive(clientPassive) {
		return s.serverPassive(ctx, plan, meanwhile)
	}
	return s.serverActive(ctx, plan)
}

// serverLegPassive reports whether the server leg of a plan is passive (we
// dial the server), given the client leg's mode.
func (s *session) serverLegPassive(clientPassive bool) bool {
	return s.cfg.ServerMode == ServerPassive || s.cfg.PreserveClientAddress ||
		(s.cfg.ServerMode == ServerClient && clientPassive)
}

// serverPortKnown starts the server leg's connection once the server named
// its passive port, unless the kernel may forward the plan (handlePassive
// then decides).
func (s *session) serverPortKnown(plan *dataPlan) {
	if !plan.wantFlow {
		s.dialAhead(plan)
	}
}

// passiveClientLeg reserves the data port the client will connect to and
// opens its pinhole; it returns the address the passive reply advertises.
func (s *session) passiveClientLeg(ctx context.Context, plan *dataPlan) (netip.AddrPort, error) {
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
	dl, err := s.srv.ports.expect(ctx, local, s.clientPeer.Addr(), s.clientHop.Addr())
	if err != nil {
		s.log.Error("data listener", zap.Error(err))
		return netip.AddrPort{}, legErrorf("no data port available")
	}
	plan.clientLn = dl
	advAP, divert := s.advertised(dl.addr)
	if plan.wantFlow {
		// The kernel will forward the connection, never to us: the
		// pinhole comes only if it does not (handlePassive).
		return advAP, nil
	}
	var via netip.AddrPort // where the client will connect, when the firewall diverts it here
	if divert {
		via = advAP
	}
	if err := dl.admit(ctx, via); err != nil {
		s.log.Error("pinhole for client", zap.Error(err))
		return netip.AddrPort{}, legErrorf("firewall refused the data port")
	}
	return advAP, nil
}

func (s *session) serverPassive(ctx context.Context, plan *dataPlan, meanwhile func()) error {
	verb, err := s.passiveVerb()
	for err == nil && verb != "" {
		var rep *rewrite.Reply
		if rep, err = s.ctl.exchangeWhile(ctx, verb, "", meanwhile); err != nil {
			return err
		}
		verb, err = s.serverPassiveReply(plan, verb, rep)
	}
	return err
}

// passiveVerb is the request for the server's passive port: EPSV, or PASV
// once the server refused EPSV.
func (s *session) passiveVerb() (string, error) {
	switch {
	case !s.noEPSV:
		return "EPSV", nil
	case !s.serverPeer.Addr().Is4():
		return "", legErrorf("server refused EPSV and PASV cannot reach an IPv6 server")
	}
	return "PASV", nil
}

// serverPassiveReply takes the server's final reply to verb (EPSV or PASV):
// the plan learns the server's data port and its connection starts, or
// next is the request to try instead (PASV after EPSV was refused).
func (s *session) serverPassiveReply(plan *dataPlan, verb string, rep *rewrite.Reply) (next string, err error) {
	srvIP := s.serverPeer.Addr()
	if verb == "EPSV" {
		if rep.Code == 229 {
			port, err := rewrite.ParseEPSV(rep.Text())
			if err != nil {
				s.peerWarn("server sent an invalid 229 reply", zap.Stringer("reply", rep), zap.Error(err))
				return "", legErrorf("server sent an invalid EPSV reply")
			}
			plan.serverMode, plan.serverAddr = "EPSV", netip.AddrPortFrom(srvIP, port)
			s.serverPortKnown(plan)
			return "", nil
		}
		if rep.Code == 530 || !s.loggedIn {
			// Not logged in yet: nothing to learn about EPSV from this.
			return "", errNotLoggedIn
		}
		if rep.Code < 500 {
			return "", legErrorf("server answered EPSV with %d", rep.Code)
		}
		s.noEPSV = true
		s.log.Debug("server refused EPSV; using PASV", zap.Int("code", rep.Code))
		return s.passiveVerb()
	}
	if rep.Code == 530 {
		return "", errNotLoggedIn
	}
	if rep.Code != 227 {
		return "", legErrorf("server answered PASV with %d", rep.Code)
	}
	ap, err := rewrite.ParsePASV(rep.Text())
	if err != nil {
		s.peerWarn("server sent an invalid 227 reply", zap.Stringer("reply", rep), zap.Error(err))
		return "", legErrorf("server sent an invalid PASV reply")
	}
	if !s.cfg.TrustServerPASVAddress {
		if ap.Addr() != srvIP {
			s.log.Debug("ignoring the address in the server's 227 reply", zap.Stringer("said", ap.Addr()),
				zap.Stringer("using", srvIP))
		}
		ap = netip.AddrPortFrom(srvIP, ap.Port())
	} else if ap.Addr() != srvIP {
		// Trusted, but still a destination: the policy that chose the
		// server decides whether ftpgate may dial this address.
		if d := s.cfg.Policy.Destination(ap); !d.Allow {
			s.peerWarn("server's 227 address refused by the destination policy", zap.Stringer("said", ap), zap.String("reason", d.Reason))
			s.deny("policy", "PASV", "destination", "server's PASV address: "+d.Reason, 425)
			return "", legErrorf("the server's data address is not an allowed destination")
		}
	}
	plan.serverMode, plan.serverAddr = "PASV", ap
	s.serverPortKnown(plan)
	return "", nil
}

// Answering ahead. A passive client leg in front of a passive server leg
// does not need the server's port to be answered: the client connects to
// ftpgate's own data port either way. So, once logged in, ftpgate sends the
// server its EPSV (or PASV) and answers the client at once, without
// waiting for the server; the server's reply is read when it comes, while
// the client connects and sends its transfer command (the session's loop,
// unaskedReply), or before the next command goes to the server
// (settlePlan), and the server leg's connection starts then. The client's
// PASV or EPSV no longer waits for the server's round trip.
//
// A server that cannot give a passive port is heard at the transfer
// command, which gets the 425 that EPSV would have got. Not ahead: before
// the login (the server's 530 is the client's answer) and when the kernel
// may forward the transfer (the flow needs the server's port before the
// client connects).

// answersAhead reports whether plan's client may be answered ahead.
func (s *session) answersAhead(plan *dataPlan) bool {
	return s.loggedIn && !plan.wantFlow && s.serverLegPassive(true)
}

// askServerAhead is setupServerLeg for a plan answered ahead: it sends the
// request for the server's passive port and returns without its reply,
// running meanwhile (the client leg) after sending.
func (s *session) askServerAhead(ctx context.Context, plan *dataPlan, _ bool, meanwhile func()) error {
	if err := s.ensureServerProt(ctx); err != nil {
		return err
	}
	verb, err := s.passiveVerb()
	if err != nil {
		return err
	}
	if err := s.ctl.send(rewrite.Command{Verb: verb}); err != nil {
		return err
	}
	plan.serverAsk, s.asked = verb, plan // read even if the plan fails now
	meanwhile()
	return nil
}

// serverAnsweredAhead takes the server's reply to the request sent ahead
// (the session's asked plan). A server leg that cannot be set up is the
// transfer's 425; an error ends the session. The reply of a plan gone
// meanwhile (the client's data port failed, the client asked again) is
// only read.
func (s *session) serverAnsweredAhead(rep *rewrite.Reply) error {
	if rep.Code < 200 {
		return nil // a preliminary reply: the final one follows
	}
	plan := s.asked
	verb := plan.serverAsk
	plan.serverAsk, s.asked = "", nil
	if plan != s.plan {
		return nil
	}
	next, err := s.serverPassiveReply(plan, verb, rep)
	if err != nil {
		if le := (*legError)(nil); !errors.As(err, &le) {
			return err
		}
		s.log.Debug("server data port not set up; the transfer command will hear why", zap.String("verb", verb),
			zap.Int("code", rep.Code), zap.Error(err))
		plan.serverErr = err
		return nil
	}
	if next != "" {
		if err := s.ctl.send(rewrite.Command{Verb: next}); err != nil {
			return err
		}
		plan.serverAsk, s.asked = next, plan
	}
	return nil
}

// settlePlan reads the server's reply to a plan's request sent ahead, so
// that the next command to the server is answered by its own reply.
func (s *session) settlePlan(ctx context.Context) error {
	for s.asked != nil {
		rep, err := s.ctl.serverReply(ctx, s.cfg.IdleTimeout)
		if err != nil {
			return err
		}
		if err := s.serverAnsweredAhead(rep); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) serverActive(ctx context.Context, plan *dataPlan) error {
	dl, err := s.srv.ports.expect(ctx, s.serverLocal.Addr(), s.serverPeer.Addr(), s.serverPeer.Addr())
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
		rep, err := s.ctl.exchange(ctx, "EPRT", arg)
		if err != nil {
			return err
		}
		switch {
		case rep.Code == 200:
			plan.serverMode = "EPRT"
		case rep.Code == 530 || !s.loggedIn:
			return errNotLoggedIn // nothing to learn about EPRT before a login
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
		rep, err := s.ctl.exchange(ctx, "PORT", arg)
		if err != nil {
			return err
		}
		if rep.Code == 530 {
			return errNotLoggedIn
		}
		if rep.Code != 200 {
			return legErrorf("server answered PORT with %d", rep.Code)
		}
		plan.serverMode = "PORT"
	}
	// Only now that the server accepted the address may it connect.
	if err := dl.admit(ctx, netip.AddrPort{}); err != nil {
		s.log.Error("pinhole for server", zap.Error(err))
		return legErrorf("firewall refused the data port")
	}
	return nil
}

func family(v6 bool) int {
	if v6 {
		return 2
	}
	return 1
}
