//go:build linux

package proxy

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBindAddressOnly: a dial from a chosen local address through bindAddressOnly runs the
// wrapped Control first, and its socket has IP_BIND_ADDRESS_NO_PORT set (connect, not bind,
// picks its port); an error of the wrapped Control fails the dial.
func TestBindAddressOnly(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	called := 0
	inner := func(string, string, syscall.RawConn) error { called++; return nil }
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Control: bindAddressOnly(inner)}
	c, err := d.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if called != 1 {
		t.Errorf("the wrapped Control ran %d times, want once", called)
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT)
	}); err != nil || gerr != nil {
		t.Fatalf("read IP_BIND_ADDRESS_NO_PORT: %v %v", err, gerr)
	}
	if v != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d on the dialled socket, want 1", v)
	}

	refuse := errors.New("refused by the wrapped Control")
	d.Control = bindAddressOnly(func(string, string, syscall.RawConn) error { return refuse })
	if c, err := d.Dial("tcp4", l.Addr().String()); !errors.Is(err, refuse) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial with a failing wrapped Control: %v, want %v", err, refuse)
	}
	d.Control = bindAddressOnly(nil) // no hook configured
	c2, err := d.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatalf("dial with no wrapped Control: %v", err)
	}
	c2.Close()
}
