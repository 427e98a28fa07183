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

// Running one transfer: the transfer command goes to the server, both legs of
// the pending data plan connect (accept or dial), the relay moves the bytes,
// and the server's final reply (226/426) is held until the relay has drained.
// An ABOR meanwhile closes the data connections and is passed on.

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
	rec := transferRecord{start: time.Now(), cmd: cmd, plan: s.plan}
	defer func() { s.recordTransfer(&rec) }()
	plan := s.plan
	if plan == nil {
		rec.cause = "no data connection set up"
		return s.ctl.replyf(425, "Use PORT, EPRT, PASV or EPSV first.")
	}
	s.plan = nil // a data connection serves one transfer
	defer plan.release()

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
	if plan.serverErr != nil { // answered ahead, and then the server could not give a port
		rec.cause = plan.serverErr.Error()
		return s.legFailed(plan, plan.serverErr)
	}
	if plan.serverPassive() && plan.flow == nil {
		srvConn, err = plan.takeAhead(ctx)
		if err != nil {
			s.peerWarn("data connection to server failed", zap.Stringer("addr", plan.serverAddr), zap.Error(err))
			rec.cause = "data connection to the server failed"
			return s.ctl.replyf(425, "Can't open data connection to the server.")
		}
	}
	if err := s.ctl.send(cmd); err != nil {
		return err
	}
	first, err := s.ctl.serverReply(ctx, s.cfg.IdleTimeout)
	if err != nil {
		rec.cause = err.Error()
		return err
	}
	if err := s.ctl.reply(first); err != nil {
		rec.cause = err.Error()
		return err
	}
	size := announcedSize(first)
	if first.Code >= 200 { // refused (550 and the like) or done without data
		if first.Code >= 400 {
			rec.refused, rec.cause = true, "the server refused the transfer"
		}
		return nil
	}
	up := upload(cmd.Verb)
	if plan.flow != nil {
		return s.forwardedTransfer(ctx, cmd, plan, up, size, &rec)
	}

	clientListens, serverListens := plan.clientPassive(), !plan.serverPassive() // connectLegs ends the listening
	cliConn, srvConn, early, err := s.connectLegs(ctx, plan, srvConn)
	if err != nil {
		srvConn = nil // connectLegs closed it
		rec.cause = err.Error()
		var gone *serverGaveUp
		if errors.As(err, &gone) {
			return s.ctl.reply(gone.reply)
		}
		var le *legError
		if errors.As(err, &le) {
			if early != nil { // the server has finished already
				return s.ctl.replyf(425, "Can't open data connection: %s.", le.msg)
			}
			return s.abandonTransfer(ctx, le.msg)
		}
		return err
	}

	// The ports we accepted on count as used until these connections end.
	if serverListens {
		defer s.srv.ports.hold(addrPortOf(srvConn.LocalAddr()).Port())()
	}
	if clientListens {
		defer s.srv.ports.hold(addrPortOf(cliConn.LocalAddr()).Port())()
	}
	cliData, srvData, err := s.secureData(ctx, cliConn, srvConn)
	if err != nil {
		rec.cause = err.Error()
		return s.dataTLSFailed(ctx, err, early, srvConn, cliConn)
	}
	rec.tls = s.ftps.dataClient != nil
	fl := &flight{verb: cmd.Verb, path: cmd.Arg, direction: "download", start: rec.start, size: size, dst: cliConn}
	if up {
		fl.direction, fl.dst = "upload", srvConn
	}
	fl.dstBase, _ = bytesAcked(fl.dst)
	s.seen.flight.Store(fl)
	defer s.seen.flight.Store(nil)
	done := make(chan relayResult, 1)
	if up {
		s.startRelay(srvData, cliData, true, max(s.cfg.Limits.MaxUploadSize, 0), done)
	} else {
		s.startRelay(cliData, srvData, false, 0, done)
	}
	// The legs are up: the expectations go now (each pinhole went when its
	// connection came, in deliver), so that the peer can expect another
	// connection on the same port meanwhile. Their listeners close in the
	// deferred release, after the client has its final reply: with one P
	// the session runs on before the relay goroutine's first splice, and a
	// listener's close and its accept loop's hand-off here put tens of
	// microseconds between the 150 and the first byte.
	plan.leave()
	res, final, abort, err := s.awaitTransfer(ctx, done, early, srvConn, cliConn)
	return s.endTransfer(ctx, cmd, plan, up, res, final, abort, err, &rec)
}

