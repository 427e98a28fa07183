package proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

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
	recs := transferRecords(t, h.logs, 2)
	if recs[0].ContextMap()["aborted"] != true {
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

// TestPinholeClosesOnConnect: a pinhole admits one connection, and goes as
// soon as that connection has come, while the client is still to send its
// transfer command (off the path of the transfer's first byte). The
// connection carries the transfer after that.
func TestPinholeClosesOnConnect(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	h.ftp.files["f"] = []byte("hello")
	cl := h.dial()
	conn := dialData(t, cl.passive("EPSV"))
	defer conn.Close()
	closed := func() bool {
		ops := h.fw.Ops()
		return len(ops) == 2 && strings.HasPrefix(ops[0], "open ") && ops[1] == "close"+strings.TrimPrefix(ops[0], "open")
	}
	for deadline := time.Now().Add(2 * time.Second); !closed() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !closed() {
		t.Fatalf("firewall operations once the data connection came, before RETR (2 s; the session idles out at 5): %q; want its pinhole opened and closed", h.fw.Ops())
	}
	cl.cmd(150, "RETR f")
	conn.SetDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello" {
		t.Fatalf("data after the pinhole closed: %q, %v; want \"hello\"", got, err)
	}
	cl.expect(226)
	checkPinholes(t, h.fw.Ops(), true, false, 1)
}

// TestDataListenerLastsTheTransfer: the data listener of a transfer closes
// after the final reply, not once the legs are up (its close would sit
// between the 150 and the first byte), and then it does close.
func TestDataListenerLastsTheTransfer(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { f.slow = "big" })
	h.ftp.files["big"] = payload(4096)
	cl := h.dial()
	base := h.srv.Stats().Listeners
	d := dialData(t, cl.passive("EPSV"))
	cl.cmd(150, "RETR big")
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(d, buf); err != nil {
		t.Fatalf("no data: %v", err)
	}
	// The relay has run for a while now (the server trickles): a listener
	// closed once the legs were up would be gone.
	time.Sleep(200 * time.Millisecond)
	if got := h.srv.Stats().Listeners; got != base+1 {
		t.Fatalf("%d listeners during the transfer, want %d (the control listener and the transfer's data listener)", got, base+1)
	}
	if _, err := cl.c.Write([]byte("ABOR\r\n")); err != nil {
		t.Fatal(err)
	}
	cl.expect(426)
	cl.expect(226)
	for end := time.Now().Add(5 * time.Second); h.srv.Stats().Listeners != base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d listeners 5 s after the transfer ended, want %d", h.srv.Stats().Listeners, base)
		}
	}
}

// TestServerWaitsForOurClose: a server that sends its final reply only
// once ftpgate has closed its data connection (ProFTPD's lingering close)
// gets that close when the data has ended, before its reply came; the
// client gets the data, its end and the 226.
func TestServerWaitsForOurClose(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { f.linger = true })
	want := payload(64 << 10)
	h.ftp.files["f"] = want
	cl := h.dial()
	for range 3 {
		d := dialData(t, cl.passive("EPSV"))
		cl.cmd(150, "RETR f")
		got, err := io.ReadAll(d)
		d.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(want))
		}
		cl.expect(226)
	}
}

// TestBrokenTransferResetsTheOtherLeg: a data connection that breaks (a
// reset) is passed on as a reset, not as the end of file of a complete
// transfer, so that the far end knows its data is incomplete, as it would
// without ftpgate between: an upload whose client resets, and a download
// whose server does, both server data modes.
func TestBrokenTransferResetsTheOtherLeg(t *testing.T) {
	for _, mode := range []ServerDataMode{ServerPassive, ServerActive} {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t, mode, func(f *fakeFTP, c *Config) { f.resetRetr = "f" })
			want := payload(256 << 10)
			h.ftp.files["f"] = want
			cl := h.dial()

			// Upload: half the data, then the client resets.
			d := dialData(t, cl.passive("EPSV"))
			cl.cmd(150, "STOR up")
			if _, err := d.Write(want[:len(want)/2]); err != nil {
				t.Fatal(err)
			}
			d.(*net.TCPConn).SetLinger(0)
			d.Close()
			cl.expect(226) // the fake server answers 226 whatever it read
			h.ftp.mu.Lock()
			got, rerr := h.ftp.files["up"], h.ftp.readErr["up"]
			h.ftp.mu.Unlock()
			if rerr == nil {
				t.Errorf("the server read %d bytes and then end of file: the client's reset became a clean end", len(got))
			}

			// Download: the server sends half and resets.
			d = dialData(t, cl.passive("EPSV"))
			cl.cmd(150, "RETR f")
			d.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(d)
			d.Close()
			if err == nil {
				t.Errorf("the client read %d of %d bytes and then end of file: the server's reset became a clean end", len(got), len(want))
			}
			cl.expect(426)
			cl.cmd(200, "NOOP")
		})
	}
}
