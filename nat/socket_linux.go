package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control applies o to the socket c before it binds or connects.
func (o SocketOptions) Control(network, address string, c syscall.RawConn) error {
	if !o.Transparent && o.Mark == 0 {
		return nil
	}
	var err error
	cerr := c.Control(func(fd uintptr) { err = o.apply(int(fd)) })
	if cerr != nil {
		return fmt.Errorf("socket options for %s %s: %w", network, address, cerr)
	}
	if err != nil {
		return fmt.Errorf("socket options for %s %s: %w", network, address, err)
	}
	return nil
}

func (o SocketOptions) apply(fd int) error {
	if o.Transparent {
		domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return fmt.Errorf("read socket family: %w", err)
		}
		level, opt, name := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
		if domain == unix.AF_INET6 {
			level, opt, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return fmt.Errorf("set %s: %w", name, explainSockopt(err))
		}
	}
	if o.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); err != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", o.Mark, explainSockopt(err))
		}
	}
	return nil
}

func explainSockopt(err error) error {
	if errors.Is(err, unix.EPERM) {
		return &hintError{err: err, hint: "needs CAP_NET_ADMIN (or CAP_NET_RAW for transparent sockets): run ftpgate " +
			"as root or grant the capability"}
	}
	return err
}

// OriginalDst returns the destination a redirected connection was
// addressed to before nftables' redirect (SO_ORIGINAL_DST, or
// IP6T_SO_ORIGINAL_DST for IPv6), with IPv4-mapped addresses unmapped. It
// needs no privilege. For a connection that was not redirected it returns
// the connection's own local address (conntrack's original tuple): a
// caller must treat a result that is one of this host's addresses and
// its own listener port as "no original destination", or it would
// connect to itself. Without conntrack for the connection it fails, and
// so it does for a Multipath TCP socket (EOPNOTSUPP). Its errors do not
// repeat "original destination", which callers say.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	remote, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, errors.New("connection has no TCP peer address")
	}
	v4 := remote.AddrPort().Addr().Unmap().Is4()
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var gerr error
	cerr := rc.Control(func(fd uintptr) { dst, gerr = originalDst(int(fd), v4) })
	if cerr != nil {
		return netip.AddrPort{}, cerr
	}
	if gerr != nil {
		return netip.AddrPort{}, gerr
	}
	return dst, nil
}

// soOriginalDst is SO_ORIGINAL_DST (SOL_IP) and IP6T_SO_ORIGINAL_DST
// (SOL_IPV6): both 80.
const soOriginalDst = 80

// originalDst reads the original destination of the socket fd. The
// kernel writes a struct sockaddr_in (16 bytes) or sockaddr_in6 (28
// bytes); x/sys/unix has no getsockopt for those, so it borrows getters
// of structs at least as large: IPv6Mreq (20 bytes) and IPv6MTUInfo
// (whose first member is a RawSockaddrInet6).
func originalDst(fd int, v4 bool) (netip.AddrPort, error) {
	if v4 {
		m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, soOriginalDst)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
		}
		// struct sockaddr_in: family (host order), port (network order),
		// address.
		b := m.Multiaddr
		if fam := binary.NativeEndian.Uint16(b[0:2]); fam != unix.AF_INET {
			return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: address family %d, want AF_INET", fam)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	}
	info, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("IP6T_SO_ORIGINAL_DST: %w", err)
	}
	sa := info.Addr
	if sa.Family != unix.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("IP6T_SO_ORIGINAL_DST: address family %d, want AF_INET6", sa.Family)
	}
	// The port field holds network byte order.
	port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), nil
}
