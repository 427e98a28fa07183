//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// BPF socket redirection between the two legs of one transfer. Each transfer
// gets its own objects, released when it ends:
//
//	source map   a SockMap holding the source leg; the verdict program is
//	             attached to it, so it runs on every segment the source receives
//	target map   a SockMap holding the destination leg (no program: its own
//	             receive path stays untouched)
//	counter      an Array of u64 slots: the bytes handed to the destination,
//	             the bytes passed to the source in copy mode, the mode, and
//	             the limit of the redirected count (see the flow control notes)
//	program      an sk_skb verdict program (written with cilium/ebpf's asm, no
//	             compiler): redirect the segment to the target's egress and,
//	             if that worked, add its length to the counter
//
// The kernel then queues each segment on the destination's send path (its
// psock backlog, sent by a kworker) without a copy into user space.
//
// ftpgate supervises each transfer from user space with a few cheap looks per
// millisecond while bytes move, fewer when they do not (supervise): TCP_INFO
// of the source, the counter, TCP_INFO and SIOCOUTQ of the destination. It
// never reads the source: with the socket in a map a read would race the
// program for the data.
//
//   - End of data: the source is in CLOSE_WAIT (the peer's FIN came) and the
//     counter has every byte its TCP received before the FIN, so the program
//     has been through them all. SIOCINQ cannot tell: on a socket in a map it
//     counts only the psock's own ingress queue (measured on 6.18: a byte
//     waiting in the TCP receive queue shows as 0).
//   - Flow control: the backlog is not bounded by the kernel; the program
//     redirects at most backlogHigh past what the destination took, and then
//     the transfer ends in copy mode (see backlogHigh).
//   - Half-close: the redirected bytes may still wait in the backlog at the
//     end of data, so the destination is half-closed only once its socket took
//     every byte (bytes acked plus the send queue reach the counter): a FIN
//     queued earlier would go out ahead of the data.
//   - Data that arrived before the source was in its map waits in its receive
//     queue, and the program runs only when more arrives; kick (SO_RCVLOWAT)
//     runs it at once. A source that has ended already cannot go into a map
//     (errSourceEnded): that transfer is spliced.

const (
	kernelPathFlushMax = 10 * time.Millisecond // longest pause between checks of the destination's send queue
	bpfProgName        = "ftpgate_redir"

	// TCP states (include/net/tcp_states.h) in which a socket still sends.
	tcpEstablished = 1
	tcpCloseWait   = 8
)

// bpfRedirect is one transfer's kernel data path.
type bpfRedirect struct {
	log      *zap.Logger
	dst, src *net.TCPConn
	srcMap   *ebpf.Map
	dstMap   *ebpf.Map
	count    *ebpf.Map
	prog     *ebpf.Program
}

var _ kernelRelay = (*bpfRedirect)(nil)

// openKernelRelay sets up the redirection from src to dst. Segments src
// received before (possibly all of the data, and its FIN) are redirected
// too, in order, before it returns.
func openKernelRelay(dst, src *net.TCPConn, log *zap.Logger) (kernelRelay, error) {
	if sourceEnded(src) {
		return nil, errSourceEnded
	}
	r := &bpfRedirect{log: log, dst: dst, src: src}
	ok := false
	defer func() {
		if !ok {
			r.unlink()
			r.release()
		}
	}()
	var err error
	sockMap := func(name string) (*ebpf.Map, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.SockMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	}
	if r.srcMap, err = sockMap("ftpgate_src"); err != nil {
		return nil, fmt.Errorf("create source sockmap: %w", err)
	}
	if r.dstMap, err = sockMap("ftpgate_dst"); err != nil {
		return nil, fmt.Errorf("create target sockmap: %w", err)
	}
	if r.count, err = ebpf.NewMap(&ebpf.MapSpec{Name: "ftpgate_bytes", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: slots}); err != nil {
		return nil, fmt.Errorf("create byte counter: %w", err)
	}
	if err := r.count.Update(uint32(slotLimit), uint64(backlogHigh), ebpf.UpdateExist); err != nil {
		return nil, fmt.Errorf("set the backlog limit: %w", err)
	}
	r.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         bpfProgName,
		Type:         ebpf.SkSKB,
		License:      "Dual MIT/GPL",
		Instructions: redirectProgram(r.dstMap.FD(), r.count.FD()),
	})
	if err != nil {
		return nil, fmt.Errorf("load verdict program: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: r.srcMap.FD(), Program: r.prog, Attach: ebpf.AttachSkSKBVerdict}); err != nil {
		return nil, fmt.Errorf("attach verdict program: %w", err)
	}
	// The target first: a segment redirected to an empty map would be dropped.
	if err := addSocket(r.dstMap, dst); err != nil {
		return nil, fmt.Errorf("add destination leg: %w", err)
	}
	if err := addSocket(r.srcMap, src); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) && sourceEnded(src) {
			return nil, errSourceEnded // its FIN came meanwhile
		}
		return nil, fmt.Errorf("add source leg: %w", err)
	}
	// What src received before it was in the map waits in its receive queue,
	// and the program only runs when more arrives, which may be never (the
	// sender is done, or its window is full).
	if err := kick(src); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// Slots of the counter array.
