//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"
)

// The benchmark runs its Go clients and the minimal idle upstream as subcommands of its own
// binary inside a namespace (ip netns exec ... bench loadgen|idle-server), so every socket they
// open belongs to that namespace.

// loadResult is what "loadgen" prints as one JSON line.
type loadResult struct {
	Seconds float64  `json:"seconds"`
	OK      int      `json:"ok"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors,omitempty"` // the first few
}

// loadgenMain runs N sessions at once, each: connect, log in, LIST, RETR one file (size
// checked), QUIT. With --idle it logs N sessions in, prints "ready OK FAILED", holds them
// until stdin closes, and quits them.
func loadgenMain(args []string) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	addr := fs.String("addr", "", "FTP server host:port")
	sessions := fs.Int("sessions", 100, "concurrent sessions")
	retr := fs.String("retr", oneName, "file each session downloads")
	size := fs.Int64("size", oneSize, "its size")
	idle := fs.Bool("idle", false, "log in and hold the sessions until stdin closes")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound of the whole run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *sessions < 1 || *sessions > 20000 {
		fmt.Fprintln(os.Stderr, "loadgen: --addr and 1 <= --sessions <= 20000 required")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *idle {
		return idleSessions(ctx, *addr, *sessions)
	}
	var res loadResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	handshakes := make(chan struct{}, maxHandshakes)
	start := time.Now()
	for range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := oneSession(ctx, *addr, *retr, *size, handshakes)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if len(res.Errors) < 5 {
					res.Errors = append(res.Errors, err.Error())
				}
				return
			}
			res.OK++
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// dialFTP connects and logs in, holding a slot of handshakes from connect to banner.
func dialFTP(ctx context.Context, addr string, handshakes chan struct{}) (*ftp.ServerConn, error) {
	handshakes <- struct{}{}
	c, err := ftp.Dial(addr, ftp.DialWithContext(ctx), ftp.DialWithTimeout(60*time.Second), ftp.DialWithDisabledUTF8(true))
	<-handshakes
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := c.Login(e2eUser, e2ePassword); err != nil {
		_ = c.Quit()
		return nil, fmt.Errorf("login: %w", err)
	}
	return c, nil
}

// maxHandshakes bounds the sessions between connect and banner at once: vsftpd listens with
// a backlog of 32 (compiled in), and connections beyond it wait for SYN retransmits (1, 3, 7,
// 15 s) or are reset, which would measure vsftpd's accept queue instead of the path.
const maxHandshakes = 24

func oneSession(ctx context.Context, addr, file string, size int64, handshakes chan struct{}) error {
	c, err := dialFTP(ctx, addr, handshakes)
	if err != nil {
		return err
	}
	defer c.Quit()
	if _, err := c.List("/"); err != nil {
		return fmt.Errorf("LIST: %w", err)
	}
	r, err := c.Retr(file)
	if err != nil {
		return fmt.Errorf("RETR %s: %w", file, err)
	}
	n, err := io.Copy(io.Discard, r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("RETR %s: %w", file, err)
	}
	if n != size {
		return fmt.Errorf("RETR %s: %d bytes, want %d", file, n, size)
	}
	return nil
}

// idleSessions logs n sessions in, at most 200 logins at a time.
func idleSessions(ctx context.Context, addr string, n int) int {
	conns := make([]*ftp.ServerConn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	logins := make(chan struct{}, 200)
	handshakes := make(chan struct{}, maxHandshakes)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		logins <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-logins }()
			c, err := dialFTP(ctx, addr, handshakes)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	f := failed.Load()
	fmt.Printf("ready %d %d\n", int64(n)-f, f)
	if e, ok := firstErr.Load().(string); ok {
		fmt.Fprintln(os.Stderr, "loadgen: first failure:", e)
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	for _, c := range conns {
		if c != nil {
			_ = c.Quit()
		}
	}
	return 0
}

// idleServerMain is a minimal FTP upstream for the idle-sessions test: it accepts any login
// and answers every other command with 502, holding thousands of sessions at a goroutine each
// (vsftpd would fork two processes per session).
func idleServerMain(args []string) int {
	fs := flag.NewFlagSet("idle-server", flag.ContinueOnError)
	addr := fs.String("addr", "", "listen host:port")
	life := fs.Duration("timeout", 10*time.Minute, "how long it serves")
	if err := fs.Parse(args); err != nil || *addr == "" {
		fmt.Fprintln(os.Stderr, "idle-server: --addr required")
		return 2
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle-server:", err)
		return 1
	}
	time.AfterFunc(*life, func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			return 0
		}
		go serveIdle(c)
	}
}

