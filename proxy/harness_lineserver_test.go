package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineServer is a minimal FTP server for the login tests of explicit mode
// and lazy connect: it counts the connections it accepts (a trap: a test
// proves that ftpgate never dialed it) and records every command line
// whole, arguments included. USER gets 331 (230 for "nopass"), PASS 230
// (530 for "bad"), QUIT 221, anything else 200.
type lineServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	lines []string
	wg    sync.WaitGroup
}

func newLineServer(t *testing.T) *lineServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lineServer{ln: ln}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l
}

func (l *lineServer) addr() netip.AddrPort { return l.ln.Addr().(*net.TCPAddr).AddrPort() }

// seen returns the connections accepted and the lines received so far.
func (l *lineServer) seen() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns, append([]string(nil), l.lines...)
}

func (l *lineServer) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		l.conns++
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.Close()
			l.session(c)
		}()
	}
}

func (l *lineServer) session(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	say := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	say("220 line server ready")
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "USER":
			if arg == "nopass" {
				say("230 no password needed")
				continue
			}
			say("331 password please")
		case "PASS":
			if arg == "bad" {
				say("530 login incorrect")
				continue
			}
			say("230 logged in")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("200 ok")
		}
	}
}

// staticResolver resolves names from a table, as /etc/hosts would.
func staticResolver(table map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range table[host] {
			out = append(out, netip.MustParseAddr(a))
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("lookup %s: no such host", host)
		}
		return out, nil
	}
}

// dialGreeted connects to the proxy and reads its greeting, without logging in.
func (h *harness) dialGreeted() *client {
	h.t.Helper()
	cl := h.dialOnly("")
	cl.expect(220)
	return cl
}

// denials returns the DenialEvents observed so far.
func (r *recorder) denials() []DenialEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DenialEvent
	for _, e := range r.events {
		if d, ok := e.(DenialEvent); ok {
			out = append(out, d)
		}
	}
	return out
}
