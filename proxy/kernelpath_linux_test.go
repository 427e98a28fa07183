//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ftpgate/ftpgate/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// Kernel data path tests: real BPF objects on real sockets, so they need
// root and FTPGATE_E2E=1 (with it set, a missing prerequisite fails). Each
// test runs again as a child process in a network namespace of its own
// (loopback only, gone when the child exits); the parent checks that no
// BPF program of ftpgate's outlives the child.

const kernelPathChildEnv = "FTPGATE_KERNELPATH_CHILD"

// inOwnNetns reports whether the test runs in its namespace. In the parent
// it runs the child, checks its outcome and returns false.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(kernelPathChildEnv) == "1" {
		if err := loopbackUp(); err != nil {
			t.Fatalf("bring up loopback in the test namespace: %v", err)
		}
		return true
	}
	testenv.NeedRoot(t, "the kernel data path tests (BPF maps and programs)")
	out, err := runChild(t, nil)
	t.Logf("child in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(out, "--- PASS: "+t.Name()) {
		t.Fatalf("the child did not pass %s", t.Name())
	}
	checkNoPrograms(t)
	return false
}

// runChild runs this test in a child process in a new network namespace.
// With ready set, it returns once the child printed ready and then kills it
// with SIGKILL.
func runChild(t *testing.T, ready func(line string) bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), kernelPathChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true}
	if ready == nil {
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	seen := false
	for !seen && lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		seen = ready(lines.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return out.String(), err
	}
	go io.Copy(io.Discard, stdout)
	cmd.Wait()
	if !seen {
		return out.String(), errors.New("the child ended before it was ready")
	}
	return out.String(), nil
}

// loopbackUp brings up lo in the current network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// checkNoPrograms fails if a BPF program named like ftpgate's is loaded
// anywhere on the machine. The kernel frees programs a little after their
// last reference goes, so this waits up to two seconds.
func checkNoPrograms(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, err := countPrograms(bpfProgName)
		if err != nil {
			t.Fatalf("list BPF programs: %v", err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d BPF programs named %s still loaded after the proxy process ended", n, bpfProgName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countPrograms(name string) (int, error) {
	n := 0
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // gone meanwhile
		}
		if info, err := p.Info(); err == nil && info.Name == name {
			n++
		}
		p.Close()
	}
}

// openFDs counts this process's file descriptors, and those that are BPF
// maps or programs. Pipes are not counted: the splice relay keeps a pool of
// them for the process (io.Copy's splice pipes), which is no leak.
func openFDs(t *testing.T) (all, bpf int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "pipe:") {
			continue
		}
		all++
		if strings.HasPrefix(target, "anon_inode:bpf") {
			bpf++
		}
	}
	return all, bpf
}

// waitFDs waits up to two seconds for the descriptor counts to be all and
// bpf, and fails with what it saw otherwise.
func waitFDs(t *testing.T, what string, all, bpf int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		runtime.GC() // splice's pooled pipes close when the pool lets them go
		a, b := openFDs(t)
		if (all < 0 || a <= all) && b == bpf { // fewer is fine: the pipe pool of the baseline may be gone
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d file descriptors (%d BPF), want at most %d (%d BPF)\n%s", what, a, b, all, bpf, fdList())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kernelHarness(t *testing.T, tweak func(*fakeFTP, *Config)) *harness {
	return newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.DataPath = DataPathSockmap
		if tweak != nil {
			tweak(f, c)
		}
	})
}

// kernelPathTally counts the transfers that took the kernel data path and
// those spliced because their data had all arrived before the redirect; it
// fails on any other fallback.
func kernelPathTally(t *testing.T, h *harness) (kernel, complete int) {
	t.Helper()
	for _, l := range h.logs.FilterMessageSnippet("splicing instead").All() {
		if l.ContextMap()["reason"] != "data complete before the redirect" {
			t.Fatalf("a transfer fell back to splice: %s %v", l.Message, l.ContextMap())
		}
		complete++
	}
	return h.logs.FilterMessage("sockmap data path").Len(), complete
}

