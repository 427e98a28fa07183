package nat

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// SourceFor returns the kernel's choice of source address toward dst (a
// route lookup, "ip route get"), in the calling thread's network
// namespace. An IPv6 link-local dst needs its zone (the interface); the
// result then carries it too.
func SourceFor(dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	if !dst.IsValid() || dst.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("source address toward %s: not a destination", dst)
	}
	opts := &netlink.RouteGetOptions{Oif: dst.Zone()}
	routes, err := netlink.RouteGetWithOptions(net.IP(dst.WithZone("").AsSlice()), opts)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("source address toward %s: route lookup: %w", dst, err)
	}
	for _, r := range routes {
		if src, ok := netip.AddrFromSlice(r.Src); ok && src.IsValid() && !src.IsUnspecified() {
			src = src.Unmap()
			if src.Is6() && src.IsLinkLocalUnicast() && dst.Zone() != "" {
				src = src.WithZone(dst.Zone())
			}
			return src, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("source address toward %s: the route has no source address", dst)
}

// LocalAddrs returns the addresses of every interface of this host (in the
// calling thread's network namespace), loopback included, unmapped,
// without zones, sorted and without duplicates: for "is this destination
// me?". Tentative IPv6 addresses are included (they are this host's).
func LocalAddrs() ([]netip.Addr, error) {
	list, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("local addresses: %w", err)
	}
	addrs := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			addrs = append(addrs, ip.Unmap())
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), nil
}
