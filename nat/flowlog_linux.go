package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The NFLOG protocol, as in <linux/netfilter/nfnetlink_log.h>.
const (
	nfulnlMsgPacket = 0 // NFULNL_MSG_PACKET
	nfulnlMsgConfig = 1 // NFULNL_MSG_CONFIG

	nfulaCfgCmd     = 1 // NFULA_CFG_CMD: struct nfulnl_msg_config_cmd
	nfulaCfgMode    = 2 // NFULA_CFG_MODE: struct nfulnl_msg_config_mode
	nfulaCfgTimeout = 4 // NFULA_CFG_TIMEOUT: be32, 1/100 s
	nfulaCfgQthresh = 5 // NFULA_CFG_QTHRESH: be32
	nfulaCfgFlags   = 6 // NFULA_CFG_FLAGS: be16

	nfulnlCfgCmdBind   = 1 // NFULNL_CFG_CMD_BIND
	nfulnlCfgCmdUnbind = 2 // NFULNL_CFG_CMD_UNBIND
	nfulnlCopyPacket   = 2 // NFULNL_COPY_PACKET
	nfulnlCfgFSeq      = 1 // NFULNL_CFG_F_SEQ: number the messages, to see a loss

	nfulaTimestamp = 3  // NFULA_TIMESTAMP: be64 seconds, be64 microseconds
	nfulaPayload   = 9  // NFULA_PAYLOAD: the packet from its network header
	nfulaSeq       = 12 // NFULA_SEQ: be32, counts the group's messages
)

// Settings of the NFLOG socket and group.
const (
	// flowLogCopyRange is how much of each packet the kernel copies: the
	// largest IPv4 (60) plus TCP (60) header.
	flowLogCopyRange = 128
	// flowLogReplyWait bounds the wait for the kernel's answer to a
	// configuration message.
	flowLogReplyWait = 5 * time.Second
	// flowLogRetry is the pause after a receive error other than a loss.
	flowLogRetry = 100 * time.Millisecond
)

// flowLogRcvBuf is the socket's receive buffer. A message is about 300
// bytes (its skb about 1 KiB of the buffer), so it holds some thousands of
// messages while the reader is late. A variable for the loss test.
var flowLogRcvBuf = 4 << 20

// ListenFlowLog binds NFLOG group group in the calling thread's network
// namespace (a caller in another namespace than the process's locks its
// OS thread there while calling; the socket stays in it) and calls deliver
// for each logged TCP packet, from one reader goroutine, in order. lost
// (may be nil) is called, from the same goroutine, when log messages were
// lost: the kernel dropped some because the socket's buffer was full
// (ENOBUFS), or the group's message numbers jumped; or a packet's payload
// length is unknown (it is delivered with Payload PayloadUnknown). The
// consumer should stop trusting counts made until then.
// Other packets (not TCP, truncated) are skipped with a debug log.
//
// The group is configured to copy 128 bytes of each packet and to send
// each message at once. Only one socket per network namespace can bind a
// group: a second ListenFlowLog on a bound group fails, saying so (the
// kernel answers EPERM). Binding needs CAP_NET_ADMIN. log may be nil.
func ListenFlowLog(group uint16, deliver func(FlowPacket), lost func(error), log *zap.Logger) (*FlowLog, error) {
	if deliver == nil {
		return nil, fmt.Errorf("listen NFLOG group %d: no deliver function", group)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if lost == nil {
		lost = func(error) {}
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("listen NFLOG group %d: open netfilter netlink socket: %w", group, err)
	}
	r := &flowReader{
		group:   group,
		c:       c,
		deliver: deliver,
		lost:    lost,
		log:     log.With(zap.Uint16("nflog_group", group)),
	}
	if err := r.setReadBuffer(); err != nil {
		c.Close()
		return nil, fmt.Errorf("listen NFLOG group %d: %w", group, err)
	}
	early, err := r.configure(bindAttrs())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("listen NFLOG group %d: bind: %w", group, bindError(err))
	}
	r.wg.Add(1)
	go r.run(early)
	return &FlowLog{stop: r.stop}, nil
}