// forwardedTransfer runs a transfer whose data the kernel forwards
// (flowpath.go), after the server's 150 went to the client.
func (s *session) forwardedTransfer(ctx context.Context, cmd rewrite.Command, plan *dataPlan, up bool, size int64, rec *transferRecord) error {
	// The flow is ours to close now, after the client had its reply and
	// off the session's path (a new flow on the same port and peer is
	// refused until the close is done: nat's OpenFlow).
	w := plan.flow
	plan.flow = nil
	defer s.srv.ports.hold(plan.clientLn.addr.Port())()
	defer func() {
		s.srv.ports.closing.Go(func() {
			if err := w.Close(context.Background()); err != nil {
				s.log.Warn("kernel data path: removing the flow", zap.Error(err))
			}
		})
	}()
	fl := &flight{verb: cmd.Verb, path: cmd.Arg, direction: "download", start: rec.start, size: size}
	if up {
		fl.direction = "upload"
	}
	s.seen.flight.Store(fl)
	defer s.seen.flight.Store(nil)
	res, final, abort, err := s.awaitFlow(ctx, w, up)
	return s.endTransfer(ctx, cmd, plan, up, res, final, abort, err, rec)
}

// endTransfer records a transfer whose data has ended and gives the client
// the final reply (passing an ABOR's second reply on after it).
func (s *session) endTransfer(ctx context.Context, cmd rewrite.Command, plan *dataPlan, up bool, res relayResult,
	final *rewrite.Reply, abort *rewrite.Command, err error, rec *transferRecord) error {
	rec.bytes, rec.aborted = res.n, abort != nil
	if err != nil {
		rec.cause = err.Error()
		return err
	}
	if res.err != nil {
		rec.cause = res.err.Error()
	}
	if errors.Is(res.err, errOverLimit) && abort == nil {
		// The server saw its data connection reset and answered for an
		// incomplete upload; the client hears why.
		d := s.cfg.Limits.UploadTooLarge()
		s.log.Warn("upload cut at the size limit", zap.String("path", cmd.Arg), zap.Int64("bytes", res.n),
			zap.Int64("limit", s.cfg.Limits.MaxUploadSize), zap.Int("server_code", final.Code))
		s.deny("limit", cmd.Verb, d.Rule, d.Reason, d.Code)
		final = rewrite.NewReply(d.Code, d.Text)
	}
	if up {
		s.bytesUp += res.n
	} else {
		s.bytesDown += res.n
	}
	s.srv.transfers.Add(1)
	took := time.Since(rec.start)
	rerr := s.ctl.reply(final)
	// The record follows the client's reply: a client that is quick with
	// its next command waits no longer for it. The session reads that
	// command only after the record is written, so the records stay in
	// the order of the commands.
	s.logTransfer(cmd, plan, up, res, final, took, abort)
	if rerr != nil {
		return rerr
	}
	if abort != nil {
		return s.finishAbort(ctx)
	}
	return nil
}

