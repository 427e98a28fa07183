package nat

import "net/netip"

// AddrSource yields an address of the asked family (v6: IPv6, otherwise
// IPv4), perhaps one that changes: an interface's current address
// (Follower), a host name resolved again from time to time. False means it
// has none of that family now.
type AddrSource interface {
	Addr(v6 bool) (netip.Addr, bool)
}

var _ AddrSource = StaticAddr{}

// StaticAddr is an AddrSource of one fixed address.
type StaticAddr netip.Addr

// Addr returns the address, unmapped, if it is of the asked family.
func (a StaticAddr) Addr(v6 bool) (netip.Addr, bool) {
	ad := netip.Addr(a).Unmap()
	return ad, ad.IsValid() && ad.Is6() == v6
}

// String returns the address.
func (a StaticAddr) String() string { return netip.Addr(a).String() }