// bindAttrs is the configuration that binds the group: every option in
// the one message, so that no packet is logged with the defaults.
func bindAttrs() []netfilter.Attribute {
	mode := make([]byte, 6) // struct nfulnl_msg_config_mode, packed
	binary.BigEndian.PutUint32(mode[0:4], flowLogCopyRange)
	mode[4] = nfulnlCopyPacket
	return []netfilter.Attribute{
		{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}},
		{Type: nfulaCfgMode, Data: mode},
		{Type: nfulaCfgQthresh, Data: netfilter.Uint32Bytes(1)},
		{Type: nfulaCfgTimeout, Data: netfilter.Uint32Bytes(1)},
		{Type: nfulaCfgFlags, Data: netfilter.Uint16Bytes(nfulnlCfgFSeq)},
	}
}

// bindError says what the kernel's refusals of a bind mean. A group bound
// by another socket is refused with EPERM (EBUSY if the same socket binds
// it twice), as is a process without CAP_NET_ADMIN.
func bindError(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("the group is bound already by this socket: %w", err)
	case errors.Is(err, unix.EPERM) && hasNetAdmin():
		return fmt.Errorf("the group is bound already by another socket in this network namespace: %w", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("needs CAP_NET_ADMIN: %w", err)
	}
	return err
}

// hasNetAdmin reports whether the calling thread has CAP_NET_ADMIN
// effective.
func hasNetAdmin() bool {
	var data [2]unix.CapUserData
	if err := unix.Capget(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

// flowReader owns the NFLOG socket of one group.
type flowReader struct {
	group   uint16
	c       *netlink.Conn
	deliver func(FlowPacket)
	lost    func(error)
	log     *zap.Logger

	stopping atomic.Bool
	wg       sync.WaitGroup

	earlyLost error // an ENOBUFS seen by configure, for run to report

	// Used by run only.
	seqSeen bool
	nextSeq uint32
}

// setReadBuffer makes the receive buffer flowLogRcvBuf bytes, past
// net.core.rmem_max if the process may (CAP_NET_ADMIN), else as large as
// rmem_max allows.
func (r *flowReader) setReadBuffer() error {
	rc, err := r.c.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, flowLogRcvBuf)
	}); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if serr == nil {
		return nil
	}
	r.log.Debug("SO_RCVBUFFORCE refused; the receive buffer is limited by net.core.rmem_max", zap.Error(serr))
	if err := r.c.SetReadBuffer(flowLogRcvBuf); err != nil {
		return fmt.Errorf("set receive buffer: %w", err)
	}
	return nil
}

// configure sends one configuration message for the group and waits for
// the kernel's answer. Packet messages that come before the answer are
// returned, to be delivered first.
func (r *flowReader) configure(attrs []netfilter.Attribute) ([]netlink.Message, error) {
	m, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysULOG,
		MessageType: nfulnlMsgConfig,
		Family:      netfilter.ProtoUnspec,
		Version:     0, // NFNETLINK_V0
		ResourceID:  r.group,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, attrs)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := r.c.SetReadDeadline(time.Now().Add(flowLogReplyWait)); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	defer r.c.SetReadDeadline(time.Time{})
	req, err := r.c.Send(m)
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var early []netlink.Message
	for {
		// An error answer comes back as err: nothing else is asked on
		// this socket, so it is this request's.
		msgs, err := r.c.Receive()
		if errors.Is(err, unix.ENOBUFS) {
			// Packets were lost while waiting; run reports it.
			r.earlyLost = err
			continue
		}
		if err != nil {
			return early, err
		}
		for _, msg := range msgs {
			if msg.Header.Type == netlink.Error && msg.Header.Sequence == req.Header.Sequence {
				return early, nil
			}
			early = append(early, msg)
		}
	}
}

// run reads the socket until stop, delivering early's packets first.
func (r *flowReader) run(early []netlink.Message) {
	defer r.wg.Done()
	if r.earlyLost != nil {
		r.dropped(r.earlyLost)
	}
	for _, m := range early {
		r.handle(m, time.Now())
	}
	for !r.stopping.Load() {
		msgs, err := r.c.Receive()
		now := time.Now()
		if err != nil {
			if r.stopping.Load() {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				r.dropped(err)
				continue
			}
			r.log.Error("read the flow log", zap.Error(err))
			r.lost(fmt.Errorf("NFLOG group %d: read: %w", r.group, err))
			time.Sleep(flowLogRetry)
			continue
		}
		for _, m := range msgs {
			r.handle(m, now)
		}
	}
}

