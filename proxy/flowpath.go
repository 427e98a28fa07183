package proxy

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// The kernel data path (Config.DataPath "kernel"): a passive transfer whose
// server leg is passive too is not relayed at all. Once the server has
// named its data port, the firewall forwards exactly the next connection
// from the client to our advertised port on to the server's port, from our
// address (nat.FlowForwarder: one DNAT and one SNAT element, removed as soon
// as the client's SYN went by), and conntrack moves the bytes: they never
// enter ftpgate. The firewall logs the flow's SYN, FIN and RST packets to
// ftpgate, so the session still knows when the data ended and how many
// bytes moved (the sender's FIN sequence number less its SYN's), holds the
// server's final reply until then, and records the transfer exactly.
//
// It needs a host that routes between client and server (a gateway, a DMZ
// relay with forwarding on) and own-table mode. Any transfer it cannot
// serve takes the splice relay, with a log line saying why: TLS data, an
// active leg, an upload size cap (the relay must count the bytes), the
// transparent modes' diverted data, PreserveClientAddress, or a host that
// does not forward. The data idle timeout does not apply to a forwarded
// flow (ftpgate sees no bytes); a stalled one ends when its server gives up.
//
// kernelpath.go is the other kernel design measured, BPF socket
// redirection between ftpgate's own two sockets (DataPathSockmap).

// flowEndWait bounds how long the server's final reply waits for the flow's
// end to be logged after the reply came: the FIN normally passed the
// firewall before the server wrote its reply.
const flowEndWait = time.Second

// flowVeto says why the next passive plan cannot be forwarded in the
// kernel, or "" when it may be (the server's reply can still rule it out).
func (s *session) flowVeto(serverPassive bool) string {
	cfg := s.cfg
	switch {
	case cfg.DataPath != DataPathKernel:
		return "not asked for" // noFlow logs nothing
	case s.srv.flows == nil:
		return "the firewall cannot forward data flows (it needs firewall mode own-table)"
	case !serverPassive:
		return "the server leg is active"
	case cfg.PreserveClientAddress:
		return "the server must see the client's own address"
	case cfg.Mode.Transparent() && cfg.DivertData:
		return "the client's data connection is diverted"
	case cfg.Limits.MaxUploadSize > 0:
		return "the upload size cap needs the relay to count the bytes"
	case s.ftps.dataClient != nil:
		return "TLS data"
	case s.clientHop.Addr().Unmap().Is4() != s.serverPeer.Addr().Unmap().Is4():
		return "the client and the server are of different address families"
	}
	if err := s.srv.flows.FlowsUsable(!s.clientHop.Addr().Unmap().Is4()); err != nil {
		return err.Error()
	}
	return ""
}

// noFlow logs why a transfer that asked for the kernel path is relayed
// (why != ""); without that ask it logs nothing.
func (s *session) noFlow(why string) {
	if why != "" && s.cfg.DataPath == DataPathKernel {
		s.log.Info("kernel data path not used: "+why+"; splicing instead", zap.String("reason", why))
	}
}

// openFlow has the firewall forward the plan's client connection to the
// server's data port; it reports why not ("" when it did).
func (s *session) openFlow(ctx context.Context, plan *dataPlan) string {
	if s.ftps.dataServer != nil {
		return "TLS data toward the server"
	}
	f := nat.Flow{Peer: plan.clientLn.hop, Local: plan.clientLn.addr, Target: plan.serverAddr, Source: s.serverLocal.Addr()}
	w, err := s.srv.flows.OpenFlow(ctx, f, s.cfg.DataTimeout)
	if err != nil {
		s.log.Warn("kernel data path: the firewall refused the flow", zap.Error(err))
		return "the firewall refused the flow"
	}
	plan.flow, plan.forwarded = w, true
	if ce := s.log.Check(zap.DebugLevel, "kernel data path"); ce != nil {
		ce.Write(zap.Stringer("flow", w.Flow()))
	}
	return ""
}

// awaitFlow runs a transfer the kernel forwards (w), after the server's first
// reply (150) went to the client: it follows the flow's logged packets and
// the server's replies until the final reply has come and the data has
// ended, passing an ABOR on meanwhile. It returns what awaitTransfer does.
func (s *session) awaitFlow(ctx context.Context, w *nat.FlowWatch, up bool) (res relayResult, final *rewrite.Reply, abort *rewrite.Command, err error) {
	fl := w.Flow()
	var toServer, toClient nat.FlowBytes
	sender := &toClient
	if up {
		sender = &toServer
	}
	cmds := s.ctl.cmds
	var endWait <-chan time.Time
	synSeen := false
	var from netip.AddrPort // the client's end of the forwarded connection
	for final == nil || (sender.Started() && !sender.Ended() && endWait != nil) {
		select {
		case p := <-w.C:
			if p.Src.Addr() == fl.Peer && p.Dst == fl.Target {
				toServer.Note(p)
				if p.Flags&nat.TCPSyn != 0 && !synSeen {
					synSeen, from = true, p.Src
					// One connection per flow: no later one is forwarded.
					// Off the transfer's path; Close waits for it.
					s.srv.ports.closing.Go(func() {
						if err := w.Started(context.Background()); err != nil {
							s.log.Warn("kernel data path: removing the flow's forwarding", zap.Error(err))
						}
					})
				}
			} else {
				toClient.Note(p)
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
			t := time.NewTimer(flowEndWait)
			defer t.Stop()
			endWait = t.C
		case <-endWait:
			s.log.Warn("kernel data path: the data connection's end was not seen in time; the byte count is what was seen",
				zap.Stringer("flow", fl))
			endWait = nil
		case ev := <-cmds:
			if !s.firstAbort(ev, abort != nil, &cmds) {
				continue
			}
			c := ev.cmd
			abort = &c
			// As the relay closes both legs: the server, blocked in a
			// write or not, hears at once that its transfer ended.
			var err error
			if synSeen {
				err = w.Reset(ctx, from)
			} else {
				err = w.Started(ctx) // no connection yet: none may come
			}
			if err != nil {
				s.log.Warn("kernel data path: resetting the flow for ABOR", zap.Error(err))
			}
			if err := s.sendAbort(*abort); err != nil {
				return res, nil, nil, err
			}
		case <-ctx.Done():
			return res, nil, nil, ctx.Err()
		}
	}
	if sender.Ended() {
		res.n = sender.Bytes() // past 4 GiB too: the sampled packets carry the count over each wrap
		if sender.Reset() {
			res.err = errors.New("the data connection was reset")
		}
	}
	if w.Lost() {
		s.log.Warn("kernel data path: the flow log overran; the byte count may be wrong", zap.Stringer("flow", fl))
	}
	return res, final, abort, nil
}