// TestKernelPathTransfers: downloads and uploads of 0, 1, 1 MiB and 100 MiB
// through the kernel data path arrive byte for byte; the transfer record
// counts exactly the file's bytes (the BPF counter); every BPF object is
// released after each transfer and no descriptor is left over.
func TestKernelPathTransfers(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	sizes := []int{0, 1, 1 << 20, 100 << 20}
	for _, mode := range []string{"EPSV", "PORT"} {
		t.Run(mode, func(t *testing.T) {
			// Between commands the test hashes up to 100 MiB and waits up to
			// 2 s for descriptors, under the race detector and beside the
			// rest of the suite; the session's idle timeout runs meanwhile,
			// and the harness's 5 s was once too short ("421 Idle timeout."
			// to a PORT). For the same reason the files exist before the
			// session does.
			h := kernelHarness(t, func(_ *fakeFTP, c *Config) { c.IdleTimeout = 30 * time.Second })
			for _, size := range sizes {
				h.ftp.files[fmt.Sprintf("f%d", size)] = payload(size)
			}
			cl := h.dial()
			baseAll, baseBPF := openFDs(t)
			if baseBPF != 0 {
				t.Fatalf("%d BPF descriptors before any transfer", baseBPF)
			}
			transfers := 0
			for _, size := range sizes {
				name := fmt.Sprintf("f%d", size)
				h.ftp.mu.Lock()
				want := h.ftp.files[name]
				h.ftp.mu.Unlock()
				sum := sha256.Sum256(want)

				got := cl.transfer(mode, "RETR "+name, nil)
				transfers++
				if gs := sha256.Sum256(got); gs != sum {
					t.Fatalf("download of %d bytes: got %d bytes, sha256 %x, want %x", size, len(got), gs, sum)
				}
				checkLastTransferBytes(t, h, transfers, "download", size)
				waitFDs(t, fmt.Sprintf("after a %d-byte download", size), baseAll, 0)

				up := "up" + name
				if size == 0 {
					want = []byte{} // the client sends nothing
				}
				cl.transfer(mode, "STOR "+up, want)
				transfers++
				h.ftp.mu.Lock()
				stored, ok := h.ftp.files[up]
				rerr := h.ftp.readErr[up]
				h.ftp.mu.Unlock()
				if gs := sha256.Sum256(stored); !ok || gs != sum {
					var last map[string]any
					if recs := h.logs.FilterMessage("transfer").All(); len(recs) > 0 {
						last = recs[len(recs)-1].ContextMap()
					}
					t.Fatalf("upload of %d bytes: server got %d bytes (read: %v), sha256 %x, want %x; latest transfer record %v; ftpgate's kernel path logs: %v",
						size, len(stored), rerr, gs, sum, last, h.logs.FilterMessageSnippet("sockmap").All())
				}
				checkLastTransferBytes(t, h, transfers, "upload", size)
				waitFDs(t, fmt.Sprintf("after a %d-byte upload", size), baseAll, 0)
			}
			kernel, complete := kernelPathTally(t, h)
			t.Logf("%d transfers: %d through the kernel data path, %d spliced (all data there before the redirect)", transfers, kernel, complete)
			if kernel+complete != transfers || kernel < 2 {
				t.Fatalf("%d transfers took the kernel data path and %d were spliced, want %d in all and at least the 100 MiB ones in the kernel",
					kernel, complete, transfers)
			}
		})
	}
}

// checkLastTransferBytes checks the n-th and latest transfer record: its
// direction, byte count (the relay's result) and 226.
func checkLastTransferBytes(t *testing.T, h *harness, n int, dir string, size int) {
	t.Helper()
	recs := transferRecords(t, h.logs, n)
	m := recs[n-1].ContextMap()
	if m["direction"] != dir || m["bytes"] != int64(size) || m["code"] != int64(226) {
		t.Fatalf("transfer record %v: want a %s of %d bytes with 226", m, dir, size)
	}
	if e, ok := m["relay_error"]; ok {
		t.Fatalf("relay error: %v", e)
	}
}

