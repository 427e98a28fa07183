package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"
)

// FlowPacket is one TCP packet of a kernel-forwarded data flow that the
// firewall copied to ftpgate (an nft "log group N" rule; see ListenFlowLog).
//
// The exact payload bytes that one direction of a flow carried are
// (FIN.Seq + FIN.Payload) - (SYN.Seq + 1), in uint32 arithmetic, where SYN
// is that direction's SYN (or SYN-ACK) and FIN its FIN. The peer's FIN,
// when it was sent after the whole flow arrived (the usual close of an FTP
// data connection), acknowledges the same: its Ack is FIN.Seq +
// FIN.Payload + 1.
type FlowPacket struct {
	Src, Dst netip.AddrPort // as in the packet's headers (IPv4 or IPv6)
	Flags    uint8          // the TCP flags byte: TCPFin, TCPSyn, TCPRst, TCPAck...
	Seq      uint32         // sequence number
	Ack      uint32         // acknowledgment number (meaningful with TCPAck)
	Payload  int            // TCP payload bytes in this packet (a FIN may carry data); PayloadUnknown if the IP header has no length
	Time     time.Time      // when it was logged: the kernel's timestamp if the message has one, else receive time
}

// PayloadUnknown is FlowPacket.Payload for a packet beyond 64 KiB (a BIG
// TCP GSO or GRO packet) whose IP header has no length: IPv4 with total
// length 0, or IPv6 with payload length 0 and no jumbo option. The byte
// count of its direction cannot be known from it (ListenFlowLog also calls
// lost); the peer's FIN's Ack may still tell it.
const PayloadUnknown = -1

// TCP flags, as in FlowPacket.Flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// FlowLog reads the packets that the firewall logs to one NFLOG group.
// Create it with ListenFlowLog; end it with Close.
type FlowLog struct {
	closeOnce sync.Once
	stop      func() error // set by ListenFlowLog
	closeErr  error
}

// Close unbinds the group, ends the reader goroutine and waits for it:
// deliver and lost are not called after Close returns. Closing again
// returns the first result.
func (l *FlowLog) Close() error {
	l.closeOnce.Do(func() {
		if l.stop != nil {
			l.closeErr = l.stop()
		}
	})
	return l.closeErr
}

// Why parseFlowPacket rejects a packet.
var (
	errNotTCP    = errors.New("not TCP")
	errTruncated = errors.New("truncated")
	errMalformed = errors.New("malformed")
)

const (
	ipProtoTCP    = 6
	ipProtoHopOpt = 0 // IPv6 hop-by-hop options header
	tcpHeaderMin  = 20
	ipv6Jumbo     = 0xc2 // the jumbo payload option (RFC 2675)
)

