package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// fuzzEnv is one proxy in front of a scripted upstream, kept for a whole
// fuzzing process: each input tells the upstream what to send.
type fuzzEnv struct {
	srv  *Server
	fw   *nat.Fake
	addr string
	next chan []byte // the server bytes of the next session
	stop func()      // ends the proxy and the upstream and waits for them
}

func newFuzzEnv() (*fuzzEnv, error) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &fuzzEnv{fw: nat.NewFake(), next: make(chan []byte, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			script := <-e.next
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write(script)
				io.Copy(io.Discard, c) // until the session closes or the deadline
			}()
		}
	}()
	e.srv, err = New(Config{
		Listen:        []string{"127.0.0.1:0"},
		Upstream:      up.Addr().String(),
		LoginTimeout:  100 * time.Millisecond,
		IdleTimeout:   100 * time.Millisecond,
		DataTimeout:   100 * time.Millisecond,
		ShutdownGrace: 100 * time.Millisecond,
	}, e.fw, zap.NewNop())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.srv.Listen(ctx); err != nil {
		cancel()
		return nil, err
	}
	served := make(chan struct{})
	go func() { e.srv.Serve(ctx); close(served) }()
	e.addr = e.srv.Addrs()[0].String()
	e.stop = func() {
		cancel()
		<-served
		up.Close()
		wg.Wait()
	}
	return e, nil
}

// FuzzSession feeds arbitrary client and server bytes through a real session
// against a scripted upstream and the fake firewall. Whatever comes, the
// session ends within its timeouts, every byte the client gets is a
// well-formed FTP reply, and no pinhole or data listener stays behind.
func FuzzSession(f *testing.F) {
	seeds := [][2]string{
		{"USER u\r\nPASS p\r\nEPSV\r\nRETR f\r\nQUIT\r\n",
			"220 hi\r\n331 pw\r\n230 ok\r\n229 Entering Extended Passive Mode (|||40000|)\r\n150 go\r\n226 done\r\n221 bye\r\n"},
		{"USER u\r\nPASS p\r\nPASV\r\nLIST\r\n",
			"220 hi\r\n331 pw\r\n230 ok\r\n500 no EPSV\r\n227 Entering Passive Mode (127,0,0,1,156,64).\r\n150 go\r\n226 done\r\n"},
		{"USER u\r\nPASS p\r\nPORT 127,0,0,1,200,10\r\nSTOR x\r\n",
			"220 hi\r\n331 pw\r\n230 ok\r\n229 (|||40001|)\r\n150 go\r\n226 done\r\n"},
		{"USER u\r\nP@SW\r\nNOOP\r\n", "220 hi\r\n331 pw\r\n227 Entering Passive Mode (127,0,0,1,1,1).\r\n200 ok\r\n"},
		{"FEAT\r\nAUTH TLS\r\n", "220-multi\r\n line\r\n220 end\r\n211-Features:\r\n EPSV\r\n AUTH TLS\r\n211 End\r\n"},
		{"NOOP\r\n", "SSH-2.0-OpenSSH_9.2\r\n"},
		{"USER u\r\n", "220 hi\r\n200 unasked\r\n331 pw\r\n"},
		{"\xff\xf4\xff\xf2ABOR\r\n", "220 hi\r\n226 ABOR ok\r\n"},
		{"EPRT |2|::1|5000|\r\nEPSV ALL\r\nPASV\r\n", "220 hi\r\n200 ok\r\n"},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	e, err := newFuzzEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(e.stop)
	f.Fuzz(func(t *testing.T, client, server []byte) {
		if len(client) > 8<<10 || len(server) > 8<<10 {
			return // the limits are tested elsewhere; keep each run short
		}
		e.next <- server
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			<-e.next
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(client)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		out, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("the session did not end within its timeouts: %v (got %q)", err, out)
		}
		r := rewrite.NewReader(bytes.NewReader(out), rewrite.Limits{})
		for {
			if _, err := r.ReadReply(); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ftpgate wrote something that is not an FTP reply: %v in %q", err, out)
				}
				break
			}
		}
		for deadline := time.Now().Add(3 * time.Second); e.srv.Stats().Sessions > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("a session is still running: %+v", e.srv.Stats())
			}
		}
		if st := e.srv.Stats(); st.Pinholes != 0 || st.Listeners != 1 {
			t.Fatalf("left behind: %+v", st)
		}
		if d := e.fw.Dump(); d != "" {
			t.Fatalf("pinholes left:\n%s", d)
		}
	})
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
