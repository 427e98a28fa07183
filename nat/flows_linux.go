package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var _ FlowForwarder = (*kernelFirewall)(nil)

// flowState is the kernel firewall's side of forwarded flows: the maps and
// sets in the owned table, the flow log reader and the open watches.
type flowState struct {
	dnat4, dnat6 *nftables.Set // (peer . local . port) -> target address . port
	snat4, snat6 *nftables.Set // (peer . target . port), after DNAT -> source address
	log4, log6   *nftables.Set // (peer . local . port) of conntrack's original tuple: log its SYN/FIN/RST
	reader       *FlowLog
	readErr      error           // why there is no reader
	ct           *conntrack.Conn // for Reset
	ctErr        error           // why there is no ct

	mu      sync.Mutex
	watches map[flowKey]*FlowWatch
	fwd     [2]forwardingRead // IPv4, IPv6: see forwarding
	// logged holds the log elements' keys (peer . local . port) of open
	// flows, until their Close has removed them from the kernel: a new flow
	// with the same key would lose its element to that late delete.
	logged map[string]bool
}

// flowKey finds a flow's watch from a logged packet: the peer and the
// target, which the packets show after DNAT in either direction.
type flowKey struct {
	peer   netip.Addr
	target netip.AddrPort
}

// queueFlowObjects queues the flow maps, sets and chains inside f.own:
//
//	chain flow_prerouting { type nat hook prerouting priority dstnat - 1
//		dnat ip to ip saddr . ip daddr . tcp dport map @flow_dnat4     (and ip6)
//	}
//	chain flow_postrouting { type nat hook postrouting priority srcnat
//		snat ip to ip saddr . ip daddr . tcp dport map @flow_snat4     (and ip6)
//	}
//	chain flow_forward { type filter hook forward priority filter
//		meta l4proto tcp tcp flags & (fin|syn|rst) != 0 jump flow_log
//		numgen random mod 256 0 jump flow_log
//	}
//	chain flow_log {
//		meta nfproto ipv4 meta l4proto tcp ct original ip saddr . ct original ip daddr . ct original proto-dst @flow_log4 log group G
//	}
func (f *kernelFirewall) queueFlowObjects() error {
	c := f.conn
	key4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetService)
	key6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr, nftables.TypeInetService)
	fs := &flowState{watches: map[flowKey]*FlowWatch{}, logged: map[string]bool{}}
	mk := func(name string, key nftables.SetDatatype, data *nftables.SetDatatype) *nftables.Set {
		s := &nftables.Set{Table: f.own, Name: name, KeyType: key, Concatenation: true, HasTimeout: true}
		if data != nil {
			s.IsMap, s.DataType = true, *data
		}
		return s
	}
	d4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	d6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	fs.dnat4, fs.dnat6 = mk(ownMapFlowDNAT4, key4, &d4), mk(ownMapFlowDNAT6, key6, &d6)
	fs.snat4, fs.snat6 = mk(ownMapFlowSNAT4, key4, &nftables.TypeIPAddr), mk(ownMapFlowSNAT6, key6, &nftables.TypeIP6Addr)
	fs.log4, fs.log6 = mk(ownSetFlowLog4, key4, nil), mk(ownSetFlowLog6, key6, nil)
	for _, s := range []*nftables.Set{fs.dnat4, fs.dnat6, fs.snat4, fs.snat6, fs.log4, fs.log6} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	addChain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority, rules [][]expr.Any) {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: f.own, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
		for _, exprs := range rules {
			c.AddRule(&nftables.Rule{Table: f.own, Chain: ch, Exprs: exprs})
		}
	}
	// Before the interception chains (dstnat): an expected data flow is
	// forwarded, never redirected to ftpgate.
	addChain(ownChainFlowPre, nftables.ChainTypeNAT, nftables.ChainHookPrerouting,
		nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest-1), divertRules(fs.dnat4, fs.dnat6))
	addChain(ownChainFlowPost, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource,
		[][]expr.Any{snatRule(false, fs.snat4), snatRule(true, fs.snat6)})
	group := f.cfg.Flows.group()
	// Every forwarded packet meets the base chain, so it picks the few
	// worth a look with as little as it can (seven expressions for a data
	// packet); only those go on to the lookups.
	logChain := c.AddChain(&nftables.Chain{Name: ownChainFlowLog, Table: f.own})
	for _, exprs := range [][]expr.Any{flowLogRule(false, fs.log4, group), flowLogRule(true, fs.log6, group)} {
		c.AddRule(&nftables.Rule{Table: f.own, Chain: logChain, Exprs: exprs})
	}
	addChain(ownChainFlowForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter,
		flowPickRules())
	f.flows = fs
	return nil
}