// TestKernelPathDataBeforeRedirect: the server sends all of a file and its
// FIN before the client leg exists (active client: ftpgate dials it after
// the 150, and this server sends before its 150). A sockmap takes only
// established connections, so this transfer is spliced, says so, and
// arrives whole.
func TestKernelPathDataBeforeRedirect(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	h := kernelHarness(t, func(f *fakeFTP, c *Config) { f.early = true })
	want := payload(64 << 10)
	h.ftp.files["f"] = want
	cl := h.dial()
	ln := cl.active("EPRT")
	defer ln.Close()
	cl.cmd(150, "RETR f")
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	d, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(d)
	d.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes (%v), want %d identical", len(got), err, len(want))
	}
	cl.expect(226)
	checkLastTransferBytes(t, h, 1, "download", len(want))
	if kernel, complete := kernelPathTally(t, h); kernel != 0 || complete != 1 {
		t.Fatalf("%d kernel-path transfers and %d spliced for complete data, want 0 and 1", kernel, complete)
	}
}

// TestKernelPathAbort: ABOR during a kernel-path download tears the
// redirection down: the data connections close, the BPF objects are
// released, and the next transfer takes the kernel path again.
func TestKernelPathAbort(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	h := kernelHarness(t, func(f *fakeFTP, c *Config) { f.slow = "big" })
	h.ftp.files["big"] = payload(4096)
	h.ftp.files["small"] = []byte("after")
	cl := h.dial()
	baseAll, _ := openFDs(t)
	d := dialData(t, cl.passive("EPSV"))
	cl.cmd(150, "RETR big")
	buf := make([]byte, 4096)
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(d, buf); err != nil {
		t.Fatalf("no data before ABOR: %v", err)
	}
	if _, bpf := openFDs(t); bpf != 4 {
		t.Fatalf("%d BPF descriptors during the transfer, want 4 (two sockmaps, the counter, the program)", bpf)
	}
	if _, err := cl.c.Write([]byte("\xff\xf4\xff\xf2ABOR\r\n")); err != nil {
		t.Fatal(err)
	}
	cl.expect(426)
	cl.expect(226)
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, d); err != nil {
		t.Fatalf("data connection not closed after ABOR: %v", err)
	}
	d.Close()
	waitFDs(t, "after ABOR", baseAll, 0)
	if got := cl.transfer("EPSV", "RETR small", nil); string(got) != "after" {
		t.Fatalf("next transfer got %q", got)
	}
	recs := transferRecords(t, h.logs, 2)
	if recs[0].ContextMap()["aborted"] != true {
		t.Fatalf("transfer records %v: want the first marked aborted", recs)
	}
	if kernel, complete := kernelPathTally(t, h); kernel+complete != 2 || kernel < 1 {
		t.Fatalf("%d kernel-path transfers and %d spliced for complete data, want the aborted one in the kernel", kernel, complete)
	}
}

// TestKernelPathTLSFallback: protected data legs cannot take the kernel
// path; each transfer says so in the log and is relayed in user space.
func TestKernelPathTLSFallback(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	ts := newTLSSetup(t)
	h := kernelHarness(t, func(f *fakeFTP, c *Config) { ts.gateTLS(c, ServerTLSOff) })
	want := payload(200 << 10)
	h.ftp.files["f"] = want
	cfg := ts.clientConfig()
	cl := h.dialFTPS(cfg)
	if got := cl.xfer("EPSV", "RETR f", nil, cfg, 226); !bytes.Equal(got, want) {
		t.Fatalf("download: got %d bytes, want %d identical", len(got), len(want))
	}
	cl.xfer("EPSV", "STOR up", want, cfg, 226)
	h.ftp.mu.Lock()
	up := h.ftp.files["up"]
	h.ftp.mu.Unlock()
	if !bytes.Equal(up, want) {
		t.Fatalf("upload: server got %d bytes, want %d identical", len(up), len(want))
	}
	fallbacks := h.logs.FilterMessage("sockmap data path not used: TLS data; splicing instead").All()
	if len(fallbacks) != 2 || fallbacks[0].ContextMap()["reason"] != "TLS data" {
		t.Fatalf("fallback log lines %v: want one per transfer with reason TLS data", fallbacks)
	}
	if n := h.logs.FilterMessage("sockmap data path").Len(); n != 0 {
		t.Fatalf("%d TLS transfers took the kernel path", n)
	}
}

