package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

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
