//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
	"github.com/ftpgate/ftpgate/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestColumnForgetsEarlierColumnsConnections reproduces, step by step, why the reverse and
// kernel columns once lost about one passive data connection in 2,000-5,000 (the SYN passed
// ftpgate's pinhole, then vanished; its retransmits after the plan gave up hit the table's
// drop counter), and checks that every column now starts on a gateway without the earlier
// columns' connection tracking.
//
// The redirect column's data connections are client:E -> server:P, diverted to gateway:P, so
// their conntrack entries have the reply tuple gateway:P -> client:E and stay 120 s in
// TIME_WAIT. When the client later picks the same port E for a direct connection to
// gateway:P (a reverse column), the new entry has the same reply tuple; without a nat chain
// to remap it, the kernel drops the SYN when it confirms the entry (insert_failed) for as
// long as the old entry lives, longer than any client waits.
//
// Needs root and FTPGATE_E2E=1.
func TestColumnForgetsEarlierColumnsConnections(t *testing.T) {
	needNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp, err := newTopology(ctx)
	t.Cleanup(func() {
		if err := tp.remove(); err != nil {
			t.Errorf("remove namespaces: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	const dataPort = 40123
	const clientPort = 45678
	nft := func(script string) {
		t.Helper()
		cmd := nsrun.Command(ctx, tp.Gateway, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
	}
	// What ftpgate's own table does in every column: track connections, admit data ports.
	nft("table inet fgbtest { chain input { type filter hook input priority filter; policy accept; " +
		"ct state established,related accept; }; }")
	// The redirect column: the client's data connection to the server is diverted here.
	nft(fmt.Sprintf("table ip fgbtestnat { chain pre { type nat hook prerouting priority dstnat; "+
		"ip saddr %s ip daddr %s tcp dport %d dnat to %s:%d; }; }", clientV4, serverV4, dataPort, gwLANV4, dataPort))

	var ln net.Listener
	if err := inNetns(tp.Gateway, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(gwLANV4, strconv.Itoa(dataPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("data\n"))
				_, _ = io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()

	// dial connects from the client's fixed port, reads the greeting and closes first.
	dial := func(to string, timeout time.Duration) error {
		return inNetns(tp.Client, func() error {
			d := net.Dialer{
				Timeout:   timeout,
				LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientV4), Port: clientPort},
				Control: func(_, _ string, rc syscall.RawConn) error {
					var serr error
					if err := rc.Control(func(fd uintptr) {
						serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					}); err != nil {
						return err
					}
					return serr
				},
			}
			c, err := d.DialContext(ctx, "tcp", to)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			b := make([]byte, 5)
			if _, err := io.ReadFull(c, b); err != nil {
				return fmt.Errorf("read from %s: %w", to, err)
			}
			return nil
		})
	}
	if err := dial(net.JoinHostPort(serverV4, strconv.Itoa(dataPort)), 10*time.Second); err != nil {
		t.Fatalf("diverted connection (the redirect column): %v", err)
	}
	// The redirect column's ftpgate exits; its entry stays.
	nft("delete table ip fgbtestnat")
	entry := fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", gwLANV4, clientV4, dataPort, clientPort)
	if !conntrackHas(t, ctx, tp, entry) {
		t.Fatalf("no conntrack entry with the reply tuple %s after the diverted connection", entry)
	}

	// Without a fresh gateway, the direct connection with the same reply tuple is lost.
	failed0 := insertFailed(t, ctx, tp)
	direct := net.JoinHostPort(gwLANV4, strconv.Itoa(dataPort))
	if err := dial(direct, 3*time.Second); err == nil {
		t.Fatal("the direct connection got through beside the diverted one's entry: the test no longer shows the hazard")
	} else if !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("direct connection failed otherwise than by a lost SYN: %v", err)
	}
	if n := insertFailed(t, ctx, tp); n <= failed0 {
		t.Fatalf("conntrack insert_failed %d -> %d: the SYN was lost elsewhere", failed0, n)
	}

	// A column (here routing, which starts no ftpgate) begins on a fresh gateway.
	e := &env{tp: tp, work: t.TempDir()}
	res := &results{NA: map[string]string{}, Cells: map[string]map[string]*cell{}}
	var got error
	e.withGate(ctx, res, tDrops, column{Name: "routing"}, func(*gate) error {
		got = dial(direct, 20*time.Second)
		return nil
	})
	if got != nil {
		t.Fatalf("direct connection in the next column: %v", got)
	}
	if c := res.Cells[tDrops]["routing"]; c != nil && c.Err != "" {
		t.Fatalf("withGate: %s", c.Err)
	}
}

// needNamespaces is the gate of the benchmark's tests, which build network namespaces.
func needNamespaces(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "the benchmark's namespace tests")
}

// conntrackHas reports whether the gateway's conntrack table lists a TCP entry containing s.
func conntrackHas(t *testing.T, ctx context.Context, tp *topology, s string) bool {
	t.Helper()
	out, err := runIn(ctx, tp.Gateway, "conntrack", "-L", "-p", "tcp")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(out), s)
}

// insertFailed sums conntrack's insert_failed over the gateway's CPUs.
func insertFailed(t *testing.T, ctx context.Context, tp *topology) int {
	t.Helper()
	out, err := runIn(ctx, tp.Gateway, "conntrack", "-S")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "insert_failed="); ok {
			i, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("conntrack -S: %q", f)
			}
			n += i
		}
	}
	return n
}