// awaitTransfer waits until the relay has drained and the server's final
// reply has come. A client ABOR meanwhile closes the data connections and is
// passed on; other commands wait in a bounded queue.
//
// srv and cli are the legs' TCP connections; the caller closes them after
// the client's final reply.
func (s *session) awaitTransfer(ctx context.Context, done <-chan relayResult, early *rewrite.Reply, srv, cli *net.TCPConn) (res relayResult, final *rewrite.Reply, abort *rewrite.Command, err error) {
	conns := []*net.TCPConn{srv, cli}
	final = early
	relayed := false
	cmds := s.ctl.cmds
	var stall <-chan time.Time // after the relay ends, the server must answer in time
	idle := newIdleWatch(s.cfg.Limits.DataIdleTimeout, conns)
	defer idle.stop()
	stalled := false
	for !relayed || final == nil {
		select {
		case now := <-idle.tick:
			if relayed || stalled || !idle.stalled(now) {
				continue
			}
			// No byte in either direction for the idle timeout: the legs
			// go, the server's final reply is swallowed for our 426.
			stalled = true
			s.peerWarn("data connection stalled: transfer aborted", zap.Duration("idle", s.cfg.Limits.DataIdleTimeout))
			for _, c := range conns {
				// A reset, not an end of file: the client must not take the
				// stream's end for a complete file, and a server blocked in a
				// write hears at once that its transfer failed and answers.
				c.SetLinger(0)
				c.Close()
			}
		case res = <-done:
			relayed = true
			// The other direction carries nothing in stream mode. Servers
			// wait for our close before their final reply (ProFTPD's
			// lingering close; vsftpd's 226 came 42ms late without it), so
			// the server's leg closes now if that reply is still to come.
			// The client's leg has had its end of file (or sent its own):
			// it closes after the final reply, off the client's path to it
			// (in 7 alternating pairs of the bench's profile, the data's end
			// to the 226 took less in 15 of 21 columns, by about 13µs at the
			// median). A broken leg's peer may still be sending: then both
			// close now.
			switch {
			case res.err != nil:
				for _, c := range conns {
					c.Close()
				}
			case final == nil:
				srv.Close()
			}
			if final == nil {
				wait := s.cfg.IdleTimeout
				if stalled {
					wait = min(wait, stallReplyWait) // a server that stalled may be gone for good
				}
				t := time.NewTimer(wait)
				defer t.Stop()
				stall = t.C
			}
		case ev := <-s.ctl.replies:
			rep, err := s.transferReply(ev)
			if err != nil {
				return res, nil, nil, err
			}
			if rep == nil {
				continue
			}
			final = rep
			if stalled {
				final = rewrite.NewReply(426, fmt.Sprintf("Transfer aborted: no data moved for %s.", s.cfg.Limits.DataIdleTimeout))
			}
		case ev := <-cmds:
			if !s.firstAbort(ev, abort != nil, &cmds) {
				continue
			}
			c := ev.cmd
			abort = &c
			for _, c := range conns {
				c.Close()
			}
			if err := s.sendAbort(*abort); err != nil {
				return res, nil, nil, err
			}
		case <-stall:
			if stalled {
				// The client hears why the transfer ended; a reply the server
				// sends later would answer the client's next command, so the
				// session ends.
				s.ctl.replyf(426, "Transfer aborted: no data moved for %s.", s.cfg.Limits.DataIdleTimeout)
				return res, nil, nil, fmt.Errorf("no reply from the server after a stalled transfer: %w", errDataStall)
			}
			s.ctl.replyf(421, "Timeout waiting for the FTP server to finish the transfer.")
			return res, nil, nil, fmt.Errorf("waiting for the server's transfer reply: %w", errTimeout)
		case <-ctx.Done():
			return res, nil, nil, ctx.Err()
		}
	}
	if stalled {
		res.err = errDataStall
	}
	return res, final, abort, nil
}

// transferReply takes a server reply that came while a transfer ran: a
// preliminary one (1xx) goes to the client and nil is returned; otherwise
// the final reply.
func (s *session) transferReply(ev replyEvent) (*rewrite.Reply, error) {
	if ev.err != nil {
		return nil, s.ctl.serverBroke(ev.err)
	}
	if ev.reply.Code < 200 {
		return nil, s.ctl.reply(ev.reply)
	}
	return ev.reply, nil
}

