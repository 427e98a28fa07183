package nat

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestInterceptValidate(t *testing.T) {
	pfx := netip.MustParsePrefix
	redirect := func(i Intercept) Config {
		i.Mode, i.ListenPort = InterceptRedirect, 2100
		return Config{Intercept: i}
	}
	tproxy := func(i Intercept) Config {
		i.Mode, i.ListenPort = InterceptTProxy, 2100
		return Config{Intercept: i}
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "none", cfg: Config{}},
		{name: "redirect minimal", cfg: redirect(Intercept{})},
		{name: "tproxy minimal", cfg: tproxy(Intercept{})},
		{name: "redirect full", cfg: redirect(Intercept{Ports: []uint16{21, 2121}, Interfaces: []string{"lan0", "vlan.10"},
			Sources: []netip.Prefix{pfx("198.18.0.0/24"), pfx("fd00::/8")}, Exclude: []netip.Prefix{pfx("198.18.1.3/32")},
			Output: true, LoopMark: 0x10})},
		{name: "tproxy full", cfg: tproxy(Intercept{TProxyMark: 0x20, RouteTable: 100, LoopMark: 0x10})},
		{name: "external-set", cfg: Config{Mode: ModeExternalSet, Table: "filter",
			Intercept: Intercept{Mode: InterceptRedirect, ListenPort: 2100}}},

		{name: "unknown mode", cfg: Config{Intercept: Intercept{Mode: "masquerade", ListenPort: 1}}, wantErr: `intercept mode "masquerade"`},
		{name: "settings without mode", cfg: Config{Intercept: Intercept{Ports: []uint16{21}}}, wantErr: "without an intercept mode"},
		{name: "output without mode", cfg: Config{Intercept: Intercept{Output: true}}, wantErr: "without an intercept mode"},
		{name: "firewall mode none", cfg: Config{Mode: ModeNone, Intercept: Intercept{Mode: InterceptRedirect, ListenPort: 2100}},
			wantErr: "install the redirect rules yourself"},
		{name: "no listen port", cfg: Config{Intercept: Intercept{Mode: InterceptTProxy}}, wantErr: "needs the listen port"},
		{name: "port 0", cfg: redirect(Intercept{Ports: []uint16{21, 0}}), wantErr: "intercept port 2: port 0"},
		{name: "port twice", cfg: redirect(Intercept{Ports: []uint16{21, 990, 21}}), wantErr: "port 21 is listed twice"},
		{name: "empty interface", cfg: redirect(Intercept{Interfaces: []string{""}}), wantErr: "empty interface name"},
		{name: "long interface", cfg: redirect(Intercept{Interfaces: []string{"abcdefghijklmnop"}}), wantErr: "longer than 15"},
		{name: "interface wildcard", cfg: redirect(Intercept{Interfaces: []string{"eth*"}}), wantErr: "wildcards are not supported"},
		{name: "interface with slash", cfg: redirect(Intercept{Interfaces: []string{"a/b"}}), wantErr: "not allowed"},
		{name: "interface twice", cfg: redirect(Intercept{Interfaces: []string{"lan0", "lan0"}}), wantErr: "listed twice"},
		{name: "invalid source", cfg: redirect(Intercept{Sources: []netip.Prefix{{}}}), wantErr: "intercept source invalid Prefix: not a valid prefix"},
		{name: "mapped source", cfg: redirect(Intercept{Sources: []netip.Prefix{pfx("::ffff:198.18.0.0/120")}}), wantErr: "IPv4 form"},
		{name: "source host bits", cfg: redirect(Intercept{Sources: []netip.Prefix{pfx("198.18.0.1/24")}}), wantErr: "write 198.18.0.0/24"},
		{name: "exclude bad length", cfg: redirect(Intercept{Exclude: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("198.18.0.1"), 33)}}),
			wantErr: "not a valid prefix"},
		{name: "exclude host bits", cfg: redirect(Intercept{Exclude: []netip.Prefix{pfx("fd00::1/64")}}), wantErr: "intercept exclude fd00::1/64 has host bits"},
		{name: "output with tproxy", cfg: tproxy(Intercept{Output: true}), wantErr: "output needs intercept mode redirect"},
		{name: "tproxy mark with redirect", cfg: redirect(Intercept{TProxyMark: 1}), wantErr: "only used with intercept mode tproxy"},
		{name: "route table with redirect", cfg: redirect(Intercept{RouteTable: 100}), wantErr: "only used with intercept mode tproxy"},
		{name: "main table", cfg: tproxy(Intercept{RouteTable: 254}), wantErr: "one of the kernel's"},
		{name: "negative table", cfg: tproxy(Intercept{RouteTable: -1}), wantErr: "want 1 to 4294967295"},
		{name: "same marks", cfg: tproxy(Intercept{LoopMark: 5, TProxyMark: 5}), wantErr: "both 0x5"},
		{name: "same default marks", cfg: tproxy(Intercept{LoopMark: DefaultTProxyMark}), wantErr: "both 0x4655"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestInterceptDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Intercept
		want Intercept
	}{
		{"none stays zero", Intercept{}, Intercept{}},
		{"redirect", Intercept{Mode: InterceptRedirect, ListenPort: 2100},
			Intercept{Mode: InterceptRedirect, ListenPort: 2100, Ports: []uint16{21}, LoopMark: DefaultLoopMark}},
		{"tproxy", Intercept{Mode: InterceptTProxy, ListenPort: 2100},
			Intercept{Mode: InterceptTProxy, ListenPort: 2100, Ports: []uint16{21}, LoopMark: DefaultLoopMark,
				TProxyMark: DefaultTProxyMark, RouteTable: DefaultRouteTable}},
		{"given values stay", Intercept{Mode: InterceptTProxy, ListenPort: 2100, Ports: []uint16{990}, LoopMark: 1, TProxyMark: 2, RouteTable: 3},
			Intercept{Mode: InterceptTProxy, ListenPort: 2100, Ports: []uint16{990}, LoopMark: 1, TProxyMark: 2, RouteTable: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Config{Intercept: tc.in}.withDefaults().Intercept
			if got.Mode != tc.want.Mode || !slices.Equal(got.Ports, tc.want.Ports) || got.LoopMark != tc.want.LoopMark ||
				got.TProxyMark != tc.want.TProxyMark || got.RouteTable != tc.want.RouteTable {
				t.Errorf("withDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMergePrefixes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		v6   bool
		want []string // "first-last"
	}{
		{name: "empty", in: nil},
		{name: "one", in: []string{"198.18.0.0/24"}, want: []string{"198.18.0.0-198.18.0.255"}},
		{name: "host", in: []string{"198.18.1.3/32"}, want: []string{"198.18.1.3-198.18.1.3"}},
		{name: "contained", in: []string{"198.18.0.128/25", "198.18.0.0/24"}, want: []string{"198.18.0.0-198.18.0.255"}},
		{name: "adjacent", in: []string{"198.18.1.0/24", "198.18.0.0/24"}, want: []string{"198.18.0.0-198.18.1.255"}},
		{name: "apart", in: []string{"198.18.9.0/24", "198.18.1.3/32"}, want: []string{"198.18.1.3-198.18.1.3", "198.18.9.0-198.18.9.255"}},
		{name: "other family skipped", in: []string{"fd00::/8", "198.18.0.0/15"}, want: []string{"198.18.0.0-198.19.255.255"}},
		{name: "everything", in: []string{"0.0.0.0/0", "198.18.0.0/15"}, want: []string{"0.0.0.0-255.255.255.255"}},
		{name: "ipv6", in: []string{"fd00:18::/64", "fd00:18::1/128", "fd00:19::/64"}, v6: true,
			want: []string{"fd00:18::-fd00:18::ffff:ffff:ffff:ffff", "fd00:19::-fd00:19::ffff:ffff:ffff:ffff"}},
		{name: "ipv6 top", in: []string{"ffff::/16"}, v6: true, want: []string{"ffff::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, s := range tc.in {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			var got []string
			for _, r := range mergePrefixes(ps, tc.v6) {
				got = append(got, r.first.String()+"-"+r.last.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("mergePrefixes(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestPinholeIntercept(t *testing.T) {
	tests := []struct {
		name    string
		p       Pinhole
		wantStr string // String() of the normalized pinhole
		wantErr string
	}{
		{name: "ipv4", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
			Intercept: netip.MustParseAddrPort("198.18.1.2:40500")},
			wantStr: "198.18.0.2 -> 198.18.0.1:40001 via 198.18.1.2:40500"},
		{name: "mapped", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
			Intercept: netip.MustParseAddrPort("[::ffff:198.18.1.2]:40500")},
			wantStr: "198.18.0.2 -> 198.18.0.1:40001 via 198.18.1.2:40500"},
		{name: "ipv6 zone dropped", p: Pinhole{Peer: netip.MustParseAddr("fe80::2%fg0"), Local: netip.MustParseAddrPort("[fe80::1%fg0]:40001"),
			Intercept: netip.MustParseAddrPort("[fe80::9%fg0]:40500")},
			wantStr: "fe80::2 -> [fe80::1]:40001 via [fe80::9]:40500"},
		{name: "no intercept", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001")},
			wantStr: "198.18.0.2 -> 198.18.0.1:40001"},
		{name: "mixed families", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
			Intercept: netip.MustParseAddrPort("[fd00::2]:40500")}, wantErr: "peer and intercept address are of different families"},
		{name: "unspecified", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
			Intercept: netip.MustParseAddrPort("0.0.0.0:40500")}, wantErr: "intercept address is unspecified"},
		{name: "port 0", p: Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
			Intercept: netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), 0)}, wantErr: "intercept port is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.p.normalize()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("normalize(%s) = %v, %v; want error containing %q", tc.p, n, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("normalize(%s): %v", tc.p, err)
			}
			if got := n.String(); got != tc.wantStr {
				t.Errorf("String() = %q, want %q", got, tc.wantStr)
			}
			if again, err := n.normalize(); err != nil || again != n {
				t.Errorf("normalize is not idempotent: %v, %v", again, err)
			}
		})
	}
}

