//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDataConnectionTheft: while a client's passive transfer is pending, a third host connects
// to the port ftpgate advertised. With --firewall none ftpgate itself must refuse it (no data,
// a "data connection refused" warning naming the intruder); with the own table the kernel must
// drop its SYN (the connect times out: it is not refused) and ftpgate never hears of it, so it
// logs nothing about the intruder. Either way the client's transfer then succeeds.
func TestDataConnectionTheft(t *testing.T) {
	requirePrereqs(t, needVsftpd, needPython, needFtpgate)
	cases := []struct {
		name     string
		firewall string
		ep       endpoint
		mode     dataMode
		intruder string // the third host's address in the endpoint's family
	}{
		{"ipv4-EPSV", "none", gateV4(), modeEPSV, hostV4},
		{"ipv4-PASV", "none", gateV4(), modePASVIP, hostV4},
		{"ipv6-EPSV", "none", gateV6(), modeEPSV, hostV6},
		{"ipv4-EPSV", "own-table", gateV4(), modeEPSV, hostV4},
		{"ipv4-PASV", "own-table", gateV4(), modePASVIP, hostV4},
		{"ipv6-EPSV", "own-table", gateV6(), modeEPSV, hostV6},
	}
	for _, firewall := range []string{"none", "own-table"} {
		t.Run("firewall-"+firewall, func(t *testing.T) {
			tp := newTopology(t)
			startServer(t, tp, vsftpd)
			g := startGate(t, tp, gateConfig{Firewall: firewall})
			for _, tc := range cases {
				if tc.firewall != firewall {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					testTheft(t, tp, g, tc.ep, tc.mode, tc.intruder, firewall == "none")
				})
			}
		})
	}
}

func testTheft(t *testing.T, tp *topology, g *gate, ep endpoint, m dataMode, intruder string, expectRefusalLog bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := filepath.Join(t.TempDir(), bigFile)
	cmd := nsCommand(ctx, tp.Client, python3Bin, ftplibArgs(ep, m, "pending-get", bigFile, local)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A plain pipe rather than StdoutPipe: Wait (in startProcess) must not close it under the reader.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdout.Close() })
	cmd.Stdout = w
	var transcript syncBuffer
	cmd.Stderr = &transcript
	client := startProcess(t, "ftpclient.py pending-get", cmd)
	w.Close()
	lines := bufio.NewScanner(stdout)
	next := func() (ftplibResult, error) {
		var res ftplibResult
		if !lines.Scan() {
			return res, fmt.Errorf("client output ended: %v", lines.Err())
		}
		return res, json.Unmarshal(lines.Bytes(), &res)
	}

	pending, err := next()
	if err != nil || pending.Event != "pending" {
		t.Fatalf("client did not report a pending transfer: %+v %v\ntranscript:\n%s", pending, err, transcript.String())
	}
	target := hostPort(pending.Host, pending.Port)
	t.Logf("client's pending data address: %s", target)

	// The intruder connects first and keeps reading whatever it gets.
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
	conn, dialErr := dialIn(dctx, tp.Host, "tcp", target)
	dcancel()
	stolen := make(chan int64, 1)
	if dialErr == nil {
		defer conn.Close()
		t.Logf("intruder %s connected to %s", conn.LocalAddr(), target)
		go func() {
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.Copy(io.Discard, conn)
			stolen <- n
		}()
	} else {
		t.Logf("intruder could not connect to %s: %v", target, dialErr)
		stolen <- 0
	}

	if expectRefusalLog && dialErr != nil {
		t.Fatalf("with --firewall none the intruder's connection to %s should reach ftpgate (to be refused there), got %v", target, dialErr)
	}
	if !expectRefusalLog && dialErr == nil {
		t.Errorf("own-table firewall: the intruder %s could connect to the pending data port %s (the pinhole must be exact)", intruder, target)
	}
	if !expectRefusalLog && dialErr != nil && !isTimeout(dialErr) {
		t.Errorf("own-table firewall: the intruder's connection to %s failed with %v; want its SYN dropped by the kernel (a timeout), not refused",
			target, dialErr)
	}

	// Go ahead: the client connects and downloads. ftpgate may look at the queued intruder only
	// now, when it accepts the data connection for the transfer.
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatalf("signal the client: %v", err)
	}
	res, err := next()
	if err != nil || res.Error != "" {
		t.Fatalf("client transfer after the intrusion attempt failed: %+v %v\ntranscript:\n%s", res, err, transcript.String())
	}
	if expectRefusalLog {
		from := conn.LocalAddr().String()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		rec, err := g.logs.Wait(wctx, "data connection refused", func(r logRecord) bool { return r.str("from") == from })
		wcancel()
		if err != nil {
			t.Errorf(`ftpgate did not log "data connection refused" with from=%s: %v\nsuch records:\n%s`, from, err, excerpt(g.logs.Records("data connection refused"), 5))
		} else {
			if lvl := rec.str("level"); lvl != "warn" {
				t.Errorf(`"data connection refused" logged at %q, want warn: %s`, lvl, rec)
			}
			if got, want := strings.Trim(rec.str("want"), "[]"), ep.clientAddr(); got != want {
				t.Errorf(`"data connection refused" want=%q, expected the client address %s: %s`, rec.str("want"), want, rec)
			}
		}
	}
	if err := client.Wait(15 * time.Second); err != nil {
		t.Errorf("client: %v\ntranscript:\n%s", err, transcript.String())
	}
	if !expectRefusalLog {
		// The client's transfer is done, so ftpgate has accepted whatever was queued.
		if lines := g.logs.Find(intruder); lines != "" {
			t.Errorf("own-table firewall: ftpgate logged something about the intruder %s, whose SYN the kernel should have dropped:\n%s",
				intruder, lines)
		}
	}
	if err := sameFile(local, bigFile); err != nil {
		t.Errorf("client download after the intrusion attempt: %v", err)
	}
	if conn != nil {
		conn.Close()
	}
	if n := <-stolen; n != 0 {
		t.Errorf("the intruder %s received %d bytes of the client's data", intruder, n)
	}
}