// parseFlowPacket reads a logged packet that starts at its network header
// (NFULA_PAYLOAD): IPv4, options included, or IPv6 without extension
// headers (but for a hop-by-hop header with a jumbo payload option, which
// BIG TCP may add), carrying TCP. Only the headers need be there (the
// firewall copies a prefix of each packet); the payload size comes from
// the IP length field, or is PayloadUnknown. Time is left zero. Any input
// gives a packet or an error, never a panic.
func parseFlowPacket(b []byte) (FlowPacket, error) {
	if len(b) == 0 {
		return FlowPacket{}, fmt.Errorf("%w: empty packet", errTruncated)
	}
	var (
		p       FlowPacket
		src     netip.Addr
		dst     netip.Addr
		tcp     []byte
		tcpSize int // TCP header and payload, from the IP header; -1: unknown
	)
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return p, fmt.Errorf("%w: IPv4 header of %d bytes", errTruncated, len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 {
			return p, fmt.Errorf("%w: IPv4 header length %d", errMalformed, ihl)
		}
		if len(b) < ihl {
			return p, fmt.Errorf("%w: IPv4 header of %d bytes, %d captured", errTruncated, ihl, len(b))
		}
		if b[9] != ipProtoTCP {
			return p, fmt.Errorf("%w: IPv4 protocol %d", errNotTCP, b[9])
		}
		if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF or an offset
			return p, fmt.Errorf("%w: an IPv4 fragment", errNotTCP)
		}
		total := int(binary.BigEndian.Uint16(b[2:4]))
		switch {
		case total == 0: // beyond 64 KiB
			tcpSize = -1
		case total < ihl:
			return p, fmt.Errorf("%w: IPv4 total length %d under header length %d", errMalformed, total, ihl)
		default:
			tcpSize = total - ihl
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		tcp = b[ihl:]
	case 6:
		if len(b) < 40 {
			return p, fmt.Errorf("%w: IPv6 header of %d bytes", errTruncated, len(b))
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		size := int(binary.BigEndian.Uint16(b[4:6]))
		tcp, tcpSize = b[40:], size
		next := b[6]
		if size == 0 && next == ipProtoHopOpt {
			var err error
			if next, tcp, tcpSize, err = ipv6JumboHeader(b[40:]); err != nil {
				return p, err
			}
		} else if size == 0 {
			tcpSize = -1 // beyond 64 KiB, without a jumbo option
		}
		if next != ipProtoTCP {
			return p, fmt.Errorf("%w: IPv6 next header %d (extension headers are not followed)", errNotTCP, next)
		}
	default:
		return p, fmt.Errorf("%w: IP version %d", errNotTCP, b[0]>>4)
	}
	if len(tcp) < tcpHeaderMin {
		return p, fmt.Errorf("%w: TCP header, %d bytes captured", errTruncated, len(tcp))
	}
	doff := int(tcp[12]>>4) * 4
	if doff < tcpHeaderMin {
		return p, fmt.Errorf("%w: TCP data offset %d", errMalformed, doff)
	}
	if tcpSize >= 0 && tcpSize < doff {
		return p, fmt.Errorf("%w: TCP segment of %d bytes under its header length %d", errMalformed, tcpSize, doff)
	}
	p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2]))
	p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4]))
	p.Seq = binary.BigEndian.Uint32(tcp[4:8])
	p.Ack = binary.BigEndian.Uint32(tcp[8:12])
	p.Flags = tcp[13]
	p.Payload = PayloadUnknown
	if tcpSize >= 0 {
		p.Payload = tcpSize - doff
	}
	return p, nil
}

// ipv6JumboHeader reads the hop-by-hop options header h of an IPv6 packet
// whose payload length is 0, and returns the next header, what follows h,
// and the size of that from the jumbo payload option (-1 if there is none).
func ipv6JumboHeader(h []byte) (next byte, rest []byte, size int, err error) {
	if len(h) < 8 {
		return 0, nil, 0, fmt.Errorf("%w: IPv6 hop-by-hop header, %d bytes captured", errTruncated, len(h))
	}
	hlen := (int(h[1]) + 1) * 8
	if len(h) < hlen {
		return 0, nil, 0, fmt.Errorf("%w: IPv6 hop-by-hop header of %d bytes, %d captured", errTruncated, hlen, len(h))
	}
	size = -1
	for opts := h[2:hlen]; len(opts) > 0; {
		if opts[0] == 0 { // Pad1
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return 0, nil, 0, fmt.Errorf("%w: IPv6 hop-by-hop option overruns its header", errMalformed)
		}
		if opts[0] == ipv6Jumbo && opts[1] == 4 {
			jumbo := int64(binary.BigEndian.Uint32(opts[2:6]))
			if jumbo < int64(hlen) || jumbo > math.MaxInt32 {
				return 0, nil, 0, fmt.Errorf("%w: IPv6 jumbo payload length %d", errMalformed, jumbo)
			}
			size = int(jumbo) - hlen
		}
		opts = opts[2+int(opts[1]):]
	}
	return h[0], h[hlen:], size, nil
}