func TestFakeRecordsIntercept(t *testing.T) {
	f := NewFake()
	ctx := context.Background()
	p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
		Intercept: netip.MustParseAddrPort("[::ffff:198.18.1.2]:40500")}
	plain := ph("198.18.0.2", "198.18.0.1:40002")
	for _, q := range []Pinhole{p, plain} {
		if err := f.Open(ctx, q, 0); err != nil {
			t.Fatal(err)
		}
	}
	wantDump := "198.18.0.2 . 198.18.0.1 . 40001 via 198.18.1.2:40500\n198.18.0.2 . 198.18.0.1 . 40002\n"
	if got := f.Dump(); got != wantDump {
		t.Errorf("Dump:\n%s\nwant:\n%s", got, wantDump)
	}
	if err := f.Close(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantOps := []string{
		"open 198.18.0.2 -> 198.18.0.1:40001 via 198.18.1.2:40500",
		"open 198.18.0.2 -> 198.18.0.1:40002",
		"close 198.18.0.2 -> 198.18.0.1:40001 via 198.18.1.2:40500",
	}
	if got := f.Ops(); !slices.Equal(got, wantOps) {
		t.Errorf("Ops = %q, want %q", got, wantOps)
	}
	bad := p
	bad.Intercept = netip.MustParseAddrPort("[fd00::2]:40500")
	if err := f.Open(ctx, bad, 0); err == nil || !strings.Contains(err.Error(), "different families") {
		t.Errorf("Open with a mixed-family intercept = %v", err)
	}
}
