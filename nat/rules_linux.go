package nat

import (
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// inputRules returns the rules of the input chain, as nft would print them:
//
//	ct state established,related accept
//	meta l4proto tcp ip saddr . ip daddr . tcp dport @pinholes4 accept
//	meta l4proto tcp ip6 saddr . ip6 daddr . tcp dport @pinholes6 accept
//	tcp dport 40000-40100 counter drop   (one per data port range)
//
// The counters show how many packets to data ports found no pinhole.
func inputRules(set4, set6 *nftables.Set, ports []PortRange) [][]expr.Any {
	rules := [][]expr.Any{{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:            binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}, {
		// Loopback is this host talking to itself: a server beside ftpgate
		// (a sidecar's upstream on 127.0.0.1) may use ports in our ranges.
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
	rules = append(rules,
		slices.Concat(matchTCP(), matchNFProto(false), pinholeKeyMatch(false, set4, false),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}),
		slices.Concat(matchTCP(), matchNFProto(true), pinholeKeyMatch(true, set6, false),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}))
	for _, r := range ports {
		match := matchTCPDport()
		if r.Lo == r.Hi {
			match = append(match, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Lo)})
		} else {
			match = append(match,
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Lo)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Hi)})
		}
		rules = append(rules, append(match, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}))
	}
	return rules
}

// addrLookupRule returns "ip saddr @set return" and its variants: ip6
// instead of ip (v6), daddr instead of saddr (!src), != (invert).
func addrLookupRule(v6, src bool, set *nftables.Set, invert bool) []expr.Any {
	saddr, daddr, n := addrOffsets(v6)
	off := daddr
	if src {
		off = saddr
	}
	return slices.Concat(matchNFProto(v6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: invert},
		&expr.Verdict{Kind: expr.VerdictReturn},
	})
}

// divertRules returns the two dnat rules that send a diverted flow to
// the address and port its map element names:
//
//	dnat ip to ip saddr . ip daddr . tcp dport map @divert4
//	dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @divert6
//
// The looked-up value (address, port) is in registers 8 and 9 for IPv4
// (4-byte registers; 8 is 16-byte register 1), 1 and 2 for IPv6.
func divertRules(set4, set6 *nftables.Set) [][]expr.Any {
	dnat := func(v6 bool, set *nftables.Set) []expr.Any {
		fam, portReg := uint32(unix.NFPROTO_IPV4), uint32(9)
		if v6 {
			fam, portReg = unix.NFPROTO_IPV6, 2
		}
		return slices.Concat(matchNFProto(v6), matchTCP(), pinholeKeyMatch(v6, set, true),
			[]expr.Any{&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: 1, RegProtoMin: portReg}})
	}
	return [][]expr.Any{dnat(false, set4), dnat(true, set6)}
}

// pinholeKeyMatch is "ip saddr . ip daddr . tcp dport @set" (ip6 with
// v6): it loads the packet's pinhole key and looks it up in set. With
// mapValue, set is a map ("... map @set") and the value it finds goes to
// register 1 on.
//
// Registers as nft uses them: a 16-byte register is 1-4, a 4-byte one
// 8-23; an IPv4 key is 4+4+4 bytes from register 8 (= 1) on, an IPv6
// key 16+16+4 bytes from register 1 on.
func pinholeKeyMatch(v6 bool, set *nftables.Set, mapValue bool) []expr.Any {
	saddr, daddr, n := addrOffsets(v6)
	regs := [3]uint32{1, 9, 10}
	if v6 {
		regs = [3]uint32{1, 2, 3}
	}
	lookup := &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID}
	if mapValue {
		lookup.DestRegister, lookup.IsDestRegSet = 1, true
	}
	return []expr.Any{
		&expr.Payload{DestRegister: regs[0], Base: expr.PayloadBaseNetworkHeader, Offset: saddr, Len: n},
		&expr.Payload{DestRegister: regs[1], Base: expr.PayloadBaseNetworkHeader, Offset: daddr, Len: n},
		&expr.Payload{DestRegister: regs[2], Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		lookup,
	}
}

// addrOffsets returns where the source and destination addresses start in
// an IPv4 (or, with v6, IPv6) header, and their length.
func addrOffsets(v6 bool) (saddr, daddr, n uint32) {
	if v6 {
		return 8, 24, 16
	}
	return 12, 16, 4
}

// matchNFProto is "meta nfproto ipv4" (ipv6 with v6).
func matchNFProto(v6 bool) []expr.Any {
	fam := byte(unix.NFPROTO_IPV4)
	if v6 {
		fam = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
}

// matchTCP is "meta l4proto tcp".
func matchTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// matchTCPDport is "tcp dport": TCP, with the destination port loaded
// into register 1 for the comparison or lookup that follows.
func matchTCPDport() []expr.Any {
	return append(matchTCP(), &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
}

// redirectRule is "tcp dport 21 redirect to :port".
func redirectRule(ports []expr.Any, port uint16) []expr.Any {
	return slices.Concat(ports, []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1, Flags: expr.NF_NAT_RANGE_PROTO_SPECIFIED},
	})
}

// tproxyRule is "tcp dport 21 tproxy to :port meta mark set mark accept".
func tproxyRule(ports []expr.Any, port uint16, mark uint32) []expr.Any {
	return slices.Concat(ports, []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.TProxy{Family: unix.NFPROTO_UNSPEC, TableFamily: unix.NFPROTO_INET, RegPort: 1},
	}, markAccept(mark))
}

// socketRule is "meta l4proto tcp socket transparent 1 meta mark set mark
// accept": packets of an existing transparent socket (a tproxy'd
// connection, or an upstream connection from the client's address) are
// routed to this host.
func socketRule(mark uint32) []expr.Any {
	return slices.Concat(matchTCP(), []expr.Any{
		&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
	}, markAccept(mark))
}

// markAccept is "meta mark set mark accept".
func markAccept(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// markRule is "meta mark mark return": ftpgate's own sockets.
func markRule(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// ifname returns an interface name as nftables compares it: 16 bytes,
// zero-padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}
