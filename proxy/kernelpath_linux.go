//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// BPF socket redirection between the two legs of one transfer. Each transfer
// gets its own objects, released when it ends:
//
//	source map   a SockMap holding the source leg; the verdict program is
//	             attached to it, so it runs on every segment the source receives
//	target map   a SockMap holding the destination leg (no program: its own
//	             receive path stays untouched)
//	counter      an Array of one u64: the bytes handed to the destination
//	program      an sk_skb verdict program (written with cilium/ebpf's asm, no
//	             compiler): redirect the segment to the target's egress and,
//	             if that worked, add its length to the counter
//
// The kernel then queues each segment on the destination's send path (its
// psock backlog, sent by a kworker) without a copy into user space.
//
// ftpgate supervises each transfer from user space with a few cheap looks per
// millisecond while bytes move, fewer when they do not (supervise): TCP_INFO
// and SIOCINQ of the source, the counter, TCP_INFO and SIOCOUTQ of the
// destination. It never reads the source: with the socket in a map a read
// would race the program for the data.
//
//   - End of data: the source is in CLOSE_WAIT (the peer's FIN came) and its
//     receive queue is empty, so the program has redirected every byte.
//   - Flow control: the backlog is not bounded by the kernel; ftpgate clamps
//     the source's advertised window while it is too long (see backlogHigh).
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
func openKernelRelay(dst, src *net.TCPConn) (kernelRelay, error) {
	if sourceEnded(src) {
		return nil, errSourceEnded
	}
	r := &bpfRedirect{dst: dst, src: src}
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
	if r.count, err = ebpf.NewMap(&ebpf.MapSpec{Name: "ftpgate_bytes", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("create byte counter: %w", err)
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

// redirectProgram is the sk_skb verdict program: redirect the segment to
// the destination leg's egress (key 0 of the target map) and add its length
// to the counter when the redirect was accepted.
func redirectProgram(dstMap, counter int) asm.Instructions {
	const skPass = 1 // SK_PASS: bpf_sk_redirect_map accepted the target
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),              // r6 = skb
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // r7 = skb->len (offset 0 in __sk_buff)
		asm.LoadMapPtr(asm.R2, dstMap),
		asm.Mov.Imm(asm.R3, 0), // key
		asm.Mov.Imm(asm.R4, 0), // flags: 0 = the target's egress
		asm.FnSkRedirectMap.Call(),
		asm.Mov.Reg(asm.R8, asm.R0), // r8 = verdict
		asm.JNE.Imm(asm.R8, skPass, "out"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word), // key 0 on the stack
		asm.LoadMapPtr(asm.R1, counter),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.StoreXAdd(asm.R0, asm.R7, asm.DWord), // atomic add
		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("out"),
		asm.Return().WithSymbol("exit"),
	}
}

// run supervises the redirection until the source ends, lets the
// destination take the last redirected bytes, half-closes it, releases the
// objects and reports.
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
	if werr := r.dst.CloseWrite(); err == nil && werr != nil && !errors.Is(werr, net.ErrClosed) {
		err = werr
	}
	r.release()
	done <- relayResult{n: n, err: err}
}

// Flow control. The kernel queues redirected segments on the destination
// (its psock backlog) without limit and frees them from the source's receive
// buffer at once, so a fast sender and a slow receiver would pile the whole
// file up in kernel memory (and push every TCP socket of the host into memory
// pressure). ftpgate watches the backlog (bytes redirected minus bytes the
// destination's socket took) and above backlogHigh clamps the window the
// source advertises to its minimum (TCP_WINDOW_CLAMP): once the window
// already offered is used up, the sender trickles. Below backlogLow the clamp
// goes back to what it was. (Taking the source out of its map instead would
// lose segments the kernel is redirecting at that moment.)
const (
	backlogHigh = 4 << 20
	backlogLow  = 1 << 20

	superviseMin = time.Millisecond      // between looks while bytes move
	superviseMax = 20 * time.Millisecond // between looks at an idle transfer
)

// legState is one look at both legs.
type legState struct {
	ended   bool  // the source's peer sent its FIN
	queued  int   // bytes in the source's receive queue (not yet redirected)
	moved   int64 // bytes redirected (the counter)
	written int64 // bytes the destination's socket took
}

func (r *bpfRedirect) look() (legState, error) {
	var st legState
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
		st.queued, err = unix.IoctlGetInt(fd, unix.SIOCINQ)
		return err
	})
	if err != nil {
		return st, err
	}
	if st.moved, err = r.moved(); err != nil {
		return st, err
	}
	st.written, err = bytesWritten(r.dst)
	return st, err
}

// windowClamp reads or sets the source's TCP_WINDOW_CLAMP.
func windowClamp(c *net.TCPConn, set int) (int, error) {
	v := set
	err := sockControl(c, func(fd int) error {
		if set > 0 {
			return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, set)
		}
		var err error
		v, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP)
		return err
	})
	return v, err
}

// supervise returns the number of bytes moved once the source has ended and
// every byte it received was redirected. It ends with an error when a leg
// breaks or is closed (ABOR, the idle watch).
func (r *bpfRedirect) supervise() (int64, error) {
	open, err := windowClamp(r.src, 0)
	if err != nil {
		return 0, fmt.Errorf("source leg: window clamp: %w", err)
	}
	throttled := false
	pause := superviseMin
	var last legState
	for {
		st, err := r.look()
		if err != nil {
			return st.moved, err
		}
		backlog := st.moved - st.written
		switch {
		case st.ended && st.queued == 0:
			return st.moved, nil // every byte up to the FIN was redirected
		case !throttled && backlog > backlogHigh:
			if _, err := windowClamp(r.src, 1); err != nil { // the kernel's minimum
				return st.moved, fmt.Errorf("source leg: clamp the window: %w", err)
			}
			throttled = true
		case throttled && backlog <= backlogLow:
			if _, err := windowClamp(r.src, open); err != nil {
				return st.moved, fmt.Errorf("source leg: open the window: %w", err)
			}
			throttled = false
		case st.ended:
			if err := kick(r.src); err != nil { // the FIN came with data still queued
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
func (r *bpfRedirect) moved() (int64, error) {
	var n uint64
	if err := r.count.Lookup(uint32(0), &n); err != nil {
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
		return fmt.Errorf("kernel data path: source received %d bytes and the FIN, %d redirected", got-1, n)
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
