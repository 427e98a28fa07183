package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/ftpgate/ftpgate/nat"
)

// relayMain is the bare relay: it accepts on --listen and joins each connection to one it
// dials to --upstream with two io.Copy calls (a splice each way between two TCP sockets), on
// one P as ftpgate's default --procs is on this machine kind. It knows nothing of FTP.
//
// --profile compares ftpgate's control path with it: only the control exchange is timed
// there, as a passive reply names a port it does not serve. With --ports it also forwards
// each of those ports on --listen's host to the same port on --upstream's, the server's
// passive range: an EPSV reply names only a port, which the client then connects to on the
// relay's address. That is the benchmark's "bare Go relay" column, the least any user-space
// relay in Go pays per byte and per connection here.
func relayMain(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to accept on")
	upstream := fs.String("upstream", "", "address to dial for each connection")
	ports := fs.String("ports", "", "also forward this port range (lo-hi) from --listen's host to --upstream's")
	if err := fs.Parse(args); err != nil || *listen == "" || *upstream == "" {
		fmt.Fprintln(os.Stderr, "relay: --listen and --upstream required")
		return 2
	}
	runtime.GOMAXPROCS(1)
	type forward struct{ from, to string }
	var fwds []forward
	if *ports != "" {
		r, err := nat.ParsePortRange(*ports)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay: --ports:", err)
			return 2
		}
		lh, _, err1 := net.SplitHostPort(*listen)
		uh, _, err2 := net.SplitHostPort(*upstream)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, "relay: --listen and --upstream must be host:port")
			return 2
		}
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			ps := strconv.Itoa(p)
			fwds = append(fwds, forward{net.JoinHostPort(lh, ps), net.JoinHostPort(uh, ps)})
		}
	}
	// The control port listens last: once its banner comes through, every data port is up.
	fwds = append(fwds, forward{*listen, *upstream})
	errs := make(chan error, 1)
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // plain TCP, as ftpgate's listeners are
	for _, f := range fwds {
		l, err := lc.Listen(context.Background(), "tcp", f.from)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			return 1
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					errs <- err
					return
				}
				go relayOne(c, f.to)
			}
		}()
	}
	fmt.Fprintln(os.Stderr, "relay:", <-errs)
	return 1
}

// relayOne joins c to a new connection to upstream until either side ends.
func relayOne(c net.Conn, upstream string) {
	defer c.Close()
	s, err := net.Dial("tcp", upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(s, c)
		s.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, s)
	c.(*net.TCPConn).CloseWrite()
	<-done
}
