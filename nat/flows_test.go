package nat

import (
	"net/netip"
	"strings"
	"testing"
)

// TestFlowBytes: a direction's bytes are its FIN's (or RST's) sequence
// number, plus the FIN's own payload, less its SYN's plus one, modulo 2^32;
// retransmitted SYNs and FINs change nothing, and nothing counts before the
// SYN.
func TestFlowBytes(t *testing.T) {
	syn := func(seq uint32) FlowPacket { return FlowPacket{Flags: TCPSyn, Seq: seq} }
	fin := func(seq uint32, payload int) FlowPacket {
		return FlowPacket{Flags: TCPFin | TCPAck, Seq: seq, Payload: payload}
	}
	for _, tc := range []struct {
		name    string
		pkts    []FlowPacket
		ended   bool
		reset   bool
		want    int64
		started bool
	}{
		{"empty", []FlowPacket{syn(1000), fin(1001, 0)}, true, false, 0, true},
		{"bytes", []FlowPacket{syn(1000), fin(1001+5000, 0)}, true, false, 5000, true},
		{"fin with data", []FlowPacket{syn(1000), fin(1001+4000, 1000)}, true, false, 5000, true},
		{"wraps", []FlowPacket{syn(0xffffff00), fin(0x101, 0)}, true, false, 0x200, true},
		{"retransmissions", []FlowPacket{syn(7), syn(99), fin(8+10, 0), fin(8+20, 0)}, true, false, 10, true},
		{"reset", []FlowPacket{syn(7), {Flags: TCPRst, Seq: 8 + 123}}, true, true, 123, true},
		{"fin before syn", []FlowPacket{fin(10, 0)}, false, false, 0, false},
		{"samples past 4 GiB", []FlowPacket{syn(100), {Seq: 101 + 1<<31 - 1}, {Seq: 101}, {Seq: 101 + 1<<31 + 1<<30 + 1<<29},
			{Seq: 101 + 1<<30}, fin(101+1<<30+5, 0)}, true, false, 1<<32 + 1<<30 + 5, true},
		{"running", []FlowPacket{syn(7)}, false, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b FlowBytes
			for _, p := range tc.pkts {
				b.Note(p)
			}
			if b.Ended() != tc.ended || b.Reset() != tc.reset || b.Started() != tc.started || (tc.ended && b.Bytes() != tc.want) {
				t.Errorf("ended %v reset %v started %v bytes %d; want %v %v %v %d",
					b.Ended(), b.Reset(), b.Started(), b.Bytes(), tc.ended, tc.reset, tc.started, tc.want)
			}
		})
	}
}

// TestFlowNormalize: a flow needs four specified addresses of one family
// and two ports; mapped addresses are unmapped.
func TestFlowNormalize(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	ok := Flow{Peer: a("::ffff:198.18.0.2"), Local: ap("198.18.0.1:40001"), Target: ap("198.18.1.2:30001"), Source: a("198.18.1.1")}
	n, err := ok.normalize()
	if err != nil || n.Peer != a("198.18.0.2") {
		t.Fatalf("normalize(%s) = %s, %v", ok, n, err)
	}
	for _, tc := range []struct {
		f    Flow
		want string
	}{
		{Flow{Local: ok.Local, Target: ok.Target, Source: ok.Source}, "must be given"},
		{Flow{Peer: a("0.0.0.0"), Local: ok.Local, Target: ok.Target, Source: ok.Source}, "must be given"},
		{Flow{Peer: a("fd00::2"), Local: ok.Local, Target: ok.Target, Source: ok.Source}, "different families"},
		{Flow{Peer: ok.Peer, Local: ap("198.18.0.1:0"), Target: ok.Target, Source: ok.Source}, "port 0"},
	} {
		if _, err := tc.f.normalize(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("normalize(%s): %v, want an error saying %q", tc.f, err, tc.want)
		}
	}
}
