package proxy

import (
	"bytes"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// Answering ahead (datasetup.go): a logged-in client's EPSV or PASV in
// front of a passive server leg is answered from ftpgate's own data port
// without waiting for the server's reply, which is read when it comes.

// gatedHarness is a harness whose server answers EPSV and PASV only after
// release is called. Its passive range has three ports, which plans take in
// turn (TestPortsRest), so that two plans in a row have different ports.
func gatedHarness(t *testing.T, noEPSV bool) (h *harness, release func()) {
	gate := make(chan struct{})
	ports := freeRun(t, 3)
	h = newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		f.gate, f.noEPSV = gate, noEPSV
		c.PassivePorts = ports
	})
	h.ftp.files["f"] = payload(100 << 10)
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // the fake server must not stay blocked
	return h, release
}

// afterLogin is what the server was sent after the login.
func afterLogin(h *harness) []string {
	cmds := h.ftp.commands()
	return cmds[slices.Index(cmds, "PASS")+1:]
}

// retrOver runs RETR f over the data connection d and checks the bytes.
func retrOver(t *testing.T, h *harness, cl *client, d net.Conn) {
	t.Helper()
	defer d.Close()
	cl.cmd(150, "RETR f")
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(d)
	if want := h.ftp.files["f"]; err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes (%v), want the file's %d", len(got), err, len(want))
	}
	cl.expect(226)
}

// TestPassiveAnsweredAhead: the client hears its 229 or 227 while the
// server has not answered (its gate is shut: a proxy that waited would
// time the client's read out), connects, and the transfer works once the
// server answers; the server's reply never answers a later command.
func TestPassiveAnsweredAhead(t *testing.T) {
	t.Run("EPSV", func(t *testing.T) {
		h, release := gatedHarness(t, false)
		cl := h.dial()
		d := dialData(t, cl.passive("EPSV"))
		release()
		retrOver(t, h, cl, d)
		if cmds := afterLogin(h); !slices.Equal(cmds, []string{"EPSV", "RETR"}) {
			t.Fatalf("server got %v after the login, want one EPSV and the RETR", cmds)
		}
	})
	t.Run("PASV after a refused EPSV", func(t *testing.T) {
		// ftpgate asks EPSV ahead, reads the 500 and asks PASV, also ahead.
		h, release := gatedHarness(t, true)
		cl := h.dial()
		d := dialData(t, cl.passive("PASV"))
		release()
		retrOver(t, h, cl, d)
		if cmds := afterLogin(h); !slices.Equal(cmds, []string{"EPSV", "PASV", "RETR"}) {
			t.Fatalf("server got %v after the login, want EPSV (refused), PASV and the RETR", cmds)
		}
		// Learnt: the next plan asks PASV at once, and EPSV no more.
		retrOver(t, h, cl, dialData(t, cl.passive("EPSV")))
		if cmds := afterLogin(h); !slices.Equal(cmds, []string{"EPSV", "PASV", "RETR", "PASV", "RETR"}) {
			t.Fatalf("server got %v after the login, want EPSV (refused), PASV, RETR, then PASV and RETR", cmds)
		}
	})
	t.Run("a command before the server's reply", func(t *testing.T) {
		h, release := gatedHarness(t, false)
		cl := h.dial()
		d := dialData(t, cl.passive("EPSV"))
		time.AfterFunc(100*time.Millisecond, release) // while TYPE waits behind the EPSV
		if msg := cl.cmd(200, "TYPE I"); msg != "ok" {
			t.Fatalf("TYPE got %q: another command's reply", msg)
		}
		retrOver(t, h, cl, d)
	})
	t.Run("a second EPSV replaces the first plan", func(t *testing.T) {
		h, release := gatedHarness(t, false)
		cl := h.dial()
		first := cl.passive("EPSV")
		time.AfterFunc(100*time.Millisecond, release) // the second EPSV waits for the first's reply
		second := cl.passive("EPSV")
		if first == second {
			t.Fatalf("both plans on %v: the ports are taken in turn, so the first plan was not replaced", first)
		}
		if c, err := net.DialTimeout("tcp", first.String(), time.Second); err == nil {
			c.Close()
			t.Fatalf("the first plan's port %v still accepts", first)
		}
		retrOver(t, h, cl, dialData(t, second))
		if cmds := afterLogin(h); !slices.Equal(cmds, []string{"EPSV", "EPSV", "RETR"}) {
			t.Fatalf("server got %v after the login, want two EPSV and the RETR", cmds)
		}
	})
}