// startSlowKernelTransfer starts a download the fake server trickles for
// seconds, through the kernel data path, and returns once data arrived and
// the four BPF objects exist.
func startSlowKernelTransfer(t *testing.T) (*harness, net.Conn) {
	t.Helper()
	h := kernelHarness(t, func(f *fakeFTP, c *Config) { f.slow = "big" })
	h.ftp.files["big"] = payload(4096)
	cl := h.dial()
	d := dialData(t, cl.passive("EPSV"))
	t.Cleanup(func() { d.Close() })
	cl.cmd(150, "RETR big")
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(d, make([]byte, 4096)); err != nil {
		t.Fatalf("no data: %v", err)
	}
	if _, bpf := openFDs(t); bpf != 4 {
		t.Fatalf("%d BPF descriptors during the transfer, want 4 (two sockmaps, the counter, the program)", bpf)
	}
	return h, d
}

// TestKernelPathShutdown: a proxy shutting down during a kernel-path
// transfer releases its BPF objects.
func TestKernelPathShutdown(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	h, _ := startSlowKernelTransfer(t)
	h.stop()
	<-h.done
	waitFDs(t, "after shutdown", -1, 0)
}

// TestKernelPathKilled: a proxy killed (SIGKILL) during a kernel-path
// transfer leaves no BPF program behind: the kernel frees the objects with
// the process.
func TestKernelPathKilled(t *testing.T) {
	const ready = "KERNEL PATH TRANSFER RUNNING"
	if os.Getenv(kernelPathChildEnv) == "1" {
		if err := loopbackUp(); err != nil {
			t.Fatal(err)
		}
		startSlowKernelTransfer(t)
		fmt.Println(ready)
		time.Sleep(time.Minute) // the parent kills us
		return
	}
	testenv.NeedRoot(t, "the kernel data path tests (BPF maps and programs)")
	out, err := runChild(t, func(line string) bool { return strings.Contains(line, ready) })
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	checkNoPrograms(t)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestKernelPathQueuedData: bytes that reached the source leg before the
// redirect began, with the sender then idle, are moved at once (not only
// when more data comes), ahead of what follows; the count is exact.
func TestKernelPathQueuedData(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	for _, size := range []int{1, 1000, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			sender, src := tcpPair(t)
			dst, receiver := tcpPair(t)
			first, second := payload(size), []byte("and the rest")
			if _, err := sender.Write(first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // queued in src
			kr, err := openKernelRelay(dst, src, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan relayResult, 1)
			go kr.run(done)
			got := make([]byte, len(first))
			receiver.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.ReadFull(receiver, got); err != nil || !bytes.Equal(got, first) {
				t.Fatalf("queued bytes: %v, identical %v", err, bytes.Equal(got, first))
			}
			sender.Write(second)
			sender.CloseWrite()
			rest, err := io.ReadAll(receiver)
			if err != nil || !bytes.Equal(rest, second) {
				t.Fatalf("after the queued bytes got %q (%v), want %q", rest, err, second)
			}
			res := <-done
			if res.err != nil || res.n != int64(size+len(second)) {
				t.Fatalf("relay result %d bytes, %v; want %d, no error", res.n, res.err, size+len(second))
			}
		})
	}
}

