//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
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
	cmd := nsrun.Command(ctx, tp.Client, python3Bin, ftplibArgs(ep, m, "pending-get", bigFile, local)...)
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