// firstAbort takes a client command that came while a transfer ran and
// reports whether it is the transfer's first ABOR (aborted: one came
// before), for the caller to end the transfer with. Anything else waits in
// a bounded queue; at its bound *cmds becomes nil, and the client waits in
// TCP until the transfer ends.
func (s *session) firstAbort(ev *cmdEvent, aborted bool, cmds *chan *cmdEvent) bool {
	if ev.err == nil && ev.cmd.Verb == "ABOR" && !aborted {
		return true
	}
	s.ctl.queued = append(s.ctl.queued, ev)
	if len(s.ctl.queued) >= maxQueued {
		*cmds = nil
	}
	return false
}

// stallReplyWait bounds the wait for the server's final reply after a
// stalled transfer was cut.
const stallReplyWait = 2 * time.Second

// idleWatch notices a transfer that moves no byte in either direction for a
// while. It polls the kernel's received-bytes counters of the data sockets
// (TCP_INFO) a few times per timeout: nothing on the data path, and it sees
// spliced and TLS legs alike.
type idleWatch struct {
	tick    <-chan time.Time
	ticker  *time.Ticker
	timeout time.Duration
	conns   []*net.TCPConn
	last    int64
	moved   time.Time
}

func newIdleWatch(timeout time.Duration, conns []*net.TCPConn) *idleWatch {
	w := &idleWatch{timeout: timeout, conns: conns, moved: time.Now()}
	if timeout <= 0 {
		return w // off: tick stays nil
	}
	w.ticker = time.NewTicker(max(min(timeout/4, 5*time.Second), 10*time.Millisecond))
	w.tick = w.ticker.C
	w.last = w.received()
	return w
}

func (w *idleWatch) received() int64 {
	var n int64
	for _, c := range w.conns {
		if b, ok := bytesReceived(c); ok {
			n += b
		}
	}
	return n
}

// stalled reports whether nothing moved for the timeout, as of now.
func (w *idleWatch) stalled(now time.Time) bool {
	if n := w.received(); n != w.last {
		w.last, w.moved = n, now
		return false
	}
	return now.Sub(w.moved) >= w.timeout
}

func (w *idleWatch) stop() {
	if w.ticker != nil {
		w.ticker.Stop()
	}
}

// sendAbort passes ABOR on, with the Telnet IP and Synch the client sent.
func (s *session) sendAbort(c rewrite.Command) error {
	if c.Telnet != 0 {
		if err := s.ctl.sw.WriteTelnetAbort(); err != nil {
			return fmt.Errorf("write to server: %w", err)
		}
	}
	return s.ctl.send(c)
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
	case ev := <-s.ctl.replies:
		if ev.err != nil {
			return s.ctl.serverBroke(ev.err)
		}
		return s.ctl.reply(ev.reply)
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.log.Info("no reply to ABOR from the server; resynchronising with NOOP")
	if err := s.ctl.send(rewrite.Command{Verb: "NOOP"}); err != nil {
		return err
	}
	for range 4 {
		rep, err := s.ctl.serverReply(ctx, s.cfg.IdleTimeout)
		if err != nil {
			return err
		}
		if rep.Code == 200 {
			return nil
		}
		if err := s.ctl.reply(rep); err != nil {
			return err
		}
	}
	s.ctl.replyf(421, "Lost step with the FTP server after ABOR.")
	return errors.New("server replies out of step after ABOR")
}