// snatRule is "snat ip to ip saddr . ip daddr . tcp dport map @set" (ip6
// with v6): the looked-up address is in register 1.
func snatRule(v6 bool, set *nftables.Set) []expr.Any {
	fam := uint32(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	return slices.Concat(matchNFProto(v6), matchTCP(), pinholeKeyMatch(v6, set, true),
		[]expr.Any{&expr.NAT{Type: expr.NATTypeSourceNAT, Family: fam, RegAddrMin: 1}})
}

// flowPickRules are the forward chain's two rules, which send a packet to
// the flow log chain:
//
//	meta l4proto tcp tcp flags & (fin|syn|rst) != 0 jump flow_log
//	numgen random mod 256 0 jump flow_log
//
// The second samples one packet in 256 of every flow, so that its sequence
// numbers are seen often enough to count past 4 GiB (they wrap at 2^32).
// Two samples more than 2 GiB apart would take some 8,000 packets of BIG
// TCP's 256 KiB in a row without one, a chance of about e^-32.
func flowPickRules() [][]expr.Any {
	jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: ownChainFlowLog}
	return [][]expr.Any{
		slices.Concat(matchTCP(), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1,
				Mask: []byte{TCPFin | TCPSyn | TCPRst}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
			jump,
		}),
		{
			&expr.Numgen{Register: 1, Modulus: flowSampleEvery, Type: unix.NFT_NG_RANDOM},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			jump,
		},
	}
}

// flowLogRule is the flow log chain's "meta l4proto tcp ct original ip
// saddr . ct original ip daddr . ct original proto-dst @set log group G
// snaplen 128" (ip6 with v6): conntrack's original tuple is the flow as
// the peer opened it, before DNAT, in both directions.
func flowLogRule(v6 bool, set *nftables.Set, group uint16) []expr.Any {
	return slices.Concat(matchNFProto(v6), matchTCP(), ctOriginalKeyMatch(v6, set), []expr.Any{
		&expr.Log{Group: group, Snaplen: flowSnaplen, Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN},
	})
}

