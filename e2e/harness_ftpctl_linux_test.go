//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"golang.org/x/sys/unix"
)

// ftpReply is one FTP reply: its code and its text lines joined by "\n".
type ftpReply struct {
	Code int
	Text string
}

func (r ftpReply) String() string { return r.Text }

// Bounds of what ftpCtl reads from a peer.
const (
	ctlMaxLine    = 4096
	ctlMaxLines   = 200
	ctlReadWithin = 30 * time.Second
)

// ftpCtl is an FTP control connection from a namespace, driven one command at a time: for the
// tests that must stop where real clients never pause (after PASV, before RETR, in the middle
// of a transfer) and look at the kernel meanwhile. It keeps a transcript with PASS masked.
type ftpCtl struct {
	ns   string
	conn net.Conn
	r    *bufio.Reader

	mu         sync.Mutex
	transcript strings.Builder
}

// dialCtl connects from ns to addr and reads the greeting, whatever its code.
func dialCtl(ctx context.Context, ns, addr string) (*ftpCtl, ftpReply, error) {
	conn, err := dialIn(ctx, ns, "tcp", addr)
	if err != nil {
		return nil, ftpReply{}, fmt.Errorf("control connection to %s: %w", addr, err)
	}
	c := &ftpCtl{ns: ns, conn: conn, r: bufio.NewReaderSize(conn, ctlMaxLine)}
	greeting, err := c.read()
	if err != nil {
		conn.Close()
		return nil, greeting, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	return c, greeting, nil
}

// dialLogin connects, logs in as the test user and switches to binary mode.
func dialLogin(ctx context.Context, ns, addr string) (*ftpCtl, error) {
	c, greeting, err := dialCtl(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	if greeting.Code != 220 {
		c.Close()
		return nil, fmt.Errorf("greeting from %s: %q, want 220", addr, greeting)
	}
	for _, step := range []struct {
		line string
		code int
	}{{"USER " + e2eUser, 331}, {"PASS " + e2ePassword, 230}, {"TYPE I", 200}} {
		if _, err := c.expect(step.line, step.code); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// mustLogin is dialLogin for a test: it fails the test if the login fails, and closes the
// connection when the test ends.
func mustLogin(ctx context.Context, t testing.TB, ns, addr string) *ftpCtl {
	t.Helper()
	c, err := dialLogin(ctx, ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *ftpCtl) note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(&c.transcript, format+"\n", args...)
}

// Transcript returns what was said on the connection so far.
func (c *ftpCtl) Transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transcript.String()
}

// Close closes the control connection.
func (c *ftpCtl) Close() { c.conn.Close() }

// send writes one command line.
func (c *ftpCtl) send(line string) error {
	shown := line
	if strings.HasPrefix(strings.ToUpper(line), "PASS ") {
		shown = "PASS ****"
	}
	c.note("> %s", shown)
	_ = c.conn.SetWriteDeadline(time.Now().Add(ctlReadWithin))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return fmt.Errorf("send %s: %w", shown, err)
	}
	return nil
}

// read reads one reply, multi-line ones whole, within ctlReadWithin.
func (c *ftpCtl) read() (ftpReply, error) {
	return c.readWithin(ctlReadWithin)
}

func (c *ftpCtl) readWithin(d time.Duration) (ftpReply, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var lines []string
	code := 0
	for len(lines) < ctlMaxLines {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return ftpReply{}, fmt.Errorf("reply line longer than %d bytes", ctlMaxLine)
		}
		if err != nil {
			return ftpReply{}, fmt.Errorf("read reply: %w", err)
		}
		s := strings.TrimRight(string(line), "\r\n")
		c.note("< %s", s)
		lines = append(lines, s)
		if len(s) < 3 {
			if code == 0 {
				return ftpReply{}, fmt.Errorf("malformed reply line %q", s)
			}
			continue
		}
		n, err := strconv.Atoi(s[:3])
		if code == 0 {
			if err != nil || n < 100 || n > 599 {
				return ftpReply{}, fmt.Errorf("malformed reply line %q", s)
			}
			code = n
		}
		if n == code && err == nil && (len(s) == 3 || s[3] == ' ') {
			return ftpReply{Code: code, Text: strings.Join(lines, "\n")}, nil
		}
	}
	return ftpReply{}, fmt.Errorf("reply of more than %d lines", ctlMaxLines)
}

// cmd sends a command and reads one reply.
func (c *ftpCtl) cmd(line string) (ftpReply, error) {
	if err := c.send(line); err != nil {
		return ftpReply{}, err
	}
	return c.read()
}

// expect sends a command and checks the reply's code.
func (c *ftpCtl) expect(line string, code int) (ftpReply, error) {
	r, err := c.cmd(line)
	if err != nil {
		return r, err
	}
	if r.Code != code {
		return r, fmt.Errorf("%s: reply %q, want %d", strings.Fields(line)[0], r, code)
	}
	return r, nil
}

var (
	pasvAddr = regexp.MustCompile(`(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)`)
	epsvPort = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)
)

