package nat

import (
	"net/netip"
	"testing"
)

func TestFollowerChoosesAddress(t *testing.T) {
	a := func(s string, flags, scope int) ifAddr {
		return ifAddr{addr: netip.MustParseAddr(s), flags: flags, scope: scope}
	}
	const link, site = 253, 200
	type step struct {
		addr ifAddr
		add  bool
	}
	tests := []struct {
		name         string
		steps        []step
		want4, want6 string // "" means none
	}{
		{name: "nothing"},
		{name: "one of each", steps: []step{{a("198.18.0.1", 0, 0), true}, {a("fd00:18::1", 0, 0), true}},
			want4: "198.18.0.1", want6: "fd00:18::1"},
		{name: "first seen stays", steps: []step{{a("198.18.0.1", 0, 0), true}, {a("198.18.2.9", 0, 0), true}},
			want4: "198.18.0.1"},
		{name: "delete moves on", steps: []step{{a("198.18.0.1", 0, 0), true}, {a("198.18.2.9", 0, 0), true},
			{a("198.18.0.1", 0, 0), false}}, want4: "198.18.2.9"},
		{name: "primary before secondary", steps: []step{{a("198.18.0.9", ifaFSecondary, 0), true}, {a("198.18.2.1", 0, 0), true}},
			want4: "198.18.2.1"},
		{name: "tentative skipped", steps: []step{{a("fd00:18::1", ifaFTentative, 0), true}}},
		{name: "tentative then ready", steps: []step{{a("fd00:18::1", ifaFTentative, 0), true}, {a("fd00:18::1", 0, 0), true}},
			want6: "fd00:18::1"},
		{name: "deprecated skipped", steps: []step{{a("fd00:18::1", ifaFDeprecated, 0), true}, {a("fd00:18::2", 0, 0), true}},
			want6: "fd00:18::2"},
		{name: "dad failed skipped", steps: []step{{a("fd00:18::1", ifaFDadFailed|ifaFTentative, 0), true}}},
		{name: "global before link-local", steps: []step{{a("fe80::1", 0, link), true}, {a("fd00:18::1", 0, 0), true}},
			want6: "fd00:18::1"},
		{name: "link-local as last resort", steps: []step{{a("fe80::1", 0, link), true}}, want6: "fe80::1%fg0"},
		{name: "site before link", steps: []step{{a("fe80::1", 0, link), true}, {a("fec0::1", 0, site), true}}, want6: "fec0::1"},
		{name: "temporary after stable", steps: []step{{a("fd00:18::aa", ifaFSecondary, 0), true}, {a("fd00:18::1", 0, 0), true}},
			want6: "fd00:18::1"},
		{name: "host scope skipped", steps: []step{{a("127.0.0.1", 0, scopeHost), true}}},
		{name: "flags update keeps place", steps: []step{{a("198.18.0.1", 0, 0), true}, {a("198.18.2.9", 0, 0), true},
			{a("198.18.0.1", ifaFDeprecated, 0), true}, {a("198.18.0.1", 0, 0), true}}, want4: "198.18.0.1"},
		{name: "mapped address unmapped", steps: []step{{a("::ffff:198.18.0.1", 0, 0), true}}, want4: "198.18.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFollower("fg0", nil)
			f.reset(7, nil)
			for _, s := range tc.steps {
				f.update(7, s.addr, s.add)
				f.update(8, a("198.18.99.1", 0, 0), true) // another interface: ignored
			}
			for _, c := range []struct {
				v6   bool
				want string
			}{{false, tc.want4}, {true, tc.want6}} {
				got, ok := f.Addr(c.v6)
				if ok != (c.want != "") || ok && got.String() != c.want {
					t.Errorf("Addr(v6=%v) = %v, %v; want %q", c.v6, got, ok, c.want)
				}
			}
		})
	}
}

func TestFollowerReset(t *testing.T) {
	f := newFollower("fg0", nil)
	f.reset(3, []ifAddr{{addr: netip.MustParseAddr("198.18.0.1")}})
	if got, ok := f.Addr(false); !ok || got != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("after reset: Addr = %v, %v", got, ok)
	}
	f.reset(0, nil) // the interface is gone
	if got, ok := f.Addr(false); ok {
		t.Errorf("interface gone: Addr = %v, want none", got)
	}
	f.update(3, ifAddr{addr: netip.MustParseAddr("198.18.0.2")}, true)
	if got, ok := f.Addr(false); ok {
		t.Errorf("update of the old index after the interface went: Addr = %v, want none", got)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close without a subscription: %v", err)
	}
}
