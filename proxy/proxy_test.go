package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is one proxy in front of one fake server, with the fake firewall
// and an observed logger.
type harness struct {
	t    *testing.T
	ftp  *fakeFTP
	fw   *nat.Fake
	srv  *Server
	logs *observer.ObservedLogs
	addr string
	stop context.CancelFunc // starts shutdown
	done chan struct{}      // closed when Serve returned
}

func newHarness(t *testing.T, mode ServerDataMode, tweak func(*fakeFTP, *Config)) *harness {
	t.Helper()
	ftp := newFakeFTP(t)
	cfg := Config{
		Listen:        []string{"127.0.0.1:0"},
		Upstream:      ftp.addr(),
		ServerMode:    mode,
		DataTimeout:   2 * time.Second,
		IdleTimeout:   5 * time.Second,
		ShutdownGrace: time.Second,
	}
	if tweak != nil {
		tweak(ftp, &cfg)
	}
	core, logs := observer.New(zap.DebugLevel)
	fw := nat.NewFake()
	srv, err := New(cfg, fw, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if st := srv.Stats(); st.Listeners != 0 || st.Pinholes != 0 || st.Sessions != 0 {
			t.Errorf("after shutdown: %+v, want no listeners, pinholes or sessions", st)
		}
		if d := fw.Dump(); d != "" {
			t.Errorf("pinholes left in the firewall:\n%s", d)
		}
	})
	return &harness{t: t, ftp: ftp, fw: fw, srv: srv, logs: logs, addr: srv.Addrs()[0].String(), stop: cancel, done: done}
}

func newTextproto(c net.Conn) *textproto.Conn { return textproto.NewConn(c) }

// client is a scripted FTP client.
type client struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	cl := &client{t: h.t, c: c, tp: newTextproto(c)}
	h.t.Cleanup(func() { c.Close() })
	cl.expect(220)
	cl.cmd(331, "USER u")
	cl.cmd(230, "PASS secret-password")
	return cl
}

// cmd sends a command and checks the reply code; it returns the reply text.
func (c *client) cmd(code int, format string, args ...any) string {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(code)
}

func (c *client) expect(code int) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, msg, err := c.tp.ReadResponse(0)
	if err != nil && got == 0 {
		c.t.Fatalf("reading reply (want %d): %v", code, err)
	}
	if got != code {
		c.t.Fatalf("reply %d %q, want %d", got, msg, code)
	}
	return msg
}

// passive sends verb (PASV or EPSV) and returns the advertised data address.
func (c *client) passive(verb string) netip.AddrPort {
	c.t.Helper()
	switch verb {
	case "EPSV":
		port, err := rewrite.ParseEPSV(c.cmd(229, "EPSV"))
		if err != nil {
			c.t.Fatal(err)
		}
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	default:
		ap, err := rewrite.ParsePASV(c.cmd(227, "PASV"))
		if err != nil {
			c.t.Fatal(err)
		}
		return ap
	}
}

func dialData(t *testing.T, ap netip.AddrPort) net.Conn {
	t.Helper()
	d, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatalf("data connection to %s: %v", ap, err)
	}
	return d
}

