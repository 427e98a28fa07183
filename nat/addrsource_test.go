package nat

import (
	"net/netip"
	"testing"
)

func TestStaticAddr(t *testing.T) {
	tests := []struct {
		name   string
		addr   netip.Addr
		v6     bool
		want   netip.Addr
		wantOK bool
	}{
		{name: "IPv4 asked IPv4", addr: netip.MustParseAddr("198.18.0.1"), want: netip.MustParseAddr("198.18.0.1"), wantOK: true},
		{name: "IPv4 asked IPv6", addr: netip.MustParseAddr("198.18.0.1"), v6: true, want: netip.MustParseAddr("198.18.0.1")},
		{name: "IPv6 asked IPv6", addr: netip.MustParseAddr("fd00::1"), v6: true, want: netip.MustParseAddr("fd00::1"), wantOK: true},
		{name: "IPv6 asked IPv4", addr: netip.MustParseAddr("fd00::1"), want: netip.MustParseAddr("fd00::1")},
		{name: "mapped IPv4 is IPv4", addr: netip.MustParseAddr("::ffff:198.18.0.1"), want: netip.MustParseAddr("198.18.0.1"), wantOK: true},
		{name: "mapped IPv4 is not IPv6", addr: netip.MustParseAddr("::ffff:198.18.0.1"), v6: true, want: netip.MustParseAddr("198.18.0.1")},
		{name: "zero asked IPv4", addr: netip.Addr{}},
		{name: "zero asked IPv6", addr: netip.Addr{}, v6: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var src AddrSource = StaticAddr(tc.addr)
			got, ok := src.Addr(tc.v6)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("StaticAddr(%v).Addr(v6=%v) = %v, %v; want %v, %v", tc.addr, tc.v6, got, ok, tc.want, tc.wantOK)
			}
		})
	}
	if got, want := StaticAddr(netip.MustParseAddr("fd00::1")).String(), "fd00::1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