// syncBuffer is a bytes.Buffer that exec's copying goroutine may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBounceRefused: PORT and EPRT naming a third host (or a privileged port on the client)
// are answered with a 5xx reply and logged, and no connection reaches the named host.
func TestBounceRefused(t *testing.T) {
	requirePrereqs(t, needVsftpd, needPython, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	g := startGate(t, tp, gateConfig{Firewall: "none"})

	// A listener on the third host records any connection ftpgate might make to it.
	const bouncePort = 51201
	bounced := make(chan string, 16)
	for _, addr := range []string{hostPort(hostV4, bouncePort), hostPort(hostV6, bouncePort)} {
		l, err := listenIn(tp.Host, "tcp", addr)
		if err != nil {
			t.Fatalf("bounce target listener: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				select {
				case bounced <- fmt.Sprintf("%s -> %s", c.RemoteAddr(), c.LocalAddr()):
				default:
				}
				c.Close()
			}
		}()
	}

	cases := []struct {
		name     string
		ep       endpoint
		command  string
		thirdSet bool // names a third address (logged as a bounce attempt)
	}{
		{"PORT-third-host", gateV4(), fmt.Sprintf("PORT 198,18,2,2,%d,%d", bouncePort>>8, bouncePort&0xff), true},
		{"EPRT-third-host-ipv4", gateV4(), fmt.Sprintf("EPRT |1|%s|%d|", hostV4, bouncePort), true},
		{"EPRT-third-host-ipv6", gateV6(), fmt.Sprintf("EPRT |2|%s|%d|", hostV6, bouncePort), true},
		{"EPRT-server", gateV4(), fmt.Sprintf("EPRT |1|%s|%d|", serverV4, bouncePort), true},
		{"PORT-client-privileged-port", gateV4(), "PORT 198,18,0,2,0,25", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			before := len(g.logs.Records("bounce attempt refused"))
			out, transcript, err := runIn(ctx, tp.Client, python3Bin, ftplibArgs(tc.ep, modePORT, "raw", tc.command, "LIST")...)
			if err != nil {
				t.Fatalf("ftpclient.py raw: %v\n%s\n%s", err, out, transcript)
			}
			var replies []ftplibResult
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var r ftplibResult
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("client output %q: %v", line, err)
				}
				replies = append(replies, r)
			}
			if len(replies) != 2 {
				t.Fatalf("want replies to %s and LIST, got %+v\ntranscript:\n%s", tc.command, replies, transcript)
			}
			if r := replies[0].Reply; !strings.HasPrefix(r, "5") {
				t.Errorf("%s: reply %q, want 5xx", tc.command, r)
			}
			if r := replies[1].Reply; strings.HasPrefix(r, "1") || strings.HasPrefix(r, "2") {
				t.Errorf("LIST after a refused %s: reply %q, want no transfer", tc.command, r)
			}
			if tc.thirdSet {
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				defer wcancel()
				for len(g.logs.Records("bounce attempt refused")) <= before {
					select {
					case <-wctx.Done():
						t.Fatalf(`ftpgate did not log "bounce attempt refused" for %s\nlog tail:\n%s`, tc.command, g.logs.Tail(10))
					case <-time.After(50 * time.Millisecond):
					}
				}
				recs := g.logs.Records("bounce attempt refused")
				if lvl := recs[len(recs)-1].str("level"); lvl != "warn" {
					t.Errorf(`"bounce attempt refused" at %q, want warn: %s`, lvl, recs[len(recs)-1])
				}
			}
		})
	}
	// A bounce connection, had one been made, would have been attempted by now; drain what came.
	select {
	case c := <-bounced:
		t.Errorf("a connection reached the bounce target: %s", c)
	case <-time.After(300 * time.Millisecond):
	}
}
