package nat

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Kernel-forwarded data flows (the kernel data path): instead of accepting a
// data connection and dialing the other end, the proxy has the kernel
// forward exactly one expected connection itself. The owned table DNATs the
// next connection Peer -> Local to Target and SNATs it to Source, so Target
// sees it come from the proxy's address, and conntrack moves the bytes: no
// byte enters the proxy's process. A filter rule copies the flow's SYN,
// FIN and RST packets to an NFLOG group, which the firewall reads, so the
// proxy still learns when the data ended and exactly how many bytes moved
// (a FIN's sequence number less the SYN's). It needs a host that forwards
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) and own-table mode.

// DefaultFlowLogGroup is the NFLOG group of the flow log when
// FlowConfig.LogGroup is zero.
const DefaultFlowLogGroup = 4655

// FlowConfig turns on kernel-forwarded data flows (Config.Flows).
type FlowConfig struct {
	Enabled  bool
	LogGroup uint16 // NFLOG group of the flow log; zero means DefaultFlowLogGroup
}

func (c FlowConfig) group() uint16 {
	if c.LogGroup == 0 {
		return DefaultFlowLogGroup
	}
	return c.LogGroup
}

// Flow is one expected connection for the kernel to forward.
type Flow struct {
	Peer   netip.Addr     // who will connect
	Local  netip.AddrPort // where: an address of ours and a data port (as the peer was told)
	Target netip.AddrPort // where the kernel sends the connection
	Source netip.Addr     // the address Target sees it come from: ours, on Target's side
}

// String returns "198.18.0.2 -> 198.18.1.1:40001 => 198.18.2.2:30001 from 198.18.2.1".
func (f Flow) String() string {
	return f.Peer.String() + " -> " + f.Local.String() + " => " + f.Target.String() + " from " + f.Source.String()
}

// normalize returns the flow with unmapped, zoneless addresses, or an error
// saying why it cannot be forwarded.
func (f Flow) normalize() (Flow, error) {
	n := Flow{
		Peer:   f.Peer.Unmap().WithZone(""),
		Local:  netip.AddrPortFrom(f.Local.Addr().Unmap().WithZone(""), f.Local.Port()),
		Target: netip.AddrPortFrom(f.Target.Addr().Unmap().WithZone(""), f.Target.Port()),
		Source: f.Source.Unmap().WithZone(""),
	}
	v4 := n.Peer.Is4()
	for _, a := range []netip.Addr{n.Peer, n.Local.Addr(), n.Target.Addr(), n.Source} {
		switch {
		case !a.IsValid() || a.IsUnspecified():
			return Flow{}, fmt.Errorf("flow %s: every address must be given and specified", f)
		case a.Is4() != v4:
			return Flow{}, fmt.Errorf("flow %s: addresses of different families", f)
		}
	}
	if n.Local.Port() == 0 || n.Target.Port() == 0 {
		return Flow{}, fmt.Errorf("flow %s: port 0", f)
	}
	return n, nil
}

// FlowForwarder is a Firewall that can forward data flows in the kernel.
type FlowForwarder interface {
	// FlowsUsable says why flows of the family cannot be forwarded here
	// (nil: they can), the host's forwarding included (read at most a
	// second before).
	FlowsUsable(v6 bool) error
	// OpenFlow has the kernel forward the next connection Peer -> Local
	// to Target for at most ttl (<= 0: the pinhole default) unless it has
	// started by then, and returns the watch that reports its packets. It
	// does not ask FlowsUsable again: the caller has.
	OpenFlow(ctx context.Context, f Flow, ttl time.Duration) (*FlowWatch, error)
}

// FlowWatch is one open flow: its logged packets come on C, in order, until
// Close. It holds the flow's kernel state until Close.
type FlowWatch struct {
	C <-chan FlowPacket

	flow    Flow
	ch      chan FlowPacket
	lost    atomic.Bool
	started func(context.Context) error
	reset   func(context.Context, netip.AddrPort) error
	close   func(context.Context) error
	once    sync.Once
	err     error
}

// Flow returns the flow the watch is for (normalized).
func (w *FlowWatch) Flow() Flow { return w.flow }

// Lost reports whether a packet of the flow may have been lost on its way
// to the watch (the log socket overran, or the watch's queue was full):
// then the flow's end and byte count cannot be trusted.
func (w *FlowWatch) Lost() bool { return w.lost.Load() }

// Started removes the flow's DNAT and SNAT: the connection that came keeps
// its translation in conntrack; no later one is forwarded.
func (w *FlowWatch) Started(ctx context.Context) error { return w.started(ctx) }

// Reset ends the forwarded connection, which came from the peer's address
// and port from (its SYN's source): no later one is forwarded, and its
// conntrack entry goes, so its next packet either way is answered with a
// TCP reset, as when a relay closes both legs (an ABOR).
func (w *FlowWatch) Reset(ctx context.Context, from netip.AddrPort) error { return w.reset(ctx, from) }

// Close removes what is left of the flow's kernel state and stops the
// packets; the forwarded connection itself runs on. Later calls return the
// first one's result.
func (w *FlowWatch) Close(ctx context.Context) error {
	w.once.Do(func() { w.err = w.close(ctx) })
	return w.err
}

// deliver hands p to the watch without blocking.
func (w *FlowWatch) deliver(p FlowPacket) {
	select {
	case w.ch <- p:
	default:
		w.lost.Store(true)
	}
}

// flowQueue is how many packets a watch holds: a flow logs a handful (SYN,
// SYN-ACK, two FINs, maybe an RST and retransmissions).
const flowQueue = 32

// FlowBytes is what a flow's logged packets say about one direction: the
// bytes it sent, from its SYN's sequence number to the end of its FIN (or
// RST), and whether it ended. Sequence numbers wrap at 2^32; the samples
// between SYN and FIN (the flow log's one packet in 256) carry the count
// past that, as each moves it on by less than 2^31. A packet behind the
// highest seen (a retransmission) changes nothing.
type FlowBytes struct {
	isn            uint32
	haveISN, ended bool
	reset          bool
	last           uint32 // offset of the highest end seen, modulo 2^32
	n              int64  // the same, counted past 2^32
}

// Note takes one packet of the direction into account.
func (b *FlowBytes) Note(p FlowPacket) {
	if p.Flags&TCPSyn != 0 {
		if !b.haveISN {
			b.isn, b.haveISN = p.Seq, true
		}
		return
	}
	if !b.haveISN || b.ended {
		return
	}
	payload := p.Payload
	if payload == PayloadUnknown { // a packet beyond 64 KiB; the log reported it as lost
		payload = 0
	}
	off := p.Seq + uint32(payload) - b.isn - 1
	if d := off - b.last; d < 1<<31 {
		b.n += int64(d)
		b.last = off
	}
	if p.Flags&(TCPFin|TCPRst) != 0 {
		b.ended, b.reset = true, p.Flags&TCPRst != 0
	}
}

// Ended reports whether the direction has sent its FIN or RST, after its
// SYN; Bytes then is what it sent (for a RST: up to the reset).
func (b *FlowBytes) Ended() bool { return b.ended }

// Reset reports whether the direction ended with a RST.
func (b *FlowBytes) Reset() bool { return b.reset }

// Bytes is the direction's payload bytes seen so far (all of them once it
// ended).
func (b *FlowBytes) Bytes() int64 { return b.n }

// Started reports whether the direction's SYN was seen.
func (b *FlowBytes) Started() bool { return b.haveISN }
