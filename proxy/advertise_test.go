package proxy

import (
	"net/netip"
	"testing"

	"github.com/ftpgate/ftpgate/nat"
)

func TestAdvertise(t *testing.T) {
	ap := netip.MustParseAddrPort
	pfx := netip.MustParsePrefix
	lb := nat.StaticAddr(netip.MustParseAddr("198.51.100.7"))
	pod := nat.StaticAddr(netip.MustParseAddr("198.18.9.9"))
	v6 := nat.StaticAddr(netip.MustParseAddr("fd00::7"))
	inCluster := AdvertiseRule{Clients: []netip.Prefix{pfx("198.18.0.0/16")}, Addr: pod}
	offset := AdvertiseRule{Clients: []netip.Prefix{pfx("198.19.0.0/16")}, PortOffset: 1000}
	mapped := AdvertiseRule{Clients: []netip.Prefix{pfx("198.19.5.0/24")}, Ports: map[uint16]uint16{40001: 31001}}
	tests := []struct {
		name       string
		def        nat.AddrSource
		rules      []AdvertiseRule
		in         advertiseInput
		want       string
		wantDivert bool
	}{
		{"listener itself", nil, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001")},
			"198.18.1.1:40001", false},
		{"configured address", lb, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001")},
			"198.51.100.7:40001", false},
		{"configured address of the other family is skipped", v6, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001")},
			"198.18.1.1:40001", false},
		{"split horizon: in-cluster client gets the pod address", lb, []AdvertiseRule{inCluster},
			advertiseInput{Client: netip.MustParseAddr("198.18.3.4"), Local: ap("198.18.1.1:40001")},
			"198.18.9.9:40001", false},
		{"split horizon: outside client gets the default", lb, []AdvertiseRule{inCluster},
			advertiseInput{Client: netip.MustParseAddr("203.0.113.9"), Local: ap("198.18.1.1:40001")},
			"198.51.100.7:40001", false},
		{"mapped client (v4-in-v6) matches its rule", lb, []AdvertiseRule{inCluster},
			advertiseInput{Client: netip.MustParseAddr("::ffff:198.18.3.4"), Local: ap("198.18.1.1:40001")},
			"198.18.9.9:40001", false},
		{"rule without address keeps the default, maps the port", lb, []AdvertiseRule{offset},
			advertiseInput{Client: netip.MustParseAddr("198.19.1.1"), Local: ap("198.18.1.1:40001")},
			"198.51.100.7:41001", false},
		{"first matching rule wins", lb, []AdvertiseRule{mapped, offset},
			advertiseInput{Client: netip.MustParseAddr("198.19.5.5"), Local: ap("198.18.1.1:40001")},
			"198.51.100.7:31001", false},
		{"explicit port map falls back to the offset", lb, []AdvertiseRule{{Clients: mapped.Clients, Ports: mapped.Ports, PortOffset: 5}},
			advertiseInput{Client: netip.MustParseAddr("198.19.5.5"), Local: ap("198.18.1.1:40002")},
			"198.51.100.7:40007", false},
		{"transparent divert: the server's address", nil, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001"),
				Server: netip.MustParseAddr("198.18.5.5"), Divert: true},
			"198.18.5.5:40001", true},
		{"transparent divert: a configured address wins and nothing is diverted", lb, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001"),
				Server: netip.MustParseAddr("198.18.5.5"), Divert: true},
			"198.51.100.7:40001", false},
		{"transparent divert: server of the other family is not advertised", nil, nil,
			advertiseInput{Client: netip.MustParseAddr("fd00::2"), Local: ap("[fd00::1]:40001"),
				Server: netip.MustParseAddr("198.18.5.5"), Divert: true},
			"[fd00::1]:40001", false},
		{"transparent divert: no server known", nil, nil,
			advertiseInput{Client: netip.MustParseAddr("198.18.0.2"), Local: ap("198.18.1.1:40001"), Divert: true},
			"198.18.1.1:40001", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, divert := advertise(tc.def, tc.rules, tc.in)
			if got.String() != tc.want || divert != tc.wantDivert {
				t.Fatalf("advertise = %s, divert %v; want %s, divert %v", got, divert, tc.want, tc.wantDivert)
			}
		})
	}
}