// ctOriginalKeyMatch is "ct original ip saddr . ct original ip daddr . ct
// original proto-dst @set" (ip6 with v6), registers as pinholeKeyMatch's.
func ctOriginalKeyMatch(v6 bool, set *nftables.Set) []expr.Any {
	src, dst, regs := expr.CtKeySRCIP, expr.CtKeyDSTIP, [3]uint32{1, 9, 10}
	if v6 {
		src, dst, regs = expr.CtKeySRCIP6, expr.CtKeyDSTIP6, [3]uint32{1, 2, 3}
	}
	orig := func(key expr.CtKey, reg uint32) *expr.Ct {
		return &expr.Ct{Register: reg, Key: key, Direction: 0, OptDirection: true}
	}
	return []expr.Any{
		orig(src, regs[0]), orig(dst, regs[1]), orig(expr.CtKeyPROTODST, regs[2]),
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

// flowSampleEvery is how many packets of a flow go by for one the flow
// log samples.
const flowSampleEvery = 256

// flowSnaplen is how much of a logged packet the kernel copies: the IP and
// TCP headers with options.
const flowSnaplen = 128

// startFlowLog starts reading the flow log; without it flows are not
// usable, and FlowsUsable says why.
func (f *kernelFirewall) startFlowLog() {
	fs := f.flows
	listen := func() error {
		fs.reader, fs.readErr = ListenFlowLog(f.cfg.Flows.group(), fs.dispatch, fs.overrun, f.log)
		return nil
	}
	if f.cfg.NetNS == 0 {
		listen()
	} else if err := inNetNS(f.cfg.NetNS, listen); err != nil {
		fs.readErr = err
	}
	fs.ct, fs.ctErr = conntrack.Dial(&netlink.Config{NetNS: f.cfg.NetNS})
	if fs.ctErr != nil {
		f.log.Warn("kernel-forwarded data flows: no conntrack connection; ABOR cannot reset a forwarded flow", zap.Error(fs.ctErr))
	}
	if fs.readErr != nil {
		f.log.Warn("kernel-forwarded data flows unavailable: cannot read the flow log", zap.Error(fs.readErr))
	}
}

// forgetConnection deletes the conntrack entry of the forwarded connection
// from -> local (its original direction). Its translation goes with it, so
// the next packet either way meets no socket at the gateway and is answered
// with a reset: both ends learn that the transfer is over, as when the relay
// closes both legs. An entry already gone is no error.
func (fs *flowState) forgetConnection(from, local netip.AddrPort) error {
	if fs.ct == nil {
		return fmt.Errorf("no conntrack connection: %w", fs.ctErr)
	}
	fl := conntrack.NewFlow(unix.IPPROTO_TCP, 0, from.Addr(), local.Addr(), from.Port(), local.Port(), 0, 0)
	if err := fs.ct.Delete(fl); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete the conntrack entry of %s -> %s: %w", from, local, err)
	}
	return nil
}

// dispatch gives a logged packet to its flow's watch.
func (fs *flowState) dispatch(p FlowPacket) {
	fs.mu.Lock()
	w := fs.watches[flowKey{p.Src.Addr(), p.Dst}]
	if w == nil {
		w = fs.watches[flowKey{p.Dst.Addr(), p.Src}]
	}
	fs.mu.Unlock()
	if w != nil {
		w.deliver(p)
	}
}

// overrun marks every open watch: the log lost packets, maybe theirs.
func (fs *flowState) overrun(error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, w := range fs.watches {
		w.lost.Store(true)
	}
}

// FlowsUsable says why flows of the family cannot be forwarded here.
func (f *kernelFirewall) FlowsUsable(v6 bool) error {
	if err := f.flowsReady(); err != nil {
		return err
	}
	return f.flows.forwarding(f.cfg.NetNS, v6)
}

// flowsReady says why flows cannot be opened at all (nil: they can).
func (f *kernelFirewall) flowsReady() error {
	if f.flows == nil {
		return errors.New("kernel-forwarded flows are not configured (own-table mode with flows enabled)")
	}
	if f.flows.readErr != nil {
		return fmt.Errorf("no flow log: %w", f.flows.readErr)
	}
	return nil
}

// forwardingFresh is how long a read of the forwarding sysctl is believed:
// the proxy asks at every passive command, and forwarding may be turned on
// (or off) while ftpgate runs.
const forwardingFresh = time.Second

// forwarding says whether the host forwards the family (nil: it does),
// from a read of its sysctl at most forwardingFresh old.
func (fs *flowState) forwarding(netns int, v6 bool) error {
	i := 0
	if v6 {
		i = 1
	}
	fs.mu.Lock()
	c := fs.fwd[i]
	fs.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < forwardingFresh {
		return c.err
	}
	sysctl, name := "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"
	if v6 {
		sysctl, name = "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding"
	}
	var err error
	b, rerr := readIn(netns, sysctl)
	switch v := strings.TrimSpace(string(b)); {
	case rerr != nil:
		err = fmt.Errorf("read %s: %w", name, rerr)
	case v != "1":
		err = fmt.Errorf("this host does not forward (%s = %s)", name, v)
	}
	fs.mu.Lock()
	fs.fwd[i] = forwardingRead{at: time.Now(), err: err}
	fs.mu.Unlock()
	return err
}

// forwardingRead is one read of a forwarding sysctl.
type forwardingRead struct {
	at  time.Time
	err error
}

// readIn reads a file of /proc/sys/net as seen in the network namespace
// netns (0: our own).
func readIn(netns int, path string) ([]byte, error) {
	if netns == 0 {
		return os.ReadFile(path)
	}
	var b []byte
	err := inNetNS(netns, func() (err error) {
		b, err = os.ReadFile(path)
		return err
	})
	return b, err
}

// inNetNS runs fn on a thread inside the network namespace netns.
func inNetNS(netns int, fn func() error) error {
	return nsrun.OnThread(func() error {
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter the firewall's network namespace: %w", err)
		}
		return fn()
	})
}