// TestKernelPathFlowControl: a receiver that does not read holds the sender
// back; the kernel's backlog for the destination stays bounded (the relay
// switches to copy mode), and every byte arrives, in order, once it reads.
func TestKernelPathFlowControl(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	sender, src := tcpPair(t)
	dst, receiver := tcpPair(t)
	kr, err := openKernelRelay(dst, src, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := kr.(*bpfRedirect)
	done := make(chan relayResult, 1)
	go kr.run(done)
	want := payload(256 << 20)
	sent := make(chan error, 1)
	go func() {
		_, err := sender.Write(want)
		sender.CloseWrite()
		sent <- err
	}()
	time.Sleep(time.Second) // the receiver reads nothing meanwhile
	moved, err := r.moved()
	if err != nil {
		t.Fatal(err)
	}
	written, err := bytesWritten(dst)
	if err != nil {
		t.Fatal(err)
	}
	// The program enforces the limit: redirected bytes never run more than
	// backlogHigh ahead of what the destination's socket took.
	if backlog := moved - written; backlog > backlogHigh {
		t.Fatalf("backlog of %d bytes with a receiver that does not read, want at most %d", backlog, backlogHigh)
	}
	t.Logf("receiver stalled for 1s: %d bytes redirected, %d in the destination's socket", moved, written)
	receiver.SetReadDeadline(time.Now().Add(2 * time.Minute))
	got, err := io.ReadAll(receiver)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes (%v), want %d identical", len(got), err, len(want))
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.err != nil || res.n != int64(len(want)) {
		t.Fatalf("relay result %d bytes, %v; want %d", res.n, res.err, len(want))
	}
}

// BenchmarkKernelRelaySetup: what the kernel data path adds to one transfer
// before the first byte: three maps, the program, two map updates. Root only.
func BenchmarkKernelRelaySetup(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (BPF)")
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*net.TCPConn, *net.TCPConn) {
		a, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			b.Fatal(err)
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			b.Fatal(err)
		}
		return a, c
	}
	sender, src := pair()
	dst, receiver := pair()
	defer func() { sender.Close(); src.Close(); dst.Close(); receiver.Close() }()
	b.ResetTimer()
	for range b.N {
		kr, err := openKernelRelay(dst, src, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		r := kr.(*bpfRedirect)
		r.unlink()
		r.release()
	}
}

// TestLookCountsBytesNotThroughTheProgram: a byte that waits in the source's
// TCP receive queue, not yet run through the program, counts as queued. On
// Linux 6.18 SIOCINQ on a socket in a sockmap says 0 for it (it counts only
// the psock's own queue), so a look that asked SIOCINQ could take the end
// of the data for come while that byte was still to be redirected.
func TestLookCountsBytesNotThroughTheProgram(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	sender, src := tcpPair(t)
	dst, _ := tcpPair(t)
	if _, err := sender.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for n, _ := bytesReceived(src); n < 1; n, _ = bytesReceived(src) {
		if time.Now().After(deadline) {
			t.Fatal("the byte did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	kr, err := openKernelRelay(dst, src, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := kr.(*bpfRedirect)
	defer func() { r.unlink(); r.release() }()
	// openKernelRelay ran the program on the byte (kick); take the count
	// back, as if the byte had come between the map and the kick.
	if err := r.count.Update(uint32(slotRedirected), uint64(0), ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
	st, err := r.look()
	if err != nil {
		t.Fatal(err)
	}
	if st.queued != 1 || st.ended {
		t.Fatalf("look: %+v; want 1 byte queued, not ended", st)
	}
	sender.CloseWrite()
	for !st.ended && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if st, err = r.look(); err != nil {
			t.Fatal(err)
		}
	}
	if !st.ended || st.queued != 1 {
		t.Fatalf("look after the FIN: %+v; want ended with 1 byte queued (the FIN is not data)", st)
	}
}
