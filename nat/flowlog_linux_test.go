package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// flowLogCollector keeps what a FlowLog delivered.
type flowLogCollector struct {
	mu      sync.Mutex
	packets []FlowPacket
	lost    []error
}

func (c *flowLogCollector) deliver(p FlowPacket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.packets = append(c.packets, p)
}

func (c *flowLogCollector) lose(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lost = append(c.lost, err)
}

// find returns the first packet from src to dst whose flags, masked by
// mask, are want.
func (c *flowLogCollector) find(src, dst netip.AddrPort, mask, want uint8) (FlowPacket, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.packets {
		if p.Src == src && p.Dst == dst && p.Flags&mask == want {
			return p, true
		}
	}
	return FlowPacket{}, false
}

func (c *flowLogCollector) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, p := range c.packets {
		fmt.Fprintf(&b, "  %v -> %v flags %#02x seq %d payload %d\n", p.Src, p.Dst, p.Flags, p.Seq, p.Payload)
	}
	return b.String()
}

// loadFlowLogRules loads a table into ns that logs the SYN, FIN and RST
// packets to and from port on the output hook (every loopback packet
// passes it once) to NFLOG group.
func loadFlowLogRules(t *testing.T, ns *testNS, port int, group uint16) {
	t.Helper()
	rules := fmt.Sprintf(`table inet ftpgate_flowlog_test {
	chain out {
		type filter hook output priority filter; policy accept;
		tcp dport %[1]d tcp flags & (syn | fin | rst) != 0 log group %[2]d
		tcp sport %[1]d tcp flags & (syn | fin | rst) != 0 log group %[2]d
	}
}
`, port, group)
	file := filepath.Join(t.TempDir(), "flowlog.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.nft(t, "-f", file)
}

// listenFlowLogIn binds group inside ns.
func listenFlowLogIn(t *testing.T, ns *testNS, group uint16, c *flowLogCollector) (*FlowLog, error) {
	var l *FlowLog
	err := nsrun.Do(nsrun.Path(ns.name), func() (err error) {
		l, err = ListenFlowLog(group, c.deliver, c.lose, testLogger(t))
		return err
	})
	return l, err
}

// exchange sends up bytes from a client to a server on addr and down bytes
// back, each side half-closing its write side when done and reading to
// EOF, then closing; it returns the client's and the server's addresses.
// With tail > 0 each side sends its last tail bytes (at most) only once
// all before them were acknowledged, corked, so that its FIN rides on a
// small packet with them; with tail 0 the FIN comes as TCP sends it.
func exchange(t *testing.T, ns *testNS, addr string, up, down, tail int) (client, server netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	var cc net.Conn
	if err := nsrun.Do(nsrun.Path(ns.name), func() (err error) {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		cc, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("connect to %s in %s: %v", addr, ns.name, err)
	}
	defer ln.Close()
	sc, err := ln.Accept()
	if err != nil {
		cc.Close()
		t.Fatalf("accept: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)

	type result struct {
		got int64
		err error
	}
	side := func(c *net.TCPConn, send int, res chan<- result) {
		defer c.Close()
		werr := make(chan error, 1)
		go func() { werr <- sendThenFIN(c, send, min(tail, send), deadline) }()
		got, rerr := io.Copy(io.Discard, c)
		res <- result{got, errors.Join(rerr, <-werr)}
	}
	cres, sres := make(chan result, 1), make(chan result, 1)
	go side(cc.(*net.TCPConn), up, cres)
	go side(sc.(*net.TCPConn), down, sres)
	cr, sr := <-cres, <-sres
	if cr.err != nil || sr.err != nil {
		t.Fatalf("exchange: client: %v; server: %v", cr.err, sr.err)
	}
	if cr.got != int64(down) || sr.got != int64(up) {
		t.Fatalf("exchange: client got %d bytes (want %d), server got %d (want %d)", cr.got, down, sr.got, up)
	}
	return cc.LocalAddr().(*net.TCPAddr).AddrPort(), cc.RemoteAddr().(*net.TCPAddr).AddrPort()
}

// sendThenFIN writes send zero bytes to c and half-closes it; the last
// tail of them go corked after the rest was acknowledged (see exchange).
func sendThenFIN(c *net.TCPConn, send, tail int, deadline time.Time) error {
	if _, err := io.CopyN(c, zeroReader{}, int64(send-tail)); err != nil {
		return err
	}
	if tail > 0 {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		for {
			var queued int
			var qerr error
			if err := rc.Control(func(fd uintptr) {
				queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			}); err != nil {
				return err
			}
			if qerr != nil {
				return fmt.Errorf("SIOCOUTQ: %w", qerr)
			}
			if queued == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d bytes still unacknowledged at the deadline", queued)
			}
			time.Sleep(time.Millisecond)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1)
		}); err != nil || serr != nil {
			return errors.Join(err, serr)
		}
		if _, err := io.CopyN(c, zeroReader{}, int64(tail)); err != nil {
			return err
		}
	}
	return c.CloseWrite()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestFlowLogCountsBytes proves that the SYN, SYN-ACK and FIN packets the
// firewall logs tell the exact payload bytes of each direction of a real
// TCP connection, over IPv4 and IPv6, FINs carrying data included; and
// that where a FIN's length cannot be known the loss is reported, never a
// wrong count: loopback sends TCP packets beyond 64 KiB (BIG TCP), whose
// IP length is 0, and with a natural close the FIN may ride on one.
func TestFlowLogCountsBytes(t *testing.T) {
	const (
		group = 7
		port  = 20021
		up    = 3_000_000
		down  = 12_345
	)
	for _, tc := range []struct {
		name string
		addr string
		tail int // bytes on each FIN packet; 0: a natural close
	}{
		{"IPv4 FIN with data", "127.0.0.1", 100},
		{"IPv6 FIN with data", "::1", 100},
		{"IPv4 natural close", "127.0.0.1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			loadFlowLogRules(t, ns, port, group)
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

			var c flowLogCollector
			l, err := listenFlowLogIn(t, ns, group, &c)
			if err != nil {
				t.Fatalf("ListenFlowLog(%d): %v", group, err)
			}
			defer l.Close()

			client, server := exchange(t, ns, net.JoinHostPort(tc.addr, fmt.Sprint(port)), up, down, tc.tail)

			const synMask = TCPSyn | TCPAck | TCPFin | TCPRst
			var syn, synAck, finUp, finDown FlowPacket
			_, ok := waitFor(10*time.Second, func() bool {
				var ok1, ok2, ok3, ok4 bool
				syn, ok1 = c.find(client, server, synMask, TCPSyn)
				synAck, ok2 = c.find(server, client, synMask, TCPSyn|TCPAck)
				finUp, ok3 = c.find(client, server, TCPFin, TCPFin)
				finDown, ok4 = c.find(server, client, TCPFin, TCPFin)
				return ok1 && ok2 && ok3 && ok4
			})
			if !ok {
				t.Fatalf("SYN, SYN-ACK and both FINs of %v <-> %v not all logged; the log has:\n%s", client, server, c.dump())
			}
			if rst, found := c.find(client, server, TCPRst, TCPRst); found {
				t.Errorf("unexpected RST %+v", rst)
			}
			for _, d := range []struct {
				name     string
				syn, fin FlowPacket
				want     int
			}{
				{"client to server", syn, finUp, up},
				{"server to client", synAck, finDown, down},
			} {
				if d.fin.Payload == PayloadUnknown {
					c.mu.Lock()
					lost := slices.Clone(c.lost)
					c.mu.Unlock()
					if len(lost) == 0 {
						t.Errorf("%s: a FIN of unknown length and no loss reported", d.name)
					}
					t.Logf("%s: the FIN came on a packet beyond 64 KiB; lost reported: %v", d.name, lost)
					continue
				}
				got := d.fin.Seq + uint32(d.fin.Payload) - (d.syn.Seq + 1)
				if got != uint32(d.want) {
					t.Errorf("%s: (FIN.seq %d + %d) - (SYN.seq %d + 1) = %d bytes, want %d; the log has:\n%s",
						d.name, d.fin.Seq, d.fin.Payload, d.syn.Seq, got, d.want, c.dump())
				}
				if tc.tail > 0 && d.fin.Payload != tc.tail {
					t.Errorf("%s: the FIN carried %d bytes, want %d", d.name, d.fin.Payload, tc.tail)
				}
				if d.syn.Time.IsZero() || d.fin.Time.IsZero() {
					t.Errorf("%s: packet without a time: SYN %v, FIN %v", d.name, d.syn.Time, d.fin.Time)
				}
			}

			// One binder per group and namespace.
			var c2 flowLogCollector
			if l2, err := listenFlowLogIn(t, ns, group, &c2); err == nil {
				l2.Close()
				t.Errorf("a second ListenFlowLog(%d) in the namespace succeeded", group)
			} else if !strings.Contains(err.Error(), "bound already by another socket") {
				t.Errorf("a second ListenFlowLog(%d): %v; want it to say the group is bound already", group, err)
			} else {
				t.Logf("second bind: %v", err)
			}

			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			c.mu.Lock()
			if tc.tail > 0 && len(c.lost) > 0 {
				t.Errorf("lost reported: %v", c.lost)
			}
			c.mu.Unlock()

			// Close unbound the group: it can be bound again.
			l3, err := listenFlowLogIn(t, ns, group, &c2)
			if err != nil {
				t.Fatalf("ListenFlowLog(%d) after Close: %v", group, err)
			}
			if err := l3.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestFlowReaderHandle feeds one reader NFLOG messages as the kernel
// writes them.
func TestFlowReaderHandle(t *testing.T) {
	var c flowLogCollector
	r := &flowReader{group: 3, deliver: c.deliver, lost: c.lose, log: testLogger(t)}
	seg := tcpSegment(40001, 21000, 100, 0, TCPSyn, 20)
	syn := ipv4Packet("198.18.0.1", "198.18.1.2", 0, ipProtoTCP, seg, 0)
	fin := ipv4Packet("198.18.0.1", "198.18.1.2", 0, ipProtoTCP, tcpSegment(40001, 21000, 5000, 1, TCPFin|TCPAck, 20), 10)
	udp := ipv4Packet("198.18.0.1", "198.18.1.2", 0, 17, make([]byte, 8), 0)
	big := withBytes(fin, 2, 0, 3, 0)
	logged := time.Unix(1700000000, 123456000)
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts[0:8], uint64(logged.Unix()))
	binary.BigEndian.PutUint64(ts[8:16], uint64(logged.Nanosecond()/1000))

	msg := func(typ netfilter.MessageType, seq uint32, ts, payload []byte) netlink.Message {
		attrs := []netfilter.Attribute{
			{Type: 1, Data: []byte{0x08, 0x00, 3, 0}}, // NFULA_PACKET_HDR
			{Type: nfulaSeq, Data: netfilter.Uint32Bytes(seq)},
		}
		if ts != nil {
			attrs = append(attrs, netfilter.Attribute{Type: nfulaTimestamp, Data: ts})
		}
		attrs = append(attrs, netfilter.Attribute{Type: nfulaPayload, Data: payload})
		m, err := netfilter.MarshalNetlink(netfilter.Header{
			SubsystemID: netfilter.NFSubsysULOG, MessageType: typ, Family: netfilter.ProtoIPv4, ResourceID: 3,
		}, attrs)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	received := time.Unix(1800000000, 0)
	r.handle(msg(nfulnlMsgPacket, 0, ts, syn), received)
	r.handle(msg(nfulnlMsgPacket, 1, nil, udp), received)    // skipped
	r.handle(msg(nfulnlMsgPacket, 4, nil, fin), received)    // 2 and 3 lost
	r.handle(msg(nfulnlMsgPacket, 5, nil, big), received)    // length unknown
	r.handle(msg(nfulnlMsgConfig, 6, nil, syn), received)    // not a packet message
	r.handle(msg(nfulnlMsgPacket, 6, ts[:8], syn), received) // bad timestamp
	r.handle(netlink.Message{Data: []byte{2, 0}}, received)  // too short for nfgenmsg
	r.handle(msg(nfulnlMsgPacket, 7, nil, fin), received)    // in sequence again

	if len(c.packets) != 4 {
		t.Fatalf("delivered %d packets, want 4:\n%s", len(c.packets), c.dump())
	}
	if p := c.packets[0]; p.Flags != TCPSyn || p.Seq != 100 || !p.Time.Equal(logged) {
		t.Errorf("first packet %+v, want the SYN with seq 100 at the kernel's time %v", p, logged)
	}
	if p := c.packets[1]; p.Flags != TCPFin|TCPAck || p.Payload != 10 || !p.Time.Equal(received) {
		t.Errorf("second packet %+v, want the FIN with 10 bytes at the receive time %v", p, received)
	}
	if p := c.packets[2]; p.Flags != TCPFin|TCPAck || p.Payload != PayloadUnknown {
		t.Errorf("third packet %+v, want the FIN of unknown length", p)
	}
	if len(c.lost) != 2 {
		t.Fatalf("lost called %d times (%v), want 2: the sequence gap and the packet of unknown length", len(c.lost), c.lost)
	}
	if !strings.Contains(c.lost[0].Error(), "2 log messages lost") {
		t.Errorf("lost[0] = %v, want it to count 2 lost messages", c.lost[0])
	}
	if !strings.Contains(c.lost[1].Error(), "length of a TCP packet 198.18.0.1:40001 -> 198.18.1.2:21000 is unknown") {
		t.Errorf("lost[1] = %v, want it to name the packet of unknown length", c.lost[1])
	}
}

// TestFlowLogReportsLoss proves that messages the kernel drops because the
// reader is late are reported: with a tiny receive buffer and deliver
// stalled, some connections' packets overrun the socket.
func TestFlowLogReportsLoss(t *testing.T) {
	const (
		group = 9
		port  = 20031
		conns = 50
	)
	ns := newNS(t)
	loadFlowLogRules(t, ns, port, group)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	saved := flowLogRcvBuf
	flowLogRcvBuf = 4096
	var c flowLogCollector
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	deliver := func(p FlowPacket) {
		<-release
		c.deliver(p)
	}
	var l *FlowLog
	err := nsrun.Do(nsrun.Path(ns.name), func() (err error) {
		l, err = ListenFlowLog(group, deliver, c.lose, testLogger(t))
		return err
	})
	flowLogRcvBuf = saved
	if err != nil {
		t.Fatalf("ListenFlowLog(%d): %v", group, err)
	}
	defer l.Close()
	defer unblock()

	// connect opens and closes n connections to port in ns.
	var ln net.Listener
	if err := nsrun.Do(nsrun.Path(ns.name), func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			s.Close()
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	connect := func(n int) {
		t.Helper()
		if err := nsrun.Do(nsrun.Path(ns.name), func() error {
			for range n {
				cc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				if err != nil {
					return err
				}
				cc.Close()
			}
			return nil
		}); err != nil {
			t.Fatalf("connect: %v", err)
		}
	}

	connect(conns) // overruns the socket while deliver is stalled
	unblock()
	var overrun, gap bool
	_, ok := waitFor(10*time.Second, func() bool {
		connect(1) // numbered messages after the loss show the gap
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, err := range c.lost {
			overrun = overrun || errors.Is(err, unix.ENOBUFS)
			gap = gap || strings.Contains(err.Error(), "log messages lost")
		}
		return overrun && gap
	})
	if !ok {
		t.Fatalf("after %d connections with the reader stalled: ENOBUFS reported %v, a numbering gap reported %v; lost: %v", conns, overrun, gap, c.lost)
	}
	c.mu.Lock()
	t.Logf("delivered %d packets; lost reported %d times, first: %v", len(c.packets), len(c.lost), c.lost[0])
	c.mu.Unlock()
}