const (
	slotRedirected = 0 // bytes redirected to the destination
	slotPassed     = 1 // bytes passed to the source's own socket (copy mode)
	slotMode       = 2 // 0: redirect; 1: copy mode (see the flow control notes)
	slotLimit      = 3 // the redirected count may not pass this (ftpgate moves it on)
	slots          = 4
)

// redirectProgram is the sk_skb verdict program. In redirect mode it
// redirects the segment to the destination leg's egress (key 0 of the target
// map) and adds its length to the redirected count when the redirect was
// accepted. A segment that would take the count past the limit switches to
// copy mode for good: from then on segments pass to the source's own socket,
// where ftpgate reads them, and are counted as passed.
func redirectProgram(dstMap, counter int) asm.Instructions {
	const skPass = 1 // SK_PASS; for bpf_sk_redirect_map: the target was accepted
	lookup := func(slot int32, onNil string) asm.Instructions {
		return asm.Instructions{
			asm.StoreImm(asm.RFP, -4, int64(slot), asm.Word), // the key on the stack
			asm.LoadMapPtr(asm.R1, counter),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, onNil),
		}
	}
	var p asm.Instructions
	p = append(p,
		asm.Mov.Reg(asm.R6, asm.R1),              // r6 = skb
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // r7 = skb->len (offset 0 in __sk_buff)
	)
	p = append(p, lookup(slotRedirected, "pass")...)
	p = append(p, asm.Mov.Reg(asm.R9, asm.R0)) // r9 = &redirected
	p = append(p, lookup(slotMode, "pass")...)
	p = append(p,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "copy"),
	)
	p = append(p, lookup(slotLimit, "pass")...)
	p = append(p,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), // r1 = limit
		asm.LoadMem(asm.R2, asm.R9, 0, asm.DWord), // r2 = redirected + len
		asm.Add.Reg(asm.R2, asm.R7),
		asm.JGT.Reg(asm.R2, asm.R1, "flip"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, dstMap),
		asm.Mov.Imm(asm.R3, 0), // key
		asm.Mov.Imm(asm.R4, 0), // flags: 0 = the target's egress
		asm.FnSkRedirectMap.Call(),
		asm.Mov.Reg(asm.R8, asm.R0), // r8 = verdict
		asm.JNE.Imm(asm.R8, skPass, "out"),
		asm.StoreXAdd(asm.R9, asm.R7, asm.DWord), // atomic add
		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("out"),
		asm.Return(),
	)
	p = append(p, lookup(slotMode, "copy")...)
	p[len(p)-len(lookup(slotMode, "copy"))] = p[len(p)-len(lookup(slotMode, "copy"))].WithSymbol("flip")
	p = append(p, asm.Mov.Imm(asm.R1, 1), asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord))
	p = append(p, lookup(slotPassed, "pass")...)
	p[len(p)-len(lookup(slotPassed, "pass"))] = p[len(p)-len(lookup(slotPassed, "pass"))].WithSymbol("copy")
	p = append(p,
		asm.StoreXAdd(asm.R0, asm.R7, asm.DWord),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	)
	return p
}

// run supervises the redirection until the source ends, lets the
// destination take the last redirected bytes, half-closes it, releases the
// objects and reports. A transfer that did not end whole (a leg that broke,
// bytes the kernel dropped) resets the destination instead (endWrite).
func (r *bpfRedirect) run(done chan<- relayResult) {
	n, err := r.supervise()
	if err == nil {
		err = r.checkReceived(n)
	}
	if err == nil {
		err = r.waitTaken(n)
	}
	r.unlink()
	clearSocketError(r.dst)
	err = endWrite(r.dst, err)
	r.release()
	done <- relayResult{n: n, err: err}
}

// Flow control. The kernel queues redirected segments on the destination
// (its psock backlog) without limit and frees them from the source's receive
// buffer at once, so a fast sender and a slow receiver would pile the whole
// file up in kernel memory (and push every TCP socket of the host into memory
// pressure). Neither a clamped window (the sender still trickles one small
// window per round trip: about 100 MB/s on loopback) nor taking the source out
// of its map (the kernel drops a segment it is redirecting at that moment)
// holds it. So the program redirects only up to a limit, which ftpgate moves
// on to backlogHigh past what the destination's socket took at each look; a
// segment beyond it switches the transfer to copy mode for good: the program
// passes every later segment to the source's own socket, where it is charged
// to the receive buffer (TCP's window closes as with any socket nobody
// reads), and once the destination took every redirected byte ftpgate copies
// the rest in user space, in order. The kernel holds at most backlogHigh per
// transfer.
const (
	backlogHigh = 16 << 20

	superviseMin = 2 * time.Millisecond  // between looks while bytes move
	superviseMax = 20 * time.Millisecond // between looks at an idle transfer

	// drainWait bounds the wait, after the source's FIN, for the program to
	// count the bytes received before it; a segment the kernel dropped
	// instead never comes.
	drainWait = time.Second
)

