package nat

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// operatorRuleset is an operator's default-drop table that declares the
// pinhole sets and accepts what matches them.
const operatorRuleset = `
table inet filter {
	set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }
	set ftpgate_pinholes6 { type ipv6_addr . ipv6_addr . inet_service; flags timeout; }
	set admins { type ipv4_addr; elements = { 198.18.0.250 } }
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iifname "lo" accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
		ip saddr . ip daddr . tcp dport @ftpgate_pinholes4 accept
		ip6 saddr . ip6 daddr . tcp dport @ftpgate_pinholes6 accept
		ip saddr @admins tcp dport 22 accept
		tcp dport 21 accept
	}
}
`

// loadRuleset loads an nft script inside ns.
func loadRuleset(t *testing.T, ns *testNS, ruleset string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.nft(t, "-f", path)
}

var elementsRE = regexp.MustCompile(`\n\s*elements = \{[^}]*\}`)

// rulesetWithoutElements is "nft list ruleset" with the pinhole sets'
// element lines removed: what must not change while ftpgate runs.
func rulesetWithoutElements(t *testing.T, ns *testNS) string {
	t.Helper()
	out := ns.nft(t, "list", "ruleset")
	var b strings.Builder
	for _, block := range strings.SplitAfter(out, "\n\n") {
		if strings.Contains(block, "set ftpgate_pinholes") {
			block = elementsRE.ReplaceAllString(block, "")
		}
		b.WriteString(block)
	}
	return b.String()
}

func TestExternalSetOpenClose(t *testing.T) {
	l := newLab(t)
	loadRuleset(t, l.gw, operatorRuleset)
	before := l.gw.nft(t, "list", "ruleset")
	cfg := Config{Mode: ModeExternalSet, Table: "filter", DataPorts: []PortRange{{40000, 40100}}, NetNS: l.gw.fd()}
	fw, err := New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = fw.Shutdown(context.Background()) })
	if got := l.gw.nft(t, "list", "ruleset"); got != before {
		t.Fatalf("New changed the ruleset:\n%s\nwas:\n%s", got, before)
	}
	serve(t, l.gw, "198.18.0.1:40001")
	serve(t, l.gw, "[fd00:18::1]:40001")

	ctx := context.Background()
	tests := []struct {
		name     string
		p        Pinhole
		set      string
		elem     string
		from, to string
	}{
		{"ipv4", Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001")},
			"ftpgate_pinholes4", "198.18.0.2 . 198.18.0.1 . 40001", "198.18.0.2", "198.18.0.1:40001"},
		{"ipv6", Pinhole{Peer: netip.MustParseAddr("fd00:18::2"), Local: netip.MustParseAddrPort("[fd00:18::1]:40001")},
			"ftpgate_pinholes6", "fd00:18::2 . fd00:18::1 . 40001", "fd00:18::2", "[fd00:18::1]:40001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := dial(l.client, tc.from, tc.to, refusedWithin); err == nil {
				c.Close()
				t.Fatal("the operator's default drop let a connection through without a pinhole")
			}
			if err := fw.Open(ctx, tc.p, 20*time.Second); err != nil {
				t.Fatalf("Open: %v", err)
			}
			got := l.gw.setElements(t, "inet", "filter", tc.set)
			if len(got) != 1 || got[0].Key != tc.elem || got[0].Timeout != 20 {
				t.Fatalf("after Open: %s = %+v, want one element %q with timeout 20s", tc.set, got, tc.elem)
			}
			if rest := rulesetWithoutElements(t, l.gw); rest != before {
				t.Errorf("Open changed more than the set's elements:\n%s\nwas:\n%s", rest, before)
			}
			c, err := dial(l.client, tc.from, tc.to, 2*time.Second)
			if err != nil {
				t.Fatalf("with pinhole in the operator's set: %v", err)
			}
			c.Close()
			if err := fw.Close(ctx, tc.p); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := l.gw.nft(t, "list", "ruleset"); got != before {
				t.Errorf("after Close the ruleset differs:\n%s\nwas:\n%s", got, before)
			}
		})
	}

	// Shutdown removes what we added and nothing else.
	if err := fw.Open(ctx, tests[0].p, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := fw.Open(ctx, tests[1].p, time.Minute); err != nil {
		t.Fatal(err)
	}
	l.gw.nft(t, "add", "element", "inet", "filter", "ftpgate_pinholes4", "{ 198.18.0.7 . 198.18.0.1 . 40009 timeout 1m }")
	if err := fw.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got := l.gw.setElements(t, "inet", "filter", "ftpgate_pinholes4")
	if len(got) != 1 || got[0].Key != "198.18.0.7 . 198.18.0.1 . 40009" {
		t.Errorf("after Shutdown: ftpgate_pinholes4 = %+v, want only the element someone else added", got)
	}
	if got := l.gw.setElements(t, "inet", "filter", "ftpgate_pinholes6"); len(got) != 0 {
		t.Errorf("after Shutdown: ftpgate_pinholes6 = %+v, want empty", got)
	}
	if strings.Contains(l.gw.nft(t, "list", "tables"), "ftpgate") {
		t.Error("external-set mode created a table of its own")
	}
}

