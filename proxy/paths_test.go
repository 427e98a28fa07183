package proxy

import (
	"testing"
	"time"
)

// TestAbsolutePaths: with AbsolutePaths the records name files by absolute
// path, following the client's CWD and CDUP from the directory the server
// reported after the login.
func TestAbsolutePaths(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Observer, c.AbsolutePaths = rec, true
		f.files["f"] = []byte("x")
	})
	cl := h.dial()
	cl.cmd(250, "CWD sub")
	cl.transfer("EPSV", "RETR f", nil)
	cl.cmd(200, "CDUP")
	cl.cmd(550, "DELE gone")
	cl.cmd(250, "CWD /srv/data")
	cl.cmd(550, "DELE ../other")
	cl.cmd(221, "QUIT")
	for deadline := time.Now().Add(5 * time.Second); rec.count()["session-end"] == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no session end")
		}
	}
	if tr := rec.transfers(); len(tr) != 1 || tr[0].Path != "/home/u/sub/f" {
		t.Fatalf("transfer records %+v, want /home/u/sub/f", tr)
	}
	var paths []string
	rec.mu.Lock()
	for _, e := range rec.events {
		if f, ok := e.(FileCommandEvent); ok {
			paths = append(paths, f.Path)
		}
	}
	rec.mu.Unlock()
	if len(paths) != 2 || paths[0] != "/home/u/gone" || paths[1] != "/srv/other" {
		t.Fatalf("file command paths %v, want /home/u/gone and /srv/other", paths)
	}
}