// legState is one look at both legs.
type legState struct {
	ended   bool  // the source's peer sent its FIN
	queued  int64 // bytes the source received that the program has not counted
	moved   int64 // bytes redirected (the counter)
	written int64 // bytes the destination's socket took
}

// look reads the source's TCP state and count of bytes received before the
// counter: the count only grows and the counter only follows it, so a look
// taken between a segment's arrival and its run through the program shows
// it queued, never gone.
func (r *bpfRedirect) look() (legState, error) {
	var st legState
	var received int64
	err := sockControl(r.src, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		switch info.State {
		case tcpEstablished:
		case tcpCloseWait:
			st.ended = true
		default:
			return fmt.Errorf("source leg: connection state %d", info.State)
		}
		received = int64(info.Bytes_received)
		return nil
	})
	if err != nil {
		return st, err
	}
	if st.moved, err = r.moved(); err != nil {
		return st, err
	}
	st.queued = pendingBytes(received, st.moved, st.ended)
	st.written, err = bytesWritten(r.dst)
	return st, err
}

// pendingBytes is how many of the bytes a source's TCP received the program
// has not counted yet. Once the source has ended, its FIN counts as one byte
// received (tcpi_bytes_received follows the sequence numbers).
func pendingBytes(received, counted int64, ended bool) int64 {
	if ended {
		received--
	}
	return received - counted
}

// supervise returns the number of bytes moved once the source has ended and
// every byte it received was redirected (or copied, in copy mode). It ends
// with an error when a leg breaks or is closed (ABOR, the idle watch).
func (r *bpfRedirect) supervise() (int64, error) {
	pause := superviseMin
	var last legState
	var endedShort time.Time // when the source was first seen ended with bytes not counted
	for {
		st, err := r.look()
		if err != nil {
			return st.moved, err
		}
		mode, err := r.slot(slotMode)
		if err != nil {
			return st.moved, err
		}
		switch {
		case mode != 0:
			return r.copyRest()
		case st.ended && st.queued <= 0:
			return st.moved, nil // every byte up to the FIN was redirected
		case st.written != last.written:
			if err := r.count.Update(uint32(slotLimit), uint64(st.written+backlogHigh), ebpf.UpdateExist); err != nil {
				return st.moved, fmt.Errorf("move the backlog limit: %w", err)
			}
		case st.ended:
			// The FIN came with bytes the program has not counted.
			if endedShort.IsZero() {
				endedShort = time.Now()
			} else if time.Since(endedShort) > drainWait {
				return st.moved, nil // dropped: checkReceived says so
			}
			if err := kick(r.src); err != nil {
				return st.moved, err
			}
		}
		if st != last {
			pause = superviseMin
		} else {
			pause = min(2*pause, superviseMax)
		}
		last = st
		time.Sleep(pause)
	}
}

// copyRest finishes a transfer in copy mode: later segments stay with the
// source, the redirected ones drain, and the rest is copied in user space
// (read(2) on a socket in a map returns what the program passed; splice would
// not see it).
func (r *bpfRedirect) copyRest() (int64, error) {
	// The program runs segment after segment for one socket, so once it
	// passed one, the redirected count is final; an ended source sends none.
	var moved int64
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, kernelPathFlushMax) {
		st, err := r.look()
		if err != nil {
			return st.moved, err
		}
		passed, err := r.slot(slotPassed)
		if err != nil {
			return st.moved, err
		}
		if passed > 0 || (st.ended && st.queued <= 0) {
			moved = st.moved
			break
		}
		time.Sleep(pause)
	}
	r.log.Info("sockmap data path: the receiver fell behind; copying the rest in user space",
		zap.Int64("redirected", moved), zap.Int("backlog_limit", backlogHigh))
	if err := r.waitTaken(moved); err != nil {
		return moved, err
	}
	buf := make([]byte, copyBufSize(r.src))
	n, err := io.CopyBuffer(struct{ io.Writer }{r.dst}, struct{ io.Reader }{r.src}, buf)
	return moved + n, err
}

// kick makes TCP look for readable data on c at once (setting SO_RCVLOWAT
// does), which runs the verdict program on what waits in c's receive queue.
func kick(c *net.TCPConn) error {
	if err := sockControl(c, func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1) }); err != nil {
		return fmt.Errorf("flush the source's receive queue: %w", err)
	}
	return nil
}

