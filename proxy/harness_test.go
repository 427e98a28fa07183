package proxy

import (
	"context"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
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

// dialOnly connects from the loopback source address src ("" for the
// kernel's choice) without logging in; it checks nothing of the greeting.
func (h *harness) dialOnly(src string) *client {
	h.t.Helper()
	d := net.Dialer{}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, c: c, tp: newTextproto(c)}
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

// payload returns n bytes of a pattern whose period (65,521, a prime) is
// no power of two, so that a chunk lost, repeated or moved shows.
//
// The first period is computed byte by byte and the rest copied: under the
// race detector a loop over every byte of 100 MiB took 1.1 s on an idle
// machine and over 5 s with the suite beside it, past the harness's idle
// timeout, so the session ended with "421 Idle timeout." while the test was
// still making the file it would ask for.
func payload(n int) []byte {
	const period = 65521
	b := make([]byte, n)
	for i := range b[:min(n, period)] {
		b[i] = byte(i*7 + i/251)
	}
	for k := period; k < n; k *= 2 {
		copy(b[k:], b[:k])
	}
	return b
}

// transfer runs one transfer command over a new data connection in mode
// and returns what was downloaded (or uploads data). The data connection may
// take up to two minutes (100 MiB under the race detector); an error on it
// fails the test.
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
		if conn, err = ln.Accept(); err != nil {
			c.t.Fatalf("accepting the active data connection: %v", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	var got []byte
	var err error
	if data != nil {
		_, err = conn.Write(data)
		conn.Close()
	} else {
		got, err = io.ReadAll(conn)
	}
	if err != nil {
		c.t.Fatalf("%s: data connection: %v", command, err)
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

// transferRecords returns the n transfer records of logs. A record follows
// the client's final reply, so a test that has just read its 226 may be a
// moment ahead of it: this waits up to 5 s for the n-th. More than n fail.
func transferRecords(t testing.TB, logs *observer.ObservedLogs, n int) []observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := logs.FilterMessage("transfer").All()
		if len(recs) > n || (len(recs) < n && time.Now().After(deadline)) {
			t.Fatalf("%d transfer records, want %d: %v", len(recs), n, recs)
		}
		if len(recs) == n {
			return recs
		}
		time.Sleep(time.Millisecond)
	}
}

func checkTransferLogs(t *testing.T, logs *observer.ObservedLogs, n int) {
	t.Helper()
	recs := transferRecords(t, logs, n)
	for _, r := range recs {
		m := r.ContextMap()
		if m["bytes"].(int64) != 300<<10 || m["code"].(int64) != 226 {
			t.Errorf("transfer record %v: want 307200 bytes and code 226", m)
		}
	}
}