// passive sends PASV or EPSV and returns where to connect: for PASV the address in the 227
// reply, for EPSV the control connection's peer with the 229 reply's port.
func (c *ftpCtl) passive(verb string) (netip.AddrPort, error) {
	switch verb {
	case "PASV":
		r, err := c.expect("PASV", 227)
		if err != nil {
			return netip.AddrPort{}, err
		}
		m := pasvAddr.FindStringSubmatch(r.Text)
		if m == nil {
			return netip.AddrPort{}, fmt.Errorf("no address in %q", r)
		}
		var b [6]byte
		for i := range b {
			n, err := strconv.Atoi(m[i+1])
			if err != nil || n > 255 {
				return netip.AddrPort{}, fmt.Errorf("bad number %q in %q", m[i+1], r)
			}
			b[i] = byte(n)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])), nil
	case "EPSV":
		r, err := c.expect("EPSV", 229)
		if err != nil {
			return netip.AddrPort{}, err
		}
		m := epsvPort.FindStringSubmatch(r.Text)
		if m == nil {
			return netip.AddrPort{}, fmt.Errorf("no port in %q", r)
		}
		port, err := strconv.ParseUint(m[1], 10, 16)
		if err != nil || port == 0 {
			return netip.AddrPort{}, fmt.Errorf("bad port in %q", r)
		}
		peer := c.conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		return netip.AddrPortFrom(peer, uint16(port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s is not a passive command", verb)
}

// mustPassive is passive for a test: it fails the test, with the transcript, if the command
// fails.
func (c *ftpCtl) mustPassive(t testing.TB, verb string) netip.AddrPort {
	t.Helper()
	target, err := c.passive(verb)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Transcript())
	}
	return target
}

// active opens a listener in the client's namespace on the control connection's local
// address and announces it with PORT or EPRT; the reply must be 200.
func (c *ftpCtl) active(verb string) (net.Listener, error) {
	local := c.conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	l, err := listenIn(c.ns, "tcp", hostPort(local.String(), 0))
	if err != nil {
		return nil, fmt.Errorf("active-mode listener: %w", err)
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	port := ap.Port()
	var line string
	switch verb {
	case "PORT":
		a := local.As4()
		line = fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], port>>8, port&0xff)
	case "EPRT":
		fam := 1
		if local.Is6() {
			fam = 2
		}
		line = fmt.Sprintf("EPRT |%d|%s|%d|", fam, local, port)
	default:
		l.Close()
		return nil, fmt.Errorf("%s is not an active command", verb)
	}
	if _, err := c.expect(line, 200); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// startTransfer sends a transfer command and reads its preliminary reply, which must be 1xx.
func (c *ftpCtl) startTransfer(line string) (ftpReply, error) {
	r, err := c.cmd(line)
	if err != nil {
		return r, err
	}
	if r.Code >= 200 {
		return r, fmt.Errorf("%s: reply %q, want 1xx", strings.Fields(line)[0], r)
	}
	return r, nil
}