// dropped reports the ENOBUFS err: the kernel dropped log messages.
func (r *flowReader) dropped(err error) {
	r.log.Warn("the kernel dropped flow log messages: the socket's receive buffer was full")
	r.lost(fmt.Errorf("NFLOG group %d: the kernel dropped log messages (socket receive buffer full): %w", r.group, err))
}

// handle delivers the packet of one message, if it is a packet message
// with a TCP packet in it.
func (r *flowReader) handle(m netlink.Message, received time.Time) {
	h, ad, err := netfilter.DecodeNetlink(m)
	if err != nil {
		r.log.Debug("skip a malformed netlink message", zap.Error(err))
		return
	}
	if h.SubsystemID != netfilter.NFSubsysULOG || h.MessageType != nfulnlMsgPacket {
		return
	}
	rec, err := decodeLogRecord(ad)
	if rec.hasSeq {
		if r.seqSeen && rec.seq != r.nextSeq {
			missing := rec.seq - r.nextSeq
			r.log.Warn("flow log messages lost", zap.Uint32("count", missing))
			r.lost(fmt.Errorf("NFLOG group %d: %d log messages lost (message %d, expected %d)", r.group, missing, rec.seq, r.nextSeq))
		}
		r.seqSeen, r.nextSeq = true, rec.seq+1
	}
	if err != nil {
		r.log.Debug("skip a malformed NFLOG message", zap.Error(err))
		return
	}
	p, err := parseFlowPacket(rec.payload)
	if err != nil {
		if ce := r.log.Check(zap.DebugLevel, "skip a logged packet"); ce != nil {
			ce.Write(zap.Error(err))
		}
		return
	}
	if p.Payload == PayloadUnknown {
		r.log.Warn("a logged TCP packet beyond 64 KiB without an IP length (BIG TCP)",
			zap.Stringer("src", p.Src), zap.Stringer("dst", p.Dst), zap.Uint8("flags", p.Flags))
		r.lost(fmt.Errorf("NFLOG group %d: the payload length of a TCP packet %v -> %v is unknown (a BIG TCP packet, beyond 64 KiB)", r.group, p.Src, p.Dst))
	}
	p.Time = received
	if !rec.time.IsZero() {
		p.Time = rec.time
	}
	r.deliver(p)
}

// logRecord is what ftpgate reads of an NFLOG packet message.
type logRecord struct {
	payload []byte    // NFULA_PAYLOAD
	time    time.Time // NFULA_TIMESTAMP; zero if absent
	seq     uint32    // NFULA_SEQ
	hasSeq  bool
}

// decodeLogRecord reads the attributes of an NFLOG packet message. A
// malformed attribute is an error, but the others are still read (the
// message number counts the message all the same).
func decodeLogRecord(ad *netlink.AttributeDecoder) (logRecord, error) {
	var rec logRecord
	var errs []error
	for ad.Next() {
		switch ad.Type() {
		case nfulaPayload:
			rec.payload = ad.Bytes()
		case nfulaTimestamp:
			b := ad.Bytes()
			if len(b) != 16 {
				errs = append(errs, fmt.Errorf("timestamp of %d bytes", len(b)))
				continue
			}
			sec := int64(binary.BigEndian.Uint64(b[0:8]))
			usec := int64(binary.BigEndian.Uint64(b[8:16]))
			rec.time = time.Unix(sec, usec*1000)
		case nfulaSeq:
			b := ad.Bytes()
			if len(b) != 4 {
				errs = append(errs, fmt.Errorf("message number of %d bytes", len(b)))
				continue
			}
			rec.seq, rec.hasSeq = binary.BigEndian.Uint32(b), true
		}
	}
	errs = append(errs, ad.Err())
	return rec, errors.Join(errs...)
}

// stop ends the reader, unbinds the group and closes the socket.
func (r *flowReader) stop() error {
	r.stopping.Store(true)
	// A deadline in the past wakes the reader from its receive.
	if err := r.c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		// Closing wakes it too, and the kernel unbinds the group of a
		// closed socket.
		cerr := r.c.Close()
		r.wg.Wait()
		return wrapCloseErr(r.group, errors.Join(err, cerr))
	}
	r.wg.Wait()
	var uerr error
	if _, err := r.configure([]netfilter.Attribute{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdUnbind}}}); err != nil {
		uerr = fmt.Errorf("unbind: %w", err)
	}
	return wrapCloseErr(r.group, errors.Join(uerr, r.c.Close()))
}

func wrapCloseErr(group uint16, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("close NFLOG group %d: %w", group, err)
}
