package nat

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deployDir holds the example rulesets for external-set mode.
const deployDir = "../deploy/firewall"

// TestDeployRulesets checks every example ruleset: nft accepts it in check
// mode, it loads (twice: the files are re-loadable), and ftpgate in
// external-set mode accepts its sets and opens pinholes in them.
func TestDeployRulesets(t *testing.T) {
	tables := map[string]string{ // file -> table that holds the pinhole sets
		"edge-gateway.nft": "edge",
		"dmz-host.nft":     "dmz",
	}
	files, err := filepath.Glob(filepath.Join(deployDir, "*.nft"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.nft files in %s", deployDir)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			table, ok := tables[name]
			if !ok {
				t.Fatalf("%s is not in this test's table list: add it with the name of its table", file)
			}
			ns := newNS(t)
			path, err := filepath.Abs(file)
			if err != nil {
				t.Fatal(err)
			}
			ns.nft(t, "-c", "-f", path)
			if out := ns.nft(t, "list", "ruleset"); out != "" {
				t.Fatalf("nft -c changed the ruleset:\n%s", out)
			}
			ns.nft(t, "-f", path)
			ns.nft(t, "-f", path)
			before := ns.nft(t, "list", "ruleset")
			if !strings.Contains(before, "policy drop") {
				t.Errorf("%s is not default-drop:\n%s", name, before)
			}

			fw := newFirewall(t, ns, Config{Mode: ModeExternalSet, Table: table})
			ctx := context.Background()
			pinholes := []struct {
				p    Pinhole
				set  string
				elem string
			}{
				{Pinhole{Peer: netip.MustParseAddr("198.18.10.5"), Local: netip.MustParseAddrPort("198.18.10.1:40001")},
					DefaultSet4, "198.18.10.5 . 198.18.10.1 . 40001"},
				{Pinhole{Peer: netip.MustParseAddr("fd00:10::5"), Local: netip.MustParseAddrPort("[fd00:10::1]:40001")},
					DefaultSet6, "fd00:10::5 . fd00:10::1 . 40001"},
			}
			for _, ph := range pinholes {
				if err := fw.Open(ctx, ph.p, 5*time.Second); err != nil {
					t.Fatalf("Open %s: %v", ph.p, err)
				}
				if got := ns.setElements(t, "inet", table, ph.set); len(got) != 1 || got[0].Key != ph.elem || got[0].Timeout != 5 {
					t.Errorf("%s after Open = %+v, want %q with timeout 5s", ph.set, got, ph.elem)
				}
				if err := fw.Close(ctx, ph.p); err != nil {
					t.Fatalf("Close %s: %v", ph.p, err)
				}
			}
			if after := ns.nft(t, "list", "ruleset"); after != before {
				t.Errorf("ruleset changed:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

func TestExternalSetFull(t *testing.T) {
	ns := newNS(t)
	loadRuleset(t, ns, `table inet filter {
	set ftpgate_pinholes4 { type ipv4_addr . ipv4_addr . inet_service; size 2; flags timeout; }
	set ftpgate_pinholes6 { type ipv6_addr . ipv6_addr . inet_service; size 2; flags timeout; }
}
`)
	fw := newFirewall(t, ns, Config{Mode: ModeExternalSet, Table: "filter"})
	ctx := context.Background()
	var err error
	for i := range 3 {
		p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(40001+i))}
		if err = fw.Open(ctx, p, 0); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), `raise the "size"`) {
		t.Fatalf("third Open into a set of size 2 = %v, want a set-full error", err)
	}
	t.Logf("error: %v", err)
}
