package proxy

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestSnapshot: a snapshot shows the logged-in session, the pinhole a
// pending PASV opened with its remaining time, and a download in flight with
// the bytes moved so far (read from the kernel, not counted on the data path)
// and the size the server announced.
func TestSnapshot(t *testing.T) {
	h := newHarness(t, ServerPassive, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers hold
	h.ftp.files["big"] = big
	cl := h.dial()

	snap := h.srv.Snapshot()
	if len(snap.Sessions) != 1 || snap.Sessions[0].User != "u" || !snap.Sessions[0].LoggedIn || snap.Sessions[0].Transfer != nil {
		t.Fatalf("sessions after login: %+v", snap.Sessions)
	}
	ap := cl.passive("PASV")
	snap = h.srv.Snapshot()
	if len(snap.Pinholes) != 1 || snap.Pinholes[0].Local.Port() != ap.Port() || snap.Pinholes[0].Remaining <= 0 {
		t.Fatalf("pinholes after PASV to %s: %+v", ap, snap.Pinholes)
	}
	d := dialData(t, ap)
	cl.cmd(150, "RETR big")
	var tr *TransferInfo
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		snap = h.srv.Snapshot()
		if len(snap.Sessions) == 1 && snap.Sessions[0].Transfer != nil && snap.Sessions[0].Transfer.Bytes > 0 {
			tr = snap.Sessions[0].Transfer
			break
		}
	}
	if tr == nil {
		t.Fatalf("no transfer in flight with bytes in the snapshot: %+v", snap.Sessions)
	}
	if tr.Verb != "RETR" || tr.Path != "big" || tr.Direction != "download" || tr.Size != int64(len(big)) || tr.Bytes > tr.Size {
		t.Fatalf("transfer in flight: %+v", tr)
	}
	if len(snap.Pinholes) != 0 {
		t.Fatalf("pinholes while the transfer runs: %+v", snap.Pinholes)
	}
	got, _ := io.ReadAll(d)
	cl.expect(226)
	if !bytes.Equal(got, big) {
		t.Fatalf("got %d bytes, want %d", len(got), len(big))
	}
	if s := h.srv.Snapshot().Sessions; len(s) != 1 || s[0].Transfer != nil {
		t.Fatalf("after the transfer: %+v", s)
	}
	cl.cmd(221, "QUIT")
}