// OpenFlow adds the flow's DNAT, SNAT and log elements in one batch.
func (f *kernelFirewall) OpenFlow(ctx context.Context, fl Flow, ttl time.Duration) (*FlowWatch, error) {
	n, err := fl.normalize()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := f.flowsReady(); err != nil { // forwarding is the caller's question (FlowsUsable)
		return nil, fmt.Errorf("open flow %s: %w", n, err)
	}
	life, err := lifetime(ttl, f.cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("open flow %s: %w", n, err)
	}
	fs := f.flows
	dnat, snat, logSet := fs.dnat4, fs.snat4, fs.log4
	if !n.Peer.Is4() {
		dnat, snat, logSet = fs.dnat6, fs.snat6, fs.log6
	}
	key := appendAddrPort(n.Peer.AsSlice(), n.Local)
	natKey := appendAddrPort(n.Peer.AsSlice(), n.Target)
	ch := make(chan FlowPacket, flowQueue)
	w := &FlowWatch{C: ch, ch: ch, flow: n}
	fk := flowKey{n.Peer, n.Target}
	fs.mu.Lock()
	switch {
	case fs.watches[fk] != nil:
		fs.mu.Unlock()
		return nil, fmt.Errorf("open flow %s: a flow from that peer to that target is open already", n)
	case fs.logged[string(key)]:
		fs.mu.Unlock()
		return nil, fmt.Errorf("open flow %s: a flow from that peer to that port is still being removed", n)
	}
	fs.watches[fk] = w // before the kernel can log its SYN
	fs.logged[string(key)] = true
	fs.mu.Unlock()
	forget := func() {
		fs.mu.Lock()
		delete(fs.watches, fk)
		fs.mu.Unlock()
	}
	unlog := func() {
		fs.mu.Lock()
		delete(fs.logged, string(key))
		fs.mu.Unlock()
	}
	// The log element outlives the forwarding ones: the connection may
	// run long after it started. Close removes it.
	err = f.changeFlow(ctx, func() error {
		return errors.Join(
			f.conn.SetAddElements(dnat, []nftables.SetElement{{Key: key, Val: appendAddrPort(nil, n.Target), Timeout: life}}),
			f.conn.SetAddElements(snat, []nftables.SetElement{{Key: natKey, Val: n.Source.AsSlice(), Timeout: life}}),
			f.conn.SetAddElements(logSet, []nftables.SetElement{{Key: key}}))
	})
	if err != nil {
		forget()
		unlog()
		return nil, fmt.Errorf("open flow %s: %w", n, explain(err))
	}
	forwarding := []element{{set: dnat, key: key}, {set: snat, key: natKey}}
	var startMu sync.Mutex
	started := false // the forwarding elements are gone
	w.started = func(ctx context.Context) error {
		startMu.Lock()
		defer startMu.Unlock()
		if started {
			return nil
		}
		err := f.removeFlow(ctx, forwarding)
		started = err == nil
		return err
	}
	w.close = func(ctx context.Context) error {
		forget() // the transfer is over: its late packets go nowhere
		defer unlog()
		startMu.Lock()
		defer startMu.Unlock()
		els := []element{{set: logSet, key: key}}
		if !started { // the forwarding elements may have expired: removeAll copes
			els = append(els, forwarding...)
		}
		return f.removeFlow(ctx, els)
	}
	w.reset = func(ctx context.Context, from netip.AddrPort) error {
		// No later connection first: a packet of the old one after its
		// conntrack entry is gone would otherwise be translated again.
		if err := w.started(ctx); err != nil {
			return err
		}
		return fs.forgetConnection(from, n.Local)
	}
	if ce := f.log.Check(zap.DebugLevel, "flow open"); ce != nil {
		ce.Write(zap.Stringer("flow", n), zap.Duration("ttl", life))
	}
	return w, nil
}

// removeFlow removes a flow's elements (removeAll), holding the
// connection's lock.
func (f *kernelFirewall) removeFlow(ctx context.Context, els []element) error {
	return f.flowLocked(ctx, func() error { return f.removeAll(els) })
}

// changeFlow sends the messages queue queues as one batch, holding the
// connection's lock.
func (f *kernelFirewall) changeFlow(ctx context.Context, queue func() error) error {
	return f.flowLocked(ctx, func() error { return f.flush(queue()) })
}

// flowLocked runs do holding the connection's lock, unless the firewall has
// shut down.
func (f *kernelFirewall) flowLocked(ctx context.Context, do func() error) error {
	if err := f.acquire(ctx); err != nil {
		return err
	}
	defer f.release()
	if f.closed {
		return shutdownError{}
	}
	return do()
}