// active listens for a data connection and announces it with verb.
func (c *client) active(verb string) net.Listener {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	var arg string
	if verb == "EPRT" {
		arg, err = rewrite.FormatEPRT(ap)
	} else {
		arg, err = rewrite.FormatPORT(ap)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.cmd(200, "%s %s", verb, arg)
	return ln
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestTransferModes moves a file both ways for every combination of client
// and server data modes, and checks the exact pinholes opened and closed.
func TestTransferModes(t *testing.T) {
	want := payload(300 << 10)
	for _, smode := range []ServerDataMode{ServerPassive, ServerActive, ServerClient} {
		for _, cmode := range []string{"PASV", "EPSV", "PORT", "EPRT"} {
			t.Run(string(smode)+"/"+cmode, func(t *testing.T) {
				h := newHarness(t, smode, nil)
				h.ftp.files["f"] = want
				cl := h.dial()

				// Download.
				got := cl.transfer(cmode, "RETR f", nil)
				if !bytes.Equal(got, want) {
					t.Fatalf("download: got %d bytes, want %d identical", len(got), len(want))
				}
				// Upload.
				cl.transfer(cmode, "STOR up", want)
				h.ftp.mu.Lock()
				up := h.ftp.files["up"]
				h.ftp.mu.Unlock()
				if !bytes.Equal(up, want) {
					t.Fatalf("upload: server got %d bytes, want %d identical", len(up), len(want))
				}
				cl.cmd(221, "QUIT")

				serverActive := smode == ServerActive || (smode == ServerClient && (cmode == "PORT" || cmode == "EPRT"))
				clientPassive := cmode == "PASV" || cmode == "EPSV"
				checkPinholes(t, h.fw.Ops(), clientPassive, serverActive, 2)
				checkTransferLogs(t, h.logs, 2)
			})
		}
	}
}

// transfer runs one transfer command over a new data connection in mode
// and returns what was downloaded (or uploads data).
func (c *client) transfer(mode, command string, data []byte) []byte {
	c.t.Helper()
	var conn net.Conn
	var ln net.Listener
	switch mode {
	case "PASV", "EPSV":
		conn = dialData(c.t, c.passive(mode))
	default:
		ln = c.active(mode)
		defer ln.Close()
	}
	c.cmd(150, "%s", command)
	if ln != nil {
		var err error
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		conn, err = ln.Accept()
		if err != nil {
			c.t.Fatalf("accepting the active data connection: %v", err)
		}
	}
	var got []byte
	if data != nil {
		conn.Write(data)
		conn.Close()
	} else {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ = io.ReadAll(conn)
		conn.Close()
	}
	c.expect(226)
	return got
}

// checkPinholes checks the firewall operations of n transfers: every open is
// matched by a close of the same pinhole, client pinholes admit the client
// (127.0.0.1) and exist only for passive client legs, server pinholes only
// for active server legs.
func checkPinholes(t *testing.T, ops []string, clientPassive, serverActive bool, n int) {
	t.Helper()
	open := map[string]bool{}
	opens := 0
	for _, op := range ops {
		verb, ph, _ := strings.Cut(op, " ")
		switch verb {
		case "open":
			if open[ph] {
				t.Errorf("pinhole %s opened twice", ph)
			}
			open[ph] = true
			opens++
		case "close":
			if !open[ph] {
				t.Errorf("pinhole %s closed but not open", ph)
			}
			delete(open, ph)
		}
	}
	if len(open) != 0 {
		t.Errorf("pinholes never closed: %v", open)
	}
	want := 0
	if clientPassive {
		want += n
	}
	if serverActive {
		want += n
	}
	if opens != want {
		t.Errorf("%d pinholes opened, want %d; ops:\n%s", opens, want, strings.Join(ops, "\n"))
	}
}

func checkTransferLogs(t *testing.T, logs *observer.ObservedLogs, n int) {
	t.Helper()
	recs := logs.FilterMessage("transfer").All()
	if len(recs) != n {
		t.Fatalf("%d transfer records, want %d", len(recs), n)
	}
	for _, r := range recs {
		m := r.ContextMap()
		if m["bytes"].(int64) != 300<<10 || m["code"].(int64) != 226 {
			t.Errorf("transfer record %v: want 307200 bytes and code 226", m)
		}
	}
}

// TestEPSVFallback: a server that refuses EPSV gets PASV, and the address in
// its 227 reply is not trusted.
func TestEPSVFallback(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		f.noEPSV = true
		f.pasvLie = "198,18,9,9" // must be ignored: we dial the control address
	})
	h.ftp.files["f"] = []byte("hello")
	cl := h.dial()
	for range 2 {
		if got := cl.transfer("EPSV", "RETR f", nil); string(got) != "hello" {
			t.Fatalf("got %q", got)
		}
	}
	cmds := strings.Join(h.ftp.commands(), " ")
	if want := "USER PASS EPSV PASV RETR PASV RETR"; cmds != want {
		t.Fatalf("server saw %q, want %q (EPSV tried once, then PASV)", cmds, want)
	}
}

// TestEPRTFallback: a server that refuses EPRT gets PORT.
func TestEPRTFallback(t *testing.T) {
	h := newHarness(t, ServerActive, func(f *fakeFTP, c *Config) { f.noEPRT = true })
	h.ftp.files["f"] = []byte("hello")
	cl := h.dial()
	if got := cl.transfer("PASV", "RETR f", nil); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	cmds := strings.Join(h.ftp.commands(), " ")
	if want := "USER PASS EPRT PORT RETR"; cmds != want {
		t.Fatalf("server saw %q, want %q", cmds, want)
	}
}

// TestBounceRefused: PORT and EPRT naming another host or a low port are
// refused with 501 and logged; the server never hears of them.
func TestBounceRefused(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	for _, c := range []string{"PORT 198,18,2,2,156,64", "EPRT |1|198.18.2.2|40000|", "PORT 127,0,0,1,0,21",
		"EPRT |2|fd00::2|40000|", "LPRT 4,4,198,18,2,2,2,156,64"} {
		msg := cl.cmd(501, "%s", c)
		if !strings.Contains(msg, "bounce") {
			t.Errorf("%s: reply %q does not say why", c, msg)
		}
	}
	if n := h.logs.FilterMessage("bounce attempt refused").Len(); n != 5 {
		t.Errorf("%d bounce log records, want 5", n)
	}
	for _, c := range h.ftp.commands() {
		if c == "PORT" || c == "EPRT" || c == "LPRT" {
			t.Errorf("server received %s", c)
		}
	}
}

