package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// bytesReceived is the kernel's count of bytes received on c (TCP_INFO
// tcpi_bytes_received), and bytesAcked of bytes sent on c that the peer has
// acknowledged (tcpi_bytes_acked): progress of a transfer, spliced or not,
// without touching the data path.
func bytesReceived(c *net.TCPConn) (int64, bool) { return tcpInfo(c, false) }

func bytesAcked(c *net.TCPConn) (int64, bool) { return tcpInfo(c, true) }

func tcpInfo(c *net.TCPConn, acked bool) (int64, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || serr != nil {
		return 0, false
	}
	if acked {
		return int64(info.Bytes_acked), true
	}
	return int64(info.Bytes_received), true
}
