package proxy

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setOOBInline keeps TCP urgent data in the normal stream. Clients send the
// Telnet Synch before ABOR as urgent data (Python's ftplib sends the whole
// ABOR line with MSG_OOB); without this the kernel would pull that byte out of
// the stream and the command line would never end.
func setOOBInline(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return setInt(rc, unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
}

// setInt sets an integer socket option on rc's socket.
func setInt(rc syscall.RawConn, level, opt, v int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}

// bindAddressOnly wraps a dialer's Control (nil: none) for a dial from a
// chosen local address (Dialer.LocalAddr, port 0): the socket is bound to
// the address only, and connect picks the port for the whole 4-tuple
// (IP_BIND_ADDRESS_NO_PORT). Picked at bind time, a port would be held
// against every later bind on that address whatever the destination,
// for as long as the socket lives, TIME_WAIT included: the server leg of
// each upload (which ftpgate closes first) would hold one for a minute,
// and a relay of many small uploads would run out of ports. A kernel
// without the option (before 4.2) binds as before.
func bindAddressOnly(control func(network, address string, c syscall.RawConn) error) func(string, string, syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if control != nil {
			if err := control(network, address, c); err != nil {
				return err
			}
		}
		if err := setInt(c, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			return fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", err)
		}
		return nil
	}
}