// TestRefusedDataPeer: a data connection from another address is closed and
// logged, and the real client still gets its data.
func TestRefusedDataPeer(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	h.ftp.files["f"] = []byte("secret data")
	cl := h.dial()
	ap := cl.passive("EPSV")
	// 127.0.0.2 is another loopback address: not the client.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	intruder, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	real := dialData(t, ap)
	cl.cmd(150, "RETR f")
	intruder.SetReadDeadline(time.Now().Add(3 * time.Second))
	stolen, _ := io.ReadAll(intruder)
	got, _ := io.ReadAll(real)
	cl.expect(226)
	if len(stolen) != 0 {
		t.Fatalf("intruder received %q", stolen)
	}
	if string(got) != "secret data" {
		t.Fatalf("client received %q", got)
	}
	recs := h.logs.FilterMessage("data connection refused").All()
	if len(recs) != 1 || !strings.HasPrefix(recs[0].ContextMap()["from"].(string), "127.0.0.2:") {
		t.Fatalf("refusal log records: %v", recs)
	}
}

// TestNoDataPlan: a transfer without PASV/PORT is refused by us.
func TestNoDataPlan(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	cl.cmd(425, "RETR f")
	cl.cmd(221, "QUIT")
}

// TestClientNeverConnects: the client asks for PASV and never connects; the
// transfer ends with 425, the pinhole is closed and the session goes on.
func TestClientNeverConnects(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	h.ftp.files["f"] = []byte("x")
	cl := h.dial()
	cl.passive("EPSV")
	cl.cmd(150, "RETR f")
	cl.expect(425)
	if d := h.fw.Dump(); d != "" {
		t.Fatalf("pinhole left open:\n%s", d)
	}
	if got := cl.transfer("EPSV", "RETR f", nil); string(got) != "x" {
		t.Fatalf("next transfer got %q", got)
	}
}

// TestSecondPASVReplacesFirst: one pending listener per session.
func TestSecondPASVReplacesFirst(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	first := cl.passive("PASV")
	cl.passive("PASV")
	if n := len(strings.Fields(strings.ReplaceAll(h.fw.Dump(), " ", ""))); n != 1 {
		t.Fatalf("pinholes after two PASV:\n%s", h.fw.Dump())
	}
	if c, err := net.DialTimeout("tcp", first.String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("first passive listener %s still open", first)
	}
	cl.cmd(226, "ABOR")
	if d := h.fw.Dump(); d != "" {
		t.Fatalf("pinhole left after ABOR:\n%s", d)
	}
}

// TestFEATFiltered: TLS features are hidden until ftpgate carries TLS.
func TestFEATFiltered(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	msg := cl.cmd(211, "FEAT")
	for _, gone := range []string{"AUTH", "PBSZ", "PROT"} {
		if strings.Contains(msg, gone) {
			t.Errorf("FEAT still lists %s:\n%s", gone, msg)
		}
	}
	for _, kept := range []string{"EPSV", "SIZE", "UTF8"} {
		if !strings.Contains(msg, kept) {
			t.Errorf("FEAT lost %s:\n%s", kept, msg)
		}
	}
	cl.cmd(502, "AUTH TLS")
}

// TestPasswordNeverLogged: PASS reaches the server but no log line.
func TestPasswordNeverLogged(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	cl.cmd(221, "QUIT")
	for _, e := range h.logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, "secret-password") {
			t.Fatalf("password in log: %s", line)
		}
	}
	if h.logs.FilterMessage("command").Len() == 0 {
		t.Fatal("no debug command records: the check above proved nothing")
	}
}