// abandonTransfer ends a transfer whose client or server leg never came:
// the server's data connection is closed (by connectLegs), its final reply is
// swallowed, and the client hears 425.
func (s *session) abandonTransfer(ctx context.Context, why string) error {
	if _, err := s.ctl.serverReply(ctx, s.cfg.IdleTimeout); err != nil {
		return err
	}
	return s.ctl.replyf(425, "Can't open data connection: %s.", why)
}

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
	deadline := time.Now().Add(s.cfg.DataTimeout)
	cliCh := make(chan legResult, 1)
	go func() {
		var r legResult
		if plan.clientPassive() {
			r.c, r.err = plan.clientLn.accept(legCtx, deadline)
		} else {
			r.c, r.err = s.dialData(legCtx, s.clientSide, plan.clientAddr, false)
		}
		cliCh <- r
	}()
	var srvCh chan legResult
	if !plan.serverPassive() {
		srvCh = make(chan legResult, 1)
		go func() {
			c, err := plan.serverLn.accept(legCtx, deadline)
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
		plan.release() // before the client hears anything
		return nil, nil, early, e
	}
	for pending > 0 {
		select {
		case r := <-cliCh:
			pending--
			if r.err != nil {
				s.peerWarn("client data connection failed", zap.String("client_mode", plan.clientMode), zap.Error(r.err))
				return fail(legErrorf("the client did not connect"))
			}
			cli = r.c
		case r := <-srvCh:
			pending--
			if r.err != nil {
				s.peerWarn("server data connection failed", zap.String("server_mode", plan.serverMode), zap.Error(r.err))
				return fail(legErrorf("the server did not connect"))
			}
			srv = r.c
		case ev := <-s.ctl.replies:
			if ev.err != nil {
				return fail(s.ctl.serverBroke(ev.err))
			}
			if ev.reply.Code < 200 {
				if err := s.ctl.reply(ev.reply); err != nil {
					return fail(err)
				}
				continue
			}
			if ev.reply.Code < 400 && early == nil {
				early = ev.reply
				continue
			}
			s.peerWarn("server ended the transfer before the data connection was up", zap.Int("code", ev.reply.Code))
			return fail(&serverGaveUp{ev.reply})
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	cancel()
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
	if plan.forwarded {
		fields = append(fields, zap.String("data_path", DataPathKernel))
	}
	if abort != nil {
		fields = append(fields, zap.Bool("aborted", true))
	}
	if res.err != nil {
		fields = append(fields, zap.String("relay_error", res.err.Error()))
	}
	fields = append(fields, s.ftps.transferFields()...)
	s.log.Info("transfer", fields...)
}

// dialData opens a data connection to target from our local address src
// (invalid: the kernel's choice). transparent allows a non-local src.
func (s *session) dialData(ctx context.Context, src netip.Addr, target netip.AddrPort, transparent bool) (*net.TCPConn, error) {
	ka := dataKeepAlive(s.cfg)
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: keepAliveIdle(ka), KeepAliveConfig: ka, Control: s.cfg.Hooks.DialControl}
	if transparent {
		d.Control = s.cfg.Hooks.TransparentDialControl
	}
	if src.IsValid() && src.Is4() == target.Addr().Is4() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		d.Control = bindAddressOnly(d.Control)
	}
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// transferRecord is what a transfer's record is made of, filled in as the
// transfer goes; recordTransfer reports it however the transfer ended.
type transferRecord struct {
	start   time.Time
	cmd     rewrite.Command
	plan    *dataPlan
	bytes   int64
	tls     bool
	aborted bool
	refused bool   // the server refused the command (4xx/5xx before any data)
	cause   string // why it failed; empty when it did not
}

// recordTransfer reports one ended transfer to the observer, with the code
// of the last reply the client got.
func (s *session) recordTransfer(r *transferRecord) {
	ev := TransferEvent{
		Session:   s.id,
		Start:     r.start,
		Duration:  time.Since(r.start),
		Client:    s.clientPeer,
		Server:    s.serverPeer,
		User:      s.user,
		Verb:      r.cmd.Verb,
		Path:      s.absPath(r.cmd.Arg),
		Direction: "download",
		Bytes:     r.bytes,
		Code:      s.ctl.lastCode,
		TLS:       r.tls,
		ASCII:     s.ascii,
		Cause:     r.cause,
	}
	if upload(r.cmd.Verb) {
		ev.Direction = "upload"
	}
	if r.plan != nil {
		ev.ClientMode, ev.ServerMode = r.plan.clientMode, r.plan.serverMode
	}
	switch {
	case r.aborted:
		ev.Result = "aborted"
	case r.refused:
		ev.Result = "refused"
	case r.cause == "" && ev.Code >= 200 && ev.Code < 300:
		ev.Result = "ok"
	default:
		ev.Result = "failed"
		if ev.Cause == "" {
			ev.Cause = fmt.Sprintf("reply %d", ev.Code)
		}
	}
	s.srv.obs.Observe(ev)
}