func serveIdle(c net.Conn) {
	defer c.Close()
	w := bufio.NewWriter(c)
	reply := func(s string) bool {
		_, _ = w.WriteString(s + "\r\n")
		return w.Flush() == nil
	}
	if !reply("220 bench idle upstream") {
		return
	}
	r := bufio.NewReaderSize(io.LimitReader(c, 1<<20), 512)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " ")
		var ok bool
		switch verb {
		case "USER":
			ok = reply("331 password please")
		case "PASS":
			ok = reply("230 logged in")
		case "TYPE", "NOOP":
			ok = reply("200 ok")
		case "QUIT":
			reply("221 bye")
			return
		default:
			ok = reply("502 not implemented")
		}
		if !ok {
			return
		}
	}
}

// stepNames are the steps of one passive download that "steps" times.
// The first, one control exchange on its own, is what every relayed command and reply costs.
var stepNames = []string{stepExchange, "EPSV→229", "data connect", "RETR→150", "150→data end", "data end→226", "transfer total"}

// stepExchange is the step of a command and its reply with no data connection.
const stepExchange = "TYPE I→200"

// stepStats maps a step to its median, 90th percentile and maximum in microseconds.
type stepStats map[string][3]int64

// stepsMain times the protocol steps of n small downloads in one session (no strace, no
// profiler attached) and prints the median, 90th percentile and maximum of each step in microseconds:
// TYPE I→200, EPSV→229, the data connect, RETR→150, 150→end of data, end of data→226, and the
// whole from EPSV on, as one JSON stepStats line. With --control-only it times TYPE I alone.
func stepsMain(args []string) int {
	fs := flag.NewFlagSet("steps", flag.ContinueOnError)
	addr := fs.String("addr", "", "FTP server host:port")
	file := fs.String("file", smallDir+"/f0001.dat", "file to download")
	n := fs.Int("n", 200, "transfers")
	controlOnly := fs.Bool("control-only", false, "time only the control exchange (TYPE I), no transfers")
	if err := fs.Parse(args); err != nil || *addr == "" || *n < 1 || *n > 100000 {
		fmt.Fprintln(os.Stderr, "steps: --addr and 1 <= --n <= 100000 required")
		return 2
	}
	if err := steps(*addr, *file, *n, *controlOnly); err != nil {
		fmt.Fprintln(os.Stderr, "steps:", err)
		return 1
	}
	return 0
}

func steps(addr, file string, n int, controlOnly bool) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	tp := textproto.NewConn(c)
	expect := func(code int, format string, args ...any) (string, error) {
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		_, msg, err := tp.ReadResponse(code)
		return msg, err
	}
	if _, err := expect(220, ""); err != nil {
		return err
	}
	if _, err := expect(331, "USER %s", e2eUser); err != nil {
		return err
	}
	if _, err := expect(230, "PASS %s", e2ePassword); err != nil {
		return err
	}
	if _, err := expect(200, "TYPE I"); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	names := stepNames
	if controlOnly {
		names = []string{stepExchange}
	}
	samples := make([][]time.Duration, len(names))
	for range n {
		tt := time.Now()
		if _, err := expect(200, "TYPE I"); err != nil {
			return err
		}
		t0 := time.Now()
		if controlOnly {
			samples[0] = append(samples[0], t0.Sub(tt))
			continue
		}
		msg, err := expect(229, "EPSV")
		if err != nil {
			return err
		}
		t1 := time.Now()
		_, portStr, ok := strings.Cut(msg, "|||")
		port, _, _ := strings.Cut(portStr, "|")
		if !ok {
			return fmt.Errorf("EPSV reply %q", msg)
		}
		d, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 10*time.Second)
		if err != nil {
			return err
		}
		t2 := time.Now()
		if _, err := expect(150, "RETR %s", file); err != nil {
			d.Close()
			return err
		}
		t3 := time.Now()
		_, err = io.Copy(io.Discard, d)
		d.Close()
		if err != nil {
			return err
		}
		t4 := time.Now()
		if _, err := expect(226, ""); err != nil {
			return err
		}
		t5 := time.Now()
		for i, s := range []time.Duration{t0.Sub(tt), t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t5.Sub(t4), t5.Sub(t0)} {
			samples[i] = append(samples[i], s)
		}
	}
	_, _ = expect(221, "QUIT")
	out := stepStats{}
	for i, name := range names {
		s := samples[i]
		slices.Sort(s)
		out[name] = [3]int64{s[len(s)/2].Microseconds(), s[len(s)*9/10].Microseconds(), s[len(s)-1].Microseconds()}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
