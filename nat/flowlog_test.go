package nat

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// tcpSegment is a TCP header of hdrLen bytes (options zero) with the given
// ports, sequence and acknowledgment numbers and flags.
func tcpSegment(sport, dport uint16, seq, ack uint32, flags uint8, hdrLen int) []byte {
	b := make([]byte, hdrLen)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], seq)
	binary.BigEndian.PutUint32(b[8:12], ack)
	b[12] = byte(hdrLen/4) << 4
	b[13] = flags
	return b
}

// ipv4Packet is an IPv4 header with optLen bytes of options (a multiple of
// 4), protocol proto and a total length that counts payload more bytes than
// seg, followed by seg (the captured prefix).
func ipv4Packet(src, dst string, optLen int, proto byte, seg []byte, payload int) []byte {
	ihl := 20 + optLen
	b := make([]byte, ihl, ihl+len(seg))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:4], uint16(ihl+len(seg)+payload))
	b[6] = 0x40 // DF
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	return append(b, seg...)
}

// ipv6Packet is an IPv6 header with next header next and a payload length
// that counts payload more bytes than seg, followed by seg.
func ipv6Packet(src, dst string, next byte, seg []byte, payload int) []byte {
	b := make([]byte, 40, 40+len(seg))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(len(seg)+payload))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return append(b, seg...)
}

// jumboHeader is an IPv6 hop-by-hop header, followed by TCP, with a jumbo
// payload option of size.
func jumboHeader(size uint32) []byte {
	h := []byte{ipProtoTCP, 0, ipv6Jumbo, 4, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:8], size)
	return h
}

// withBytes returns a copy of b with b[i] = v for each pair.
func withBytes(b []byte, iv ...int) []byte {
	b = append([]byte(nil), b...)
	for k := 0; k+1 < len(iv); k += 2 {
		b[iv[k]] = byte(iv[k+1])
	}
	return b
}

type flowPacketCase struct {
	name string
	in   []byte
	want FlowPacket
	err  error // the kind of error, if any
}

