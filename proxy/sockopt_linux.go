package proxy

import (
	"net"

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
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
	}); err != nil {
		return err
	}
	return serr
}
