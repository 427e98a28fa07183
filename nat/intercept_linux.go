package nat

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// queueInterception queues, on f.conn, the interception objects of
// f.cfg.Intercept inside f.own: the divert maps, the interval sets of
// Sources and Exclude, and the chains. The caller flushes. As nft prints
// them (redirect mode, with Output):
//
//	chain prerouting {
//		type nat hook prerouting priority dstnat; policy accept;
//		dnat ip to ip saddr . ip daddr . tcp dport map @divert4
//		dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @divert6
//		iifname != "lan0" return                       (Interfaces; a set for several)
//		ip saddr != @intercept_sources4 return         (Sources)
//		ip6 saddr != @intercept_sources6 return
//		fib daddr type local return
//		ip daddr @intercept_exclude4 return            (Exclude)
//		tcp dport { 21, 2121 } redirect to :2100
//	}
//	chain output {
//		type nat hook output priority -100; policy accept;
//		meta mark 0x00004654 return
//		(the divert rules, fib, Exclude and redirect as above)
//	}
//
// In tproxy mode the prerouting chain keeps only the divert rules, and a
// filter chain at priority mangle catches:
//
//	chain tproxy {
//		type filter hook prerouting priority mangle; policy accept;
//		meta l4proto tcp socket transparent 1 meta mark set 0x00004655 accept
//		(Interfaces, Sources, fib, Exclude as above)
//		tcp dport 21 tproxy to :2100 meta mark set 0x00004655 accept
//	}
func (f *kernelFirewall) queueInterception() error {
	ic := f.cfg.Intercept
	c := f.conn
	f.divert4 = &nftables.Set{
		Table:         f.own,
		Name:          ownMapDivert4,
		IsMap:         true,
		HasTimeout:    true,
		Concatenation: true,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetService),
		DataType:      nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
	}
	f.divert6 = &nftables.Set{
		Table:         f.own,
		Name:          ownMapDivert6,
		IsMap:         true,
		HasTimeout:    true,
		Concatenation: true,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr, nftables.TypeInetService),
		DataType:      nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService),
	}
	sets := []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{f.divert4, nil}, {f.divert6, nil}}

	var fl interceptFilter
	interval := func(name string, v6 bool, rs []addrRange) *nftables.Set {
		typ := nftables.TypeIPAddr
		if v6 {
			typ = nftables.TypeIP6Addr
		}
		s := &nftables.Set{Table: f.own, Name: name, KeyType: typ, Interval: true, KeyByteOrder: binaryutil.BigEndian}
		sets = append(sets, struct {
			set   *nftables.Set
			elems []nftables.SetElement
		}{s, intervalElements(rs, v6)})
		return s
	}
	if len(ic.Sources) > 0 {
		// Both families get a set: a family without any source prefix is
		// never caught.
		fl.sources4 = interval(ownSetSources4, false, mergePrefixes(ic.Sources, false))
		fl.sources6 = interval(ownSetSources6, true, mergePrefixes(ic.Sources, true))
	}
	if rs := mergePrefixes(ic.Exclude, false); len(rs) > 0 {
		fl.exclude4 = interval(ownSetExclude4, false, rs)
	}
	if rs := mergePrefixes(ic.Exclude, true); len(rs) > 0 {
		fl.exclude6 = interval(ownSetExclude6, true, rs)
	}
	for _, s := range sets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
	}
	if len(ic.Interfaces) > 1 {
		// A named set: nft prints an anonymous one's names (host byte
		// order, which the library cannot declare for it) as "".
		fl.ifaces = &nftables.Set{Table: f.own, Name: ownSetInterfaces, KeyType: nftables.TypeIFName,
			KeyByteOrder: binaryutil.NativeEndian}
		elems := make([]nftables.SetElement, len(ic.Interfaces))
		for i, name := range ic.Interfaces {
			elems[i] = nftables.SetElement{Key: ifname(name)}
		}
		if err := c.AddSet(fl.ifaces, elems); err != nil {
			return fmt.Errorf("add set %s: %w", fl.ifaces.Name, err)
		}
	} else if len(ic.Interfaces) == 1 {
		fl.iface = ic.Interfaces[0]
	}
	ports, err := f.portMatch(ic.Ports)
	if err != nil {
		return err
	}

	accept := nftables.ChainPolicyAccept
	addChain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority, rules [][]expr.Any) {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: f.own, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
		for _, exprs := range rules {
			c.AddRule(&nftables.Rule{Table: f.own, Chain: ch, Exprs: exprs})
		}
	}
	divert := divertRules(f.divert4, f.divert6)
	switch ic.Mode {
	case InterceptRedirect:
		rules := slices.Concat(divert, fl.forwarded(), fl.destination(), [][]expr.Any{redirectRule(ports, ic.ListenPort)})
		addChain(ownChainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, rules)
	case InterceptTProxy:
		rules := slices.Concat([][]expr.Any{socketRule(ic.TProxyMark)}, fl.forwarded(), fl.destination(),
			[][]expr.Any{tproxyRule(ports, ic.ListenPort, ic.TProxyMark)})
		addChain(ownChainTProxy, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityMangle, rules)
		addChain(ownChainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, divert)
	}
	if ic.Output {
		rules := slices.Concat([][]expr.Any{markRule(ic.LoopMark)}, divert, fl.destination(),
			[][]expr.Any{redirectRule(ports, ic.ListenPort)})
		addChain(ownChainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest, rules)
	}
	return nil
}

