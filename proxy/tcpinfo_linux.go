package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// bytesReceived is the kernel's count of bytes received on c (TCP_INFO
// tcpi_bytes_received): progress of a spliced transfer without touching the
// data path.
func bytesReceived(c *net.TCPConn) (int64, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || serr != nil {
		return 0, false
	}
	return int64(info.Bytes_received), true
}
