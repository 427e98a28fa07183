package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
)

// relayMain is the bare relay that --profile compares ftpgate's control path with: it accepts
// on --listen and joins each connection to one it dials to --upstream with two io.Copy calls,
// on one P as ftpgate's default --procs is on this machine kind. It knows nothing of FTP, so
// only the control exchange can be timed through it (a passive reply names a port it does not
// serve): its figure is what any relay in Go pays to read and write each command and reply.
func relayMain(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to accept on")
	upstream := fs.String("upstream", "", "address to dial for each connection")
	if err := fs.Parse(args); err != nil || *listen == "" || *upstream == "" {
		fmt.Fprintln(os.Stderr, "relay: --listen and --upstream required")
		return 2
	}
	runtime.GOMAXPROCS(1)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			return 1
		}
		go relayOne(c, *upstream)
	}
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
