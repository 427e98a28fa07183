package proxy

import (
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) transfers() []TransferEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []TransferEvent
	for _, e := range r.events {
		if t, ok := e.(TransferEvent); ok {
			out = append(out, t)
		}
	}
	return out
}

func (r *recorder) count() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, e := range r.events {
		switch e := e.(type) {
		case SessionStartEvent:
			n["session-start"]++
		case SessionEndEvent:
			n["session-end"]++
			n["session-end-"+e.Result]++
		case PinholeEvent:
			n["pinhole-"+e.Op]++
			if e.Err != nil {
				n["pinhole-error"]++
			}
		case DenialEvent:
			n["denial-"+e.Kind]++
		case UpstreamConnectEvent:
			n["upstream-connect"]++
		case FileCommandEvent:
			n["file-"+e.Verb]++
		}
	}
	return n
}

// TestObserverEvents: a session with a good download, a refused one, one
// whose client never connects, a bounce attempt and a DELE reports each to
// the Observer: transfers with their bytes, result and reply code, every
// pinhole opened also closed, the denial and the file command.
func TestObserverEvents(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, ServerPassive, func(_ *fakeFTP, c *Config) { c.Observer = rec })
	h.ftp.files["f"] = []byte("0123456789")
	cl := h.dial()
	if got := cl.transfer("EPSV", "RETR f", nil); string(got) != "0123456789" {
		t.Fatalf("download got %q", got)
	}
	cl.passive("EPSV")
	cl.cmd(550, "RETR missing")
	cl.passive("EPSV")
	cl.cmd(150, "RETR f")
	cl.expect(425) // the client never connected
	cl.cmd(501, "PORT 198,51,100,1,200,10")
	cl.cmd(250, "DELE f")
	cl.cmd(221, "QUIT")

	deadline := time.Now().Add(5 * time.Second)
	for rec.count()["session-end"] == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tr := rec.transfers()
	if len(tr) != 3 {
		t.Fatalf("got %d transfer events, want 3: %+v", len(tr), tr)
	}
	want := []struct {
		result string
		code   int
		bytes  int64
	}{{"ok", 226, 10}, {"refused", 550, 0}, {"failed", 425, 0}}
	for i, w := range want {
		got := tr[i]
		if got.Result != w.result || got.Code != w.code || got.Bytes != w.bytes || got.Verb != "RETR" ||
			got.Direction != "download" || got.ClientMode != "EPSV" || got.User != "u" {
			t.Errorf("transfer %d: %+v, want result %s, code %d, %d bytes", i, got, w.result, w.code, w.bytes)
		}
		if (got.Result == "ok") != (got.Cause == "") {
			t.Errorf("transfer %d: result %s with cause %q", i, got.Result, got.Cause)
		}
	}
	n := rec.count()
	for k, v := range map[string]int{"session-start": 1, "session-end": 1, "session-end-ok": 1, "upstream-connect": 1,
		"denial-bounce": 1, "file-DELE": 1, "pinhole-open": 3, "pinhole-close": 3} {
		if n[k] != v {
			t.Errorf("%s: %d events, want %d (all: %v)", k, n[k], v, n)
		}
	}
	if n["pinhole-error"] != 0 {
		t.Errorf("pinhole errors: %v", n)
	}
}

// TestTransferRecordsType: a transfer's record says whether TYPE A was in
// force, as the server accepted it (for xferlog's transfer-type).
func TestTransferRecordsType(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, ServerPassive, func(_ *fakeFTP, c *Config) { c.Observer = rec })
	h.ftp.files["f"] = []byte("line\r\n")
	cl := h.dial()
	types := []string{"", "A", "I", "a N", "L 8"}
	for _, typ := range types {
		if typ != "" {
			cl.cmd(200, "TYPE %s", typ)
		}
		if got := cl.transfer("EPSV", "RETR f", nil); string(got) != "line\r\n" {
			t.Fatalf("TYPE %q: download got %q", typ, got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.transfers()) < len(types) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	tr := rec.transfers()
	if len(tr) != len(types) {
		t.Fatalf("got %d transfer events, want %d", len(tr), len(types))
	}
	for i, want := range []bool{false, true, false, true, false} {
		if tr[i].ASCII != want {
			t.Errorf("after TYPE %q: ASCII %v, want %v", types[i], tr[i].ASCII, want)
		}
	}
}
