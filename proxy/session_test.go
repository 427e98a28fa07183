package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
)

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