// finalReply reads replies until a final (2xx-5xx) one.
func (c *ftpCtl) finalReply(within time.Duration) (ftpReply, error) {
	deadline := time.Now().Add(within)
	for {
		r, err := c.readWithin(time.Until(deadline))
		if err != nil || r.Code >= 200 {
			return r, err
		}
	}
}

// quit says goodbye and closes the connection.
func (c *ftpCtl) quit() error {
	defer c.Close()
	_, err := c.expect("QUIT", 221)
	return err
}

// retrieve connects to a passive data address from ns, downloads a fixture with RETR and
// checks its checksum and the final reply. between, if not nil, runs once the first byte has
// arrived (see readDownload).
func retrieve(ctx context.Context, ctl *ftpCtl, ns string, target netip.AddrPort, fixture string, between func()) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	data, err := dialIn(dctx, ns, "tcp", target.String())
	cancel()
	if err != nil {
		return fmt.Errorf("data connection to %s: %w", target, err)
	}
	defer data.Close()
	if _, err := ctl.startTransfer("RETR " + fixture); err != nil {
		return fmt.Errorf("%w\n%s", err, ctl.Transcript())
	}
	if between == nil {
		between = func() {}
	}
	if err := readDownload(data, fixture, between); err != nil {
		return fmt.Errorf("%w\n%s", err, ctl.Transcript())
	}
	if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
		return fmt.Errorf("RETR %s: final reply %q (%v), want 226\n%s", fixture, r, err, ctl.Transcript())
	}
	return nil
}

// dataSum reads a data connection to its end within d, and returns the sha256 and count of
// what came.
func dataSum(conn net.Conn, d time.Duration) (string, int64, error) {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	h := sha256.New()
	n, err := io.Copy(h, conn)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// readDownload reads a download of a fixture from an open data connection: the first byte,
// then between() (the relay has started, so ftpgate has accepted both data connections), then
// the rest; it checks the size and sha256 of the whole.
func readDownload(data net.Conn, fixture string, between func()) error {
	h := sha256.New()
	_ = data.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(io.TeeReader(data, h), make([]byte, 1)); err != nil {
		return fmt.Errorf("first byte of %s: %w", fixture, err)
	}
	between()
	n, err := io.Copy(h, data)
	n++
	if err != nil {
		return fmt.Errorf("download of %s: %w after %d bytes", fixture, err, n)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != suite.sums[fixture] {
		return fmt.Errorf("download of %s: %d bytes with sha256 %s, want %s", fixture, n, sum, suite.sums[fixture])
	}
	return nil
}

// dialSmallWindow opens a connection from ns whose receive buffer is small, so that a sender
// cannot push a whole file into kernel buffers while the reader waits.
func dialSmallWindow(ctx context.Context, ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		d := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<10)
			}); err != nil {
				return err
			}
			return serr
		}}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// isTimeout reports whether a dial failed because nothing answered in time (a dropped SYN),
// as opposed to a refusal or an unreachable network.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// expectDropped dials addr from ns for d and reports an error unless the attempt timed out:
// the SYN was never answered.
func expectDropped(ctx context.Context, ns, addr string, d time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c, err := dialIn(dctx, ns, "tcp", addr)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("connection from %s to %s was accepted; want its SYN dropped", ns, addr)
	case !isTimeout(err):
		return fmt.Errorf("connection from %s to %s failed with %v; want a timeout (SYN dropped, not refused)", ns, addr, err)
	}
	return nil
}

// listening reports whether something in ns listens on addr (ss).
func listening(ctx context.Context, t *testing.T, ns string, addr netip.AddrPort) bool {
	t.Helper()
	out, err := nsrun.Command(ctx, ns, "ss", "-Hltn").Output()
	if err != nil {
		t.Fatalf("ss -ltn in %s: %v", ns, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			if ap, err := netip.ParseAddrPort(f[3]); err == nil && ap == addr {
				return true
			}
		}
	}
	return false
}
