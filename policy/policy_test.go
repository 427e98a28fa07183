package policy

import (
	"net/netip"
	"testing"
)

func TestActiveTarget(t *testing.T) {
	client := netip.MustParseAddr("198.18.0.2")
	tests := []struct {
		name   string
		cfg    Config
		peer   netip.Addr
		target string
		allow  bool
	}{
		{"own address high port", Config{}, client, "198.18.0.2:40000", true},
		{"own address port 1024", Config{}, client, "198.18.0.2:1024", true},
		{"own address port 1023", Config{}, client, "198.18.0.2:1023", false},
		{"own address low port allowed", Config{AllowLowActivePorts: true}, client, "198.18.0.2:20", true},
		{"third host", Config{}, client, "198.18.2.2:40000", false},
		{"v4-mapped target", Config{}, client, "[::ffff:198.18.0.2]:40000", true},
		{"v4-mapped peer", Config{}, netip.MustParseAddr("::ffff:198.18.0.2"), "198.18.0.2:40000", true},
		{"ipv6 own", Config{}, netip.MustParseAddr("fd00::2"), "[fd00::2]:5000", true},
		{"ipv6 other", Config{}, netip.MustParseAddr("fd00::2"), "[fd00::3]:5000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.cfg.ActiveTarget(tt.peer, netip.MustParseAddrPort(tt.target))
			if d.Allow != tt.allow {
				t.Fatalf("ActiveTarget(%s, %s) = %+v, want allow=%v", tt.peer, tt.target, d, tt.allow)
			}
			if !d.Allow && d.Reason == "" {
				t.Fatalf("denial without a reason")
			}
		})
	}
}

func TestDataPeer(t *testing.T) {
	lb := netip.MustParsePrefix("198.18.3.0/24")
	tests := []struct {
		name  string
		cfg   Config
		want  string
		from  string
		allow bool
	}{
		{"same", Config{}, "198.18.0.2", "198.18.0.2", true},
		{"mapped", Config{}, "198.18.0.2", "::ffff:198.18.0.2", true},
		{"other", Config{}, "198.18.0.2", "198.18.2.2", false},
		{"trusted", Config{TrustedDataSources: []netip.Prefix{lb}}, "198.18.0.2", "198.18.3.9", true},
		{"untrusted with list", Config{TrustedDataSources: []netip.Prefix{lb}}, "198.18.0.2", "198.18.4.9", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.cfg.DataPeer(netip.MustParseAddr(tt.want), netip.MustParseAddr(tt.from))
			if d.Allow != tt.allow {
				t.Fatalf("DataPeer(%s, %s) = %+v, want allow=%v", tt.want, tt.from, d, tt.allow)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{TrustedDataSources: []netip.Prefix{{}}}).Validate(); err == nil {
		t.Fatal("invalid prefix accepted")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		dst   string
		allow bool
		rule  string
	}{
		{"no rules", Config{}, "198.18.1.2:21", true, ""},
		{"allowed network", Config{AllowDestinations: pfx("198.18.1.0/24")}, "198.18.1.2:21", true, ""},
		{"outside allowed", Config{AllowDestinations: pfx("198.18.1.0/24")}, "198.18.5.2:21", false, "allow_destinations"},
		{"denied wins", Config{AllowDestinations: pfx("198.18.0.0/15"), DenyDestinations: pfx("198.18.1.2/32")}, "198.18.1.2:21", false, "deny_destinations"},
		{"denied only", Config{DenyDestinations: pfx("198.18.1.0/24")}, "198.18.2.2:21", true, ""},
		{"mapped address", Config{AllowDestinations: pfx("198.18.1.0/24")}, "[::ffff:198.18.1.2]:21", true, ""},
		{"ipv6", Config{AllowDestinations: pfx("fd00:0:0:2::/64")}, "[fd00:0:0:2::2]:21", true, ""},
		{"port allowed", Config{DestinationPorts: []uint16{21, 2121}}, "198.18.1.2:2121", true, ""},
		{"port not allowed", Config{DestinationPorts: []uint16{21}}, "198.18.1.2:22", false, "destination_ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.cfg.Destination(netip.MustParseAddrPort(tt.dst))
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Fatalf("Destination(%s) = %+v, want allow=%v rule=%q", tt.dst, d, tt.allow, tt.rule)
			}
		})
	}
}
