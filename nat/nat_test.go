package nat

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr string
	}{
		{in: "40000-40100", want: PortRange{40000, 40100}},
		{in: "40000", want: PortRange{40000, 40000}},
		{in: "1-65535", want: PortRange{1, 65535}},
		{in: "65535", want: PortRange{65535, 65535}},
		{in: "", wantErr: "not a number"},
		{in: "-", wantErr: "not a number"},
		{in: "0", wantErr: "port 0"},
		{in: "0-10", wantErr: "port 0"},
		{in: "40100-40000", wantErr: "greater than"},
		{in: "65536", wantErr: "1 to 65535"},
		{in: "+80", wantErr: "not a number"},
		{in: "80-+90", wantErr: "not a number"},
		{in: " 80", wantErr: "not a number"},
		{in: "80-90-100", wantErr: "1 to 65535"},
		{in: "4e4", wantErr: "1 to 65535"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortRange(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePortRange(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePortRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if back, err := ParsePortRange(got.String()); err != nil || back != got {
				t.Errorf("round trip through %q = %v, %v", got.String(), back, err)
			}
		})
	}
}

func TestPortRangeContains(t *testing.T) {
	r := PortRange{40000, 40100}
	for _, tc := range []struct {
		port uint16
		want bool
	}{{39999, false}, {40000, true}, {40050, true}, {40100, true}, {40101, false}} {
		if got := r.Contains(tc.port); got != tc.want {
			t.Errorf("%v.Contains(%d) = %v, want %v", r, tc.port, got, tc.want)
		}
	}
}