// portMatch returns the expressions that match a TCP destination port in
// ports: a comparison for one port, an anonymous set for more.
func (f *kernelFirewall) portMatch(ports []uint16) ([]expr.Any, error) {
	match := matchTCPDport()
	if len(ports) == 1 {
		return append(match, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(ports[0])}), nil
	}
	s := &nftables.Set{Table: f.own, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
	elems := make([]nftables.SetElement, len(ports))
	for i, p := range ports {
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
	}
	if err := f.conn.AddSet(s, elems); err != nil {
		return nil, fmt.Errorf("add port set: %w", err)
	}
	return append(match, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}), nil
}

// interceptFilter holds what decides, before the port, whether a
// connection is caught; nil sets and an empty iface mean "any".
type interceptFilter struct {
	iface              string        // the one incoming interface
	ifaces             *nftables.Set // several incoming interfaces
	sources4, sources6 *nftables.Set
	exclude4, exclude6 *nftables.Set
}

// forwarded returns the "return" rules that only make sense for
// forwarded traffic: incoming interface and source network.
func (fl interceptFilter) forwarded() [][]expr.Any {
	var rules [][]expr.Any
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	switch {
	case fl.ifaces != nil:
		rules = append(rules, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: fl.ifaces.Name, SetID: fl.ifaces.ID, Invert: true},
			ret,
		})
	case fl.iface != "":
		rules = append(rules, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(fl.iface)},
			ret,
		})
	}
	if fl.sources4 != nil {
		rules = append(rules,
			addrLookupRule(false, true, fl.sources4, true),
			addrLookupRule(true, true, fl.sources6, true))
	}
	return rules
}

// destination returns the "return" rules about the destination: this
// host's own addresses, and Exclude.
func (fl interceptFilter) destination() [][]expr.Any {
	rules := [][]expr.Any{{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}}
	if fl.exclude4 != nil {
		rules = append(rules, addrLookupRule(false, false, fl.exclude4, false))
	}
	if fl.exclude6 != nil {
		rules = append(rules, addrLookupRule(true, false, fl.exclude6, false))
	}
	return rules
}

// intervalElements returns the elements of an interval set holding rs,
// encoded as nft does: a range is its first address and, flagged as
// interval end, the address after its last; a range reaching the last
// address has no end and is flagged open. Like nft, a set whose first
// range does not start at the zero address begins with an end element at
// zero.
func intervalElements(rs []addrRange, v6 bool) []nftables.SetElement {
	if len(rs) == 0 {
		return nil
	}
	zero := netip.IPv4Unspecified()
	if v6 {
		zero = netip.IPv6Unspecified()
	}
	var els []nftables.SetElement
	if rs[0].first != zero {
		els = append(els, nftables.SetElement{Key: zero.AsSlice(), IntervalEnd: true})
	}
	for _, r := range rs {
		next := r.last.Next()
		if !next.IsValid() {
			els = append(els, nftables.SetElement{Key: r.first.AsSlice(), IntervalOpen: true})
			continue
		}
		els = append(els,
			nftables.SetElement{Key: r.first.AsSlice()},
			nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return els
}