// sourceEnded reports whether the peer of c has closed its side (c's TCP
// state is CLOSE_WAIT): a sockmap takes only established connections.
func sourceEnded(c *net.TCPConn) bool {
	ended := false
	sockControl(c, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		ended = err == nil && info.State == tcpCloseWait
		return err
	})
	return ended
}

// moved reads the counter: the bytes redirected to the destination.
func (r *bpfRedirect) moved() (int64, error) { return r.slot(slotRedirected) }

func (r *bpfRedirect) slot(k uint32) (int64, error) {
	var n uint64
	if err := r.count.Lookup(k, &n); err != nil {
		return 0, fmt.Errorf("read byte counter: %w", err)
	}
	return int64(n), nil
}

// checkReceived compares the counter with what the source's TCP received:
// every byte of a data connection is data, so they are equal unless the
// kernel dropped a segment it could not redirect. TCP counts the FIN as one
// byte received (tcpi_bytes_received follows the sequence numbers), and the
// source has ended.
func (r *bpfRedirect) checkReceived(n int64) error {
	got, ok := bytesReceived(r.src)
	if ok && got != n+1 {
		return fmt.Errorf("sockmap data path: source received %d bytes and the FIN, %d redirected", got-1, n)
	}
	return nil
}

// waitTaken waits until the destination's socket holds or has delivered all
// n redirected bytes. It ends early when the destination fails or is closed
// (ABOR, the idle watch).
func (r *bpfRedirect) waitTaken(n int64) error {
	pause := 20 * time.Microsecond
	for {
		written, err := bytesWritten(r.dst)
		if err != nil {
			return fmt.Errorf("destination leg: %w", err)
		}
		if written >= n {
			return nil
		}
		time.Sleep(pause)
		pause = min(2*pause, kernelPathFlushMax)
	}
}

// bytesWritten is how many bytes c's socket has taken from its writers: the
// bytes the peer acknowledged plus those still in the send queue (SIOCOUTQ
// counts both unsent and unacknowledged ones). A connection that cannot send
// any more ends the wait. (A pending socket error does not: see
// clearSocketError.)
func bytesWritten(c *net.TCPConn) (int64, error) {
	var n int64
	err := sockControl(c, func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		if info.State != tcpEstablished && info.State != tcpCloseWait {
			return fmt.Errorf("connection state %d", info.State)
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return err
		}
		n = int64(info.Bytes_acked) + int64(outq)
		return nil
	})
	return n, err
}

// clearSocketError consumes the broken-pipe report the kernel leaves on the
// destination when the source's FIN passes its psock (measured on 6.18: after
// the last data went out, with the connection healthy), so that the
// half-close and the close see a healthy connection. A destination that
// really broke is seen by its TCP state (bytesWritten).
func clearSocketError(c *net.TCPConn) {
	sockControl(c, func(fd int) error {
		_, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		return err
	})
}

// unlink takes both legs out of the maps; their sockets are plain TCP again.
// A leg that was closed has left its map already.
func (r *bpfRedirect) unlink() {
	for _, m := range []*ebpf.Map{r.srcMap, r.dstMap} {
		if m != nil {
			_ = m.Delete(uint32(0)) // ErrKeyNotExist: the leg was closed or never added
		}
	}
}

// release closes every BPF object; the kernel frees them with their last
// file descriptor (the source map first: it holds the program, which holds
// the target map and the counter).
func (r *bpfRedirect) release() {
	if r.srcMap != nil {
		r.srcMap.Close()
	}
	if r.prog != nil {
		r.prog.Close()
	}
	for _, m := range []*ebpf.Map{r.dstMap, r.count} {
		if m != nil {
			m.Close()
		}
	}
}

// addSocket puts c's socket into m at key 0.
func addSocket(m *ebpf.Map, c *net.TCPConn) error {
	return sockControl(c, func(fd int) error { return m.Update(uint32(0), uint32(fd), ebpf.UpdateAny) })
}

// sockControl runs fn on c's file descriptor.
func sockControl(c *net.TCPConn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// copyBufSize is the read size of copy mode: at least the source's receive
// buffer, so that a read takes every segment waiting whole. While nothing is
// in the psock's own queue, a read on a socket in a map reads its TCP
// receive queue directly; one that stops inside a segment the program has
// not been through leaves the rest at the head of the queue, and the program,
// which takes segments whole, can then pass on the whole segment, the part
// already read included. With 256 KiB reads, TestKernelPathFlowControl saw a
// 64 KiB segment arrive twice in 2 of about 50 runs on 6.18; with these, in
// none of 58.
func copyBufSize(c *net.TCPConn) int {
	n := 256 << 10
	sockControl(c, func(fd int) error {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		if err == nil && v > n {
			n = v
		}
		return err
	})
	return n
}
