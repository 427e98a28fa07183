//go:build !linux

package nat

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Control applies o to the socket c; only Linux has these options.
func (o SocketOptions) Control(network, address string, c syscall.RawConn) error {
	if !o.Transparent && o.Mark == 0 {
		return nil
	}
	return errors.New("socket options: transparent sockets and SO_MARK need Linux")
}

// OriginalDst needs Linux (SO_ORIGINAL_DST).
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("original destination: needs Linux (SO_ORIGINAL_DST)")
}