// TestConcurrentSessions runs sessions in parallel through one proxy.
func TestConcurrentSessions(t *testing.T) {
	h := newHarness(t, ServerClient, nil)
	want := payload(64 << 10)
	h.ftp.files["f"] = want
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			tp := textproto.NewConn(c)
			step := func(code int, cmd string) (string, error) {
				if cmd != "" {
					tp.PrintfLine("%s", cmd)
				}
				_, msg, err := tp.ReadResponse(code)
				return msg, err
			}
			mode := []string{"EPSV", "PASV"}[i%2]
			for _, s := range []struct {
				code int
				cmd  string
			}{{220, ""}, {331, "USER u"}, {230, "PASS p"}} {
				if _, err := step(s.code, s.cmd); err != nil {
					errs <- err
					return
				}
			}
			code := map[string]int{"EPSV": 229, "PASV": 227}[mode]
			msg, err := step(code, mode)
			if err != nil {
				errs <- err
				return
			}
			var port uint16
			if mode == "EPSV" {
				port, err = rewrite.ParseEPSV(msg)
			} else {
				var ap netip.AddrPort
				ap, err = rewrite.ParsePASV(msg)
				port = ap.Port()
			}
			if err != nil {
				errs <- err
				return
			}
			d, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				errs <- err
				return
			}
			if _, err := step(150, "RETR f"); err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(d)
			d.Close()
			if _, err := step(226, ""); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("session %d: got %d bytes", i, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestShutdownLetsTransferFinish: on shutdown a running upload completes,
// then the session hears 421 and no new sessions are accepted.
func TestShutdownLetsTransferFinish(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	cl := h.dial()
	d := dialData(t, cl.passive("EPSV"))
	cl.cmd(150, "STOR during-shutdown")
	d.Write([]byte("first half, "))
	h.stop()
	// Shutdown has begun: the control listener closes (within a bounded
	// wait) while the transfer goes on.
	refused := false
	for range 100 {
		c, err := net.DialTimeout("tcp", h.addr, 200*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Fatal("control listener still accepting during shutdown")
	}
	d.Write([]byte("second half"))
	d.Close()
	cl.expect(226)
	cl.expect(421)
	<-h.done
	h.ftp.mu.Lock()
	got := string(h.ftp.files["during-shutdown"])
	h.ftp.mu.Unlock()
	if got != "first half, second half" {
		t.Fatalf("server stored %q", got)
	}
}

// TestServerGivesUp: when the server in active mode cannot connect and says
// so, the client hears the server's 425 at once, not after the data timeout.
func TestServerGivesUp(t *testing.T) {
	h := newHarness(t, ServerActive, func(f *fakeFTP, c *Config) {
		f.noDial = true
		c.DataTimeout = 20 * time.Second
	})
	h.ftp.files["f"] = []byte("x")
	cl := h.dial()
	cl.passive("EPSV")
	start := time.Now()
	cl.cmd(150, "RETR f")
	msg := cl.expect(425)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("425 after %v", d)
	}
	if !strings.Contains(msg, "could not connect") {
		t.Fatalf("425 %q is not the server's", msg)
	}
	if d := h.fw.Dump(); d != "" {
		t.Fatalf("pinholes left:\n%s", d)
	}
	cl.cmd(221, "QUIT")
}

// TestAbortTransfer: ABOR with Telnet IP and Synch during a download closes
// the data connections, reaches the server, and the client gets the
// transfer's 426 and then ABOR's 226; the session goes on.
func TestAbortTransfer(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { f.slow = "big" })
	h.ftp.files["big"] = payload(4096)
	h.ftp.files["small"] = []byte("after")
	cl := h.dial()
	d := dialData(t, cl.passive("EPSV"))
	cl.cmd(150, "RETR big")
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(d, buf); err != nil {
		t.Fatalf("no data before ABOR: %v", err)
	}
	// IAC IP, IAC DM, then ABOR, as RFC 959 asks.
	if _, err := cl.c.Write([]byte("\xff\xf4\xff\xf2ABOR\r\n")); err != nil {
		t.Fatal(err)
	}
	cl.expect(426)
	cl.expect(226)
	d.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, d); err != nil {
		t.Fatalf("data connection not closed after ABOR: %v", err)
	}
	if got := cl.transfer("EPSV", "RETR small", nil); string(got) != "after" {
		t.Fatalf("next transfer got %q", got)
	}
	recs := h.logs.FilterMessage("transfer").All()
	if len(recs) != 2 || recs[0].ContextMap()["aborted"] != true {
		t.Fatalf("transfer records %v: want the first marked aborted", recs)
	}
}

// TestEPSVAll: after EPSV ALL only EPSV may set up data connections.
func TestEPSVAll(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	h.ftp.files["f"] = []byte("x")
	cl := h.dial()
	cl.cmd(200, "EPSV ALL")
	for _, c := range []string{"PASV", "PORT 127,0,0,1,156,64", "EPRT |1|127.0.0.1|40000|", "LPSV"} {
		cl.cmd(501, "%s", c)
	}
	if got := cl.transfer("EPSV", "RETR f", nil); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
}

// TestAbortUnanswered: a server that never answers ABOR does not hang the
// session: ftpgate resynchronises with a NOOP of its own, which the client
// never sees.
func TestAbortUnanswered(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { f.slow, f.muteAbo = "big", true })
	h.ftp.files["big"] = payload(4096)
	h.ftp.files["small"] = []byte("after")
	cl := h.dial()
	d := dialData(t, cl.passive("EPSV"))
	cl.cmd(150, "RETR big")
	io.ReadFull(d, make([]byte, 4096))
	cl.cmd(426, "ABOR")
	if got := cl.transfer("EPSV", "RETR small", nil); string(got) != "after" {
		t.Fatalf("next transfer got %q", got)
	}
	cl.cmd(221, "QUIT")
}