func flowPacketCases() []flowPacketCase {
	ap := netip.MustParseAddrPort
	synSeg := tcpSegment(40001, 21000, 0xfffffff0, 0, TCPSyn, 40)
	finSeg := tcpSegment(21000, 40001, 12345, 0x80000001, TCPFin|TCPAck|TCPPsh, 32)
	v4Syn := ipv4Packet("198.18.0.1", "198.18.1.2", 0, ipProtoTCP, synSeg, 0)
	v4Fin := ipv4Packet("198.18.1.2", "198.18.0.1", 12, ipProtoTCP, finSeg, 1400)
	v6Fin := ipv6Packet("fd00::1", "fd00::2", ipProtoTCP, finSeg, 77)
	return []flowPacketCase{
		{
			name: "IPv4 SYN with TCP options",
			in:   v4Syn,
			want: FlowPacket{Src: ap("198.18.0.1:40001"), Dst: ap("198.18.1.2:21000"), Flags: TCPSyn, Seq: 0xfffffff0},
		},
		{
			name: "IPv4 with options, FIN carrying data",
			in:   v4Fin,
			want: FlowPacket{Src: ap("198.18.1.2:21000"), Dst: ap("198.18.0.1:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: 1400},
		},
		{
			name: "IPv4 capture cut after the TCP header's first 20 bytes",
			in:   v4Fin[:32+20],
			want: FlowPacket{Src: ap("198.18.1.2:21000"), Dst: ap("198.18.0.1:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: 1400},
		},
		{
			name: "IPv4 RST",
			in:   ipv4Packet("127.0.0.1", "127.0.0.1", 0, ipProtoTCP, tcpSegment(1, 2, 3, 0, TCPRst, 20), 0),
			want: FlowPacket{Src: ap("127.0.0.1:1"), Dst: ap("127.0.0.1:2"), Flags: TCPRst, Seq: 3},
		},
		{
			name: "IPv6 FIN with data",
			in:   v6Fin,
			want: FlowPacket{Src: ap("[fd00::1]:21000"), Dst: ap("[fd00::2]:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: 77},
		},
		{name: "empty", in: nil, err: errTruncated},
		{name: "IPv4 header cut", in: v4Syn[:19], err: errTruncated},
		{name: "IPv4 options cut", in: v4Fin[:25], err: errTruncated},
		{name: "IPv4 TCP header cut", in: v4Syn[:20+19], err: errTruncated},
		{name: "IPv4 header length under 20", in: withBytes(v4Syn, 0, 0x44), err: errMalformed},
		{name: "IPv4 UDP", in: ipv4Packet("198.18.0.1", "198.18.0.2", 0, 17, make([]byte, 8), 0), err: errNotTCP},
		{name: "IPv4 first fragment", in: withBytes(v4Syn, 6, 0x20), err: errNotTCP},
		{name: "IPv4 later fragment", in: withBytes(v4Syn, 6, 0x00, 7, 0x10), err: errNotTCP},
		{
			name: "IPv4 total length 0 (beyond 64 KiB)",
			in:   withBytes(v4Syn, 2, 0, 3, 0),
			want: FlowPacket{Src: ap("198.18.0.1:40001"), Dst: ap("198.18.1.2:21000"), Flags: TCPSyn, Seq: 0xfffffff0, Payload: PayloadUnknown},
		},
		{name: "IPv4 total length under header", in: withBytes(v4Syn, 2, 0, 3, 16), err: errMalformed},
		{name: "IPv4 total length under TCP header", in: withBytes(v4Syn, 2, 0, 3, 40), err: errMalformed},
		{name: "TCP data offset under 20", in: withBytes(v4Syn, 20+12, 0x40), err: errMalformed},
		{name: "IPv6 header cut", in: v6Fin[:39], err: errTruncated},
		{name: "IPv6 TCP header cut", in: v6Fin[:50], err: errTruncated},
		{name: "IPv6 hop-by-hop header", in: ipv6Packet("fd00::1", "fd00::2", 0, make([]byte, 48), 0), err: errNotTCP},
		{
			name: "IPv6 payload length 0 (beyond 64 KiB)",
			in:   withBytes(v6Fin, 4, 0, 5, 0),
			want: FlowPacket{Src: ap("[fd00::1]:21000"), Dst: ap("[fd00::2]:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: PayloadUnknown},
		},
		{
			name: "IPv6 jumbo option",
			in:   ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, append(jumboHeader(8+32+70000), finSeg...), -(8 + 32)),
			want: FlowPacket{Src: ap("[fd00::1]:21000"), Dst: ap("[fd00::2]:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: 70000},
		},
		{
			name: "IPv6 hop-by-hop header without a jumbo option",
			in:   ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, append([]byte{ipProtoTCP, 0, 1, 4, 0, 0, 0, 0}, finSeg...), -(8 + 32)),
			want: FlowPacket{Src: ap("[fd00::1]:21000"), Dst: ap("[fd00::2]:40001"), Flags: TCPFin | TCPAck | TCPPsh, Seq: 12345, Ack: 0x80000001, Payload: PayloadUnknown},
		},
		{name: "IPv6 jumbo under its header", in: ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, append(jumboHeader(4), finSeg...), -(8 + 32)), err: errMalformed},
		{name: "IPv6 hop-by-hop option overrun", in: ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, append([]byte{ipProtoTCP, 0, 1, 9, 0, 0, 0, 0}, finSeg...), -(8 + 32)), err: errMalformed},
		{name: "IPv6 hop-by-hop header cut", in: ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, []byte{ipProtoTCP, 1, 0xc2, 4, 0, 1, 0, 0}, -8), err: errTruncated},
		{name: "IPv6 jumbo, UDP after it", in: withBytes(ipv6Packet("fd00::1", "fd00::2", ipProtoHopOpt, append(jumboHeader(8+8+100), make([]byte, 8)...), -16), 40, 17), err: errNotTCP},
		{name: "IP version 5", in: withBytes(v4Syn, 0, 0x55), err: errNotTCP},
	}
}

func TestParseFlowPacket(t *testing.T) {
	for _, tc := range flowPacketCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlowPacket(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("parseFlowPacket: got %+v, %v; want an error of kind %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlowPacket: %v", err)
			}
			if got != tc.want {
				t.Errorf("parseFlowPacket:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseFlowPacket(f *testing.F) {
	for _, tc := range flowPacketCases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseFlowPacket(b)
		if err != nil {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Addr().Is4() != (b[0]>>4 == 4) {
			t.Fatalf("addresses %v -> %v from IP version %d", p.Src, p.Dst, b[0]>>4)
		}
		if p.Payload < PayloadUnknown {
			t.Fatalf("payload %d bytes", p.Payload)
		}
		if !p.Time.IsZero() {
			t.Fatalf("time %v set by the parser", p.Time)
		}
	})
}