func TestExternalSetChecks(t *testing.T) {
	const good4 = "set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }\n"
	const good6 = "set ftpgate_pinholes6 { type ipv6_addr . ipv6_addr . inet_service; flags timeout; }\n"
	table := func(family, name string, body ...string) string {
		return "table " + family + " " + name + " {\n" + strings.Join(body, "") + "}\n"
	}
	tests := []struct {
		name    string
		ruleset string
		cfg     Config
		want    []string // substrings of the error; none means New succeeds
	}{
		{name: "both sets", ruleset: table("inet", "filter", good4, good6)},
		{name: "typeof declarations", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { typeof ip saddr . ip daddr . tcp dport; flags timeout; }\n",
			"set ftpgate_pinholes6 { typeof ip6 saddr . ip6 daddr . tcp dport; flags timeout; }\n")},
		{name: "sets with a default timeout and size", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; timeout 30s; size 1024; }\n", good6)},
		{name: "custom names", cfg: Config{Set4: "ftp4", Set6: "ftp6"}, ruleset: table("inet", "fw",
			"set ftp4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }\n",
			"set ftp6 { type ipv6_addr . ipv6_addr . inet_service; flags timeout; }\n")},
		{name: "family ip needs only set4", cfg: Config{Family: "ip"}, ruleset: table("ip", "filter", good4)},
		{name: "family ip6 needs only set6", cfg: Config{Family: "ip6"}, ruleset: table("ip6", "filter", good6)},

		{name: "no table", ruleset: table("inet", "other", good4, good6),
			want: []string{"table inet filter does not exist", "deploy/firewall"}},
		{name: "table of another family", ruleset: table("ip", "filter", good4, good6),
			want: []string{"table inet filter does not exist"}},
		{name: "missing set6", ruleset: table("inet", "filter", good4),
			want: []string{"set inet filter ftpgate_pinholes6 does not exist",
				`"set ftpgate_pinholes6 { type ipv6_addr . ipv6_addr . inet_service; flags timeout; }"`}},
		{name: "no timeout flag", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; }\n", good6),
			want: []string{`set inet filter ftpgate_pinholes4 has no "flags timeout"`,
				`declare it as "set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }"`}},
		{name: "wrong key type", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv4_addr . inet_service; flags timeout; }\n", good6),
			want: []string{`set inet filter ftpgate_pinholes4 has key type "ipv4_addr . inet_service" (8 bytes), not "ipv4_addr . ipv4_addr . inet_service"`}},
		{name: "swapped sets", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv6_addr . ipv6_addr . inet_service; flags timeout; }\n",
			"set ftpgate_pinholes6 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }\n"),
			want: []string{"set inet filter ftpgate_pinholes4 has key type", "set inet filter ftpgate_pinholes6 has key type"}},
		{name: "interval flag", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags interval, timeout; }\n", good6),
			want: []string{`ftpgate_pinholes4 has "flags interval"`}},
		{name: "a map", ruleset: table("inet", "filter",
			"map ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service : verdict; flags timeout; }\n", good6),
			want: []string{"ftpgate_pinholes4 is a map, not a set"}},
		{name: "two problems in one set", ruleset: table("inet", "filter",
			"set ftpgate_pinholes4 { type ipv4_addr . inet_service; }\n", good6),
			want: []string{`has key type "ipv4_addr . inet_service"`, `and has no "flags timeout"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			loadRuleset(t, ns, tc.ruleset)
			before := ns.nft(t, "list", "ruleset")
			cfg := tc.cfg
			cfg.Mode = ModeExternalSet
			if cfg.Table == "" {
				cfg.Table = "filter"
				if tc.cfg.Set4 == "ftp4" {
					cfg.Table = "fw"
				}
			}
			cfg.NetNS = ns.fd()
			fw, err := New(context.Background(), cfg, testLogger(t))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := fw.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					fw.Shutdown(context.Background())
					t.Fatalf("New succeeded, want an error mentioning %q", tc.want)
				}
				t.Logf("error: %v", err)
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not contain %q:\n%v", w, err)
					}
				}
			}
			if after := ns.nft(t, "list", "ruleset"); after != before {
				t.Errorf("the ruleset changed:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

func TestExternalSetFamilyIP(t *testing.T) {
	ns := newNS(t)
	loadRuleset(t, ns, "table ip filter {\n set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }\n}\n")
	fw := newFirewall(t, ns, Config{Mode: ModeExternalSet, Table: "filter", Family: "ip"})
	ctx := context.Background()
	if err := fw.Open(ctx, pinholeCases[0].p, 0); err != nil {
		t.Fatal(err)
	}
	if got := ns.setElements(t, "ip", "filter", "ftpgate_pinholes4"); len(got) != 1 || got[0].Key != pinholeCases[0].elem {
		t.Errorf("ftpgate_pinholes4 = %+v, want %q", got, pinholeCases[0].elem)
	}
	err := fw.Open(ctx, pinholeCases[1].p, 0)
	if err == nil || !strings.Contains(err.Error(), "no IPv6 pinhole set") {
		t.Errorf("IPv6 Open with a family ip table = %v, want a no-IPv6-set error", err)
	}
}

func TestExternalSetGoneWhileRunning(t *testing.T) {
	ns := newNS(t)
	loadRuleset(t, ns, operatorRuleset)
	fw := newFirewall(t, ns, Config{Mode: ModeExternalSet, Table: "filter"})
	ns.nft(t, "delete", "table", "inet", "filter") // an operator reloads without the sets
	err := fw.Open(context.Background(), pinholeCases[0].p, 0)
	if err == nil || !strings.Contains(err.Error(), "set inet filter ftpgate_pinholes4 is gone") {
		t.Fatalf("Open after the table vanished = %v, want an error naming the missing set", err)
	}
	loadRuleset(t, ns, operatorRuleset) // restored: ftpgate continues
	if err := fw.Open(context.Background(), pinholeCases[0].p, 0); err != nil {
		t.Fatalf("Open after the ruleset came back: %v", err)
	}
}

func TestCleanupExternalSets(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		ruleset string
		wantErr string
		left4   int // elements left in ftpgate_pinholes4
	}{
		{name: "pinhole sets emptied", ruleset: operatorRuleset},
		{name: "no table", ruleset: "table inet other {}\n"},
		{name: "wrong set left alone", ruleset: strings.Replace(operatorRuleset,
			"set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; flags timeout; }",
			"set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; }", 1),
			wantErr: "not emptying set inet filter ftpgate_pinholes4, which is no pinhole set", left4: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			loadRuleset(t, ns, tc.ruleset)
			hasFilter := strings.Contains(tc.ruleset, "table inet filter")
			if hasFilter {
				timeout := " timeout 1m"
				if tc.left4 > 0 {
					timeout = ""
				}
				ns.nft(t, "add", "element", "inet", "filter", "ftpgate_pinholes4", "{ 198.18.0.2 . 198.18.0.1 . 40001"+timeout+" }")
				ns.nft(t, "add", "element", "inet", "filter", "ftpgate_pinholes6", "{ fd00::2 . fd00::1 . 40001 timeout 1m }")
			}
			before := rulesetWithoutElements(t, ns)
			err := Cleanup(ctx, Config{Mode: ModeExternalSet, Table: "filter", NetNS: ns.fd()})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Cleanup = %v, want error containing %q", err, tc.wantErr)
			}
			if after := rulesetWithoutElements(t, ns); after != before {
				t.Errorf("Cleanup changed more than elements:\n%s\nwas:\n%s", after, before)
			}
			if !hasFilter {
				return
			}
			if got := ns.setElements(t, "inet", "filter", "ftpgate_pinholes4"); len(got) != tc.left4 {
				t.Errorf("ftpgate_pinholes4 after Cleanup = %+v, want %d elements", got, tc.left4)
			}
			if got := ns.setElements(t, "inet", "filter", "ftpgate_pinholes6"); len(got) != 0 {
				t.Errorf("ftpgate_pinholes6 after Cleanup = %+v, want empty", got)
			}
			if got := ns.nft(t, "list", "set", "inet", "filter", "admins"); !strings.Contains(got, "198.18.0.250") {
				t.Errorf("Cleanup touched the operator's other set:\n%s", got)
			}
		})
	}
}