func TestPinholeString(t *testing.T) {
	tests := []struct {
		name string
		p    Pinhole
		want string
	}{
		{"ipv4", Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.1.1:40001")}, "198.18.0.2 -> 198.18.1.1:40001"},
		{"ipv6", Pinhole{Peer: netip.MustParseAddr("fd00::2"), Local: netip.MustParseAddrPort("[fd00::1]:40001")}, "fd00::2 -> [fd00::1]:40001"},
		{"zero", Pinhole{}, "invalid IP -> invalid AddrPort"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPinholeNormalize(t *testing.T) {
	tests := []struct {
		name     string
		peer     string
		local    string
		wantElem string
		wantErr  string
	}{
		{name: "ipv4", peer: "198.18.0.2", local: "198.18.1.1:40001", wantElem: "198.18.0.2 . 198.18.1.1 . 40001"},
		{name: "ipv6", peer: "fd00::2", local: "[fd00::1]:40001", wantElem: "fd00::2 . fd00::1 . 40001"},
		{name: "mapped peer", peer: "::ffff:198.18.0.2", local: "198.18.1.1:40001", wantElem: "198.18.0.2 . 198.18.1.1 . 40001"},
		{name: "mapped both", peer: "::ffff:198.18.0.2", local: "[::ffff:198.18.1.1]:21", wantElem: "198.18.0.2 . 198.18.1.1 . 21"},
		{name: "zones dropped", peer: "fe80::2%eth0", local: "[fe80::1%eth1]:40001", wantElem: "fe80::2 . fe80::1 . 40001"},
		{name: "mixed families", peer: "fd00::2", local: "198.18.1.1:40001", wantErr: "different families"},
		{name: "mixed families mapped", peer: "198.18.0.2", local: "[fd00::1]:40001", wantErr: "different families"},
		{name: "no peer", local: "198.18.1.1:40001", wantErr: "no peer address"},
		{name: "no local", peer: "198.18.0.2", wantErr: "no local address"},
		{name: "peer unspecified", peer: "0.0.0.0", local: "198.18.1.1:40001", wantErr: "peer address is unspecified"},
		{name: "local unspecified", peer: "fd00::2", local: "[::]:40001", wantErr: "local address is unspecified"},
		{name: "port 0", peer: "198.18.0.2", local: "198.18.1.1:0", wantErr: "local port is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Pinhole
			if tc.peer != "" {
				p.Peer = netip.MustParseAddr(tc.peer)
			}
			if tc.local != "" {
				p.Local = netip.MustParseAddrPort(tc.local)
			}
			n, err := p.normalize()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("normalize(%s) = %v, %v; want error containing %q", p, n, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("normalize(%s): %v", p, err)
			}
			if got := n.element(); got != tc.wantElem {
				t.Errorf("element = %q, want %q", got, tc.wantElem)
			}
			if again, err := n.normalize(); err != nil || again != n {
				t.Errorf("normalize is not idempotent: %v, %v", again, err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero value", cfg: Config{}},
		{name: "own-table with ports", cfg: Config{Mode: ModeOwnTable, TTL: 5 * time.Second, DataPorts: []PortRange{{40000, 40100}, {41000, 41000}}}},
		{name: "none", cfg: Config{Mode: ModeNone, DataPorts: []PortRange{{40000, 40100}}}},
		{name: "external-set minimal", cfg: Config{Mode: ModeExternalSet, Table: "filter"}},
		{name: "external-set full", cfg: Config{Mode: ModeExternalSet, Table: "filter", Family: "inet", Set4: "a4", Set6: "a6"}},
		{name: "external-set ip", cfg: Config{Mode: ModeExternalSet, Table: "filter", Family: "ip", Set4: "a4"}},
		{name: "external-set ip6", cfg: Config{Mode: ModeExternalSet, Table: "filter", Family: "ip6"}},
		{name: "max ttl", cfg: Config{TTL: MaxTTL}},

		{name: "unknown mode", cfg: Config{Mode: "iptables"}, wantErr: `firewall mode "iptables"`},
		{name: "negative ttl", cfg: Config{TTL: -time.Second}, wantErr: "pinhole ttl"},
		{name: "huge ttl", cfg: Config{TTL: MaxTTL + time.Second}, wantErr: "pinhole ttl"},
		{name: "sub-millisecond ttl", cfg: Config{TTL: time.Microsecond}, wantErr: "at least 1ms"},
		{name: "port 0", cfg: Config{DataPorts: []PortRange{{0, 10}}}, wantErr: "data port range 1 (0-10)"},
		{name: "reversed range", cfg: Config{DataPorts: []PortRange{{40000, 40100}, {20, 10}}}, wantErr: "data port range 2 (20-10)"},
		{name: "negative netns", cfg: Config{NetNS: -1}, wantErr: "netns fd -1"},
		{name: "table in own-table mode", cfg: Config{Table: "filter"}, wantErr: `firewall table "filter": only used with mode external-set, not own-table`},
		{name: "set in none mode", cfg: Config{Mode: ModeNone, Set4: "x"}, wantErr: "only used with mode external-set, not none"},
		{name: "external-set without table", cfg: Config{Mode: ModeExternalSet}, wantErr: "needs the name of the table"},
		{name: "external-set bad family", cfg: Config{Mode: ModeExternalSet, Table: "f", Family: "bridge"}, wantErr: `family "bridge"`},
		{name: "external-set same sets", cfg: Config{Mode: ModeExternalSet, Table: "f", Set4: "s", Set6: "s"}, wantErr: "both \"s\""},
		{name: "external-set set6 with family ip", cfg: Config{Mode: ModeExternalSet, Table: "f", Family: "ip", Set6: "s6"}, wantErr: "family ip holds no IPv6"},
		{name: "external-set set4 with family ip6", cfg: Config{Mode: ModeExternalSet, Table: "f", Family: "ip6", Set4: "s4"}, wantErr: "family ip6 holds no IPv4"},
		{name: "name with space", cfg: Config{Mode: ModeExternalSet, Table: "my table"}, wantErr: `character ' '`},
		{name: "name with quote", cfg: Config{Mode: ModeExternalSet, Table: "f", Set4: `a"b`}, wantErr: "not allowed"},
		{name: "name too long", cfg: Config{Mode: ModeExternalSet, Table: strings.Repeat("t", 256)}, wantErr: "longer than 255"},
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

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want Config
	}{
		{"zero", Config{}, Config{Mode: ModeOwnTable, TTL: DefaultTTL}},
		{"external inet", Config{Mode: ModeExternalSet, Table: "filter"},
			Config{Mode: ModeExternalSet, TTL: DefaultTTL, Table: "filter", Family: "inet", Set4: DefaultSet4, Set6: DefaultSet6}},
		{"external ip", Config{Mode: ModeExternalSet, Table: "filter", Family: "ip", TTL: time.Second},
			Config{Mode: ModeExternalSet, TTL: time.Second, Table: "filter", Family: "ip", Set4: DefaultSet4}},
		{"external ip6", Config{Mode: ModeExternalSet, Table: "filter", Family: "ip6", Set6: "x"},
			Config{Mode: ModeExternalSet, TTL: DefaultTTL, Table: "filter", Family: "ip6", Set6: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.withDefaults()
			if got.Mode != tc.want.Mode || got.TTL != tc.want.TTL || got.Table != tc.want.Table ||
				got.Family != tc.want.Family || got.Set4 != tc.want.Set4 || got.Set6 != tc.want.Set6 {
				t.Errorf("withDefaults() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		ttl     time.Duration
		want    time.Duration
		wantErr bool
	}{
		{0, 7 * time.Second, false},
		{-time.Second, 7 * time.Second, false},
		{time.Nanosecond, time.Millisecond, false},
		{1500 * time.Millisecond, 1500 * time.Millisecond, false},
		{MaxTTL, MaxTTL, false},
		{MaxTTL + 1, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			got, err := lifetime(tc.ttl, 7*time.Second)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("lifetime(%s) = %s, %v; want %s (error %v)", tc.ttl, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestModeNone(t *testing.T) {
	ctx := context.Background()
	fw, err := New(ctx, Config{Mode: ModeNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.1.1:40001")}
	bad := Pinhole{Peer: netip.MustParseAddr("fd00::2"), Local: netip.MustParseAddrPort("198.18.1.1:40001")}
	tests := []struct {
		name    string
		op      func() error
		wantErr string
	}{
		{"open", func() error { return fw.Open(ctx, good, 0) }, ""},
		{"close", func() error { return fw.Close(ctx, good) }, ""},
		{"open bad pinhole", func() error { return fw.Open(ctx, bad, 0) }, "different families"},
		{"close bad pinhole", func() error { return fw.Close(ctx, bad) }, "different families"},
		{"open bad ttl", func() error { return fw.Open(ctx, good, 2*MaxTTL) }, "longer than"},
		{"shutdown", func() error { return fw.Shutdown(ctx) }, ""},
		{"open after shutdown", func() error { return fw.Open(ctx, good, 0) }, "shut down"},
		{"close after shutdown", func() error { return fw.Close(ctx, good) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("%v, want nil", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("%v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	if err := Cleanup(ctx, Config{Mode: ModeNone}); err != nil {
		t.Errorf("Cleanup in mode none: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{Mode: "bogus"}, nil); err == nil || !strings.Contains(err.Error(), "firewall config") {
		t.Errorf("New with a bad mode = %v", err)
	}
	if err := Cleanup(ctx, Config{Mode: "bogus"}); err == nil || !strings.Contains(err.Error(), "firewall config") {
		t.Errorf("Cleanup with a bad mode = %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := New(canceled, Config{Mode: ModeNone}, nil); err == nil {
		t.Error("New with a canceled context succeeded")
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"40000-40100", "40000", "1-65535", "", "-", "0", "40100-40000", "65536", "+80", " 80", "80-90-100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.Lo == 0 || r.Lo > r.Hi {
			t.Fatalf("ParsePortRange(%q) = %v, an invalid range", s, r)
		}
		if back, err := ParsePortRange(r.String()); err != nil || back != r {
			t.Fatalf("ParsePortRange(%q) = %v, but %q parses as %v, %v", s, r, r.String(), back, err)
		}
	})
}
