package nat

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

// interceptGoldens are configurations whose table inet ftpgate must read
// as testdata/<name>.golden.
var interceptGoldens = []struct {
	name string
	cfg  Config
}{
	{"intercept-redirect", Config{DataPorts: []PortRange{{40000, 40100}}, Intercept: Intercept{
		Mode: InterceptRedirect, ListenPort: 2100, Ports: []uint16{21, 2121},
		Interfaces: []string{"lan0", "lan1"},
		Sources:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.0.128/25"), netip.MustParsePrefix("fd00:18::/64")},
		Exclude:    []netip.Prefix{netip.MustParsePrefix("198.18.1.3/32"), netip.MustParsePrefix("198.18.9.0/24")},
	}}},
	{"intercept-redirect-output", Config{Intercept: Intercept{
		Mode: InterceptRedirect, ListenPort: 2100, Output: true, Interfaces: []string{"lan0"},
		Exclude: []netip.Prefix{netip.MustParsePrefix("fd00:19::3/128")},
	}}},
	{"intercept-tproxy", Config{DataPorts: []PortRange{{40000, 40100}}, Intercept: Intercept{
		Mode: InterceptTProxy, ListenPort: 2100,
	}}},
}

func TestInterceptTableMatchesGolden(t *testing.T) {
	for _, tc := range interceptGoldens {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			newFirewall(t, ns, tc.cfg)
			got := listOwnTable(t, ns)
			path := filepath.Join("testdata", tc.name+".golden")
			if os.Getenv("FTPGATE_UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("nft list table inet ftpgate:\n%s\nwant (%s):\n%s", got, path, want)
			}
			if !strings.Contains(ns.nft(t, "list", "table", "inet", "ftpgate"), "\tflags owner\n") {
				t.Error("table is not owned")
			}
		})
	}
}

// listenPort is ftpgate's control listener port in the interception tests.
const listenPort = 2100

func TestRedirectCatchesForwardedConnections(t *testing.T) {
	r := newRouter(t)
	newFirewall(t, r.gw, Config{Intercept: Intercept{
		Mode:       InterceptRedirect,
		ListenPort: listenPort,
		Ports:      []uint16{21, 990},
		Interfaces: []string{"fg0"},
		Sources:    []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("fd00:18::2/128")},
		Exclude:    []netip.Prefix{netip.MustParsePrefix("198.18.1.3/32"), netip.MustParsePrefix("fd00:19::3/128")},
	}})
	lineServer(t, listenIn(t, r.gw, fmt.Sprintf(":%d", listenPort), SocketOptions{}), origDst)
	serveWho(t, r.server, "198.18.1.2:21", "198.18.1.3:21", "198.18.1.2:990", "198.18.1.2:2121",
		"[fd00:19::2]:21", "[fd00:19::3]:21", "[fd00:19::2]:2121")
	serveWho(t, r.client, "198.18.0.2:21")
	runProbes(t, []probeCase{
		{name: "ipv4 caught", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:21", want: "gw 198.18.1.2:21"},
		{name: "ipv6 caught", ns: r.client, from: "fd00:18::2", to: "[fd00:19::2]:21", want: "gw [fd00:19::2]:21"},
		{name: "second port caught", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:990", want: "gw 198.18.1.2:990"},
		{name: "port not in Ports", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:2121",
			want: "server 198.18.1.2:2121 from 198.18.0.2"},
		{name: "ipv6 port not in Ports", ns: r.client, from: "fd00:18::2", to: "[fd00:19::2]:2121",
			want: "server [fd00:19::2]:2121 from fd00:18::2"},
		{name: "excluded destination", ns: r.client, from: "198.18.0.2", to: "198.18.1.3:21",
			want: "server 198.18.1.3:21 from 198.18.0.2"},
		{name: "ipv6 excluded destination", ns: r.client, from: "fd00:18::2", to: "[fd00:19::3]:21",
			want: "server [fd00:19::3]:21 from fd00:18::2"},
		{name: "source outside Sources", ns: r.client, from: "198.18.0.3", to: "198.18.1.2:21",
			want: "server 198.18.1.2:21 from 198.18.0.3"},
		{name: "ipv6 source outside Sources", ns: r.client, from: "fd00:18::3", to: "[fd00:19::2]:21",
			want: "server [fd00:19::2]:21 from fd00:18::3"},
		{name: "the gateway itself", ns: r.client, from: "198.18.0.2", to: "198.18.1.1:21", wantErr: "refused"},
		{name: "the gateway itself ipv6", ns: r.client, from: "fd00:18::2", to: "[fd00:19::1]:21", wantErr: "refused"},
		{name: "other incoming interface", ns: r.server, from: "198.18.1.2", to: "198.18.0.2:21",
			want: "server 198.18.0.2:21 from 198.18.1.2"},
		{name: "not redirected: own address", ns: r.client, from: "198.18.0.2", to: fmt.Sprintf("198.18.0.1:%d", listenPort),
			want: fmt.Sprintf("gw 198.18.0.1:%d", listenPort)},
	})
}

func TestTProxyCatchesForwardedConnections(t *testing.T) {
	r := newRouter(t)
	cfg := Config{NetNS: r.gw.fd(), Intercept: Intercept{
		Mode:       InterceptTProxy,
		ListenPort: listenPort,
		Exclude:    []netip.Prefix{netip.MustParsePrefix("198.18.1.3/32"), netip.MustParsePrefix("fd00:19::3/128")},
	}}
	fw, err := New(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	shut := false
	t.Cleanup(func() {
		if !shut {
			_ = fw.Shutdown(t.Context())
		}
	})
	lineServer(t, listenIn(t, r.gw, fmt.Sprintf(":%d", listenPort), SocketOptions{Transparent: true}), tproxyDst)
	serveWho(t, r.server, "198.18.1.2:21", "198.18.1.3:21", "198.18.1.2:2121", "[fd00:19::2]:21")
	runProbes(t, []probeCase{
		{name: "ipv4 caught", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:21", want: "gw 198.18.1.2:21"},
		{name: "ipv6 caught", ns: r.client, from: "fd00:18::2", to: "[fd00:19::2]:21", want: "gw [fd00:19::2]:21"},
		{name: "other source caught", ns: r.client, from: "198.18.0.3", to: "198.18.1.2:21", want: "gw 198.18.1.2:21"},
		{name: "port not in Ports", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:2121",
			want: "server 198.18.1.2:2121 from 198.18.0.2"},
		{name: "excluded destination", ns: r.client, from: "198.18.0.2", to: "198.18.1.3:21",
			want: "server 198.18.1.3:21 from 198.18.0.2"},
		{name: "the gateway itself", ns: r.client, from: "198.18.0.2", to: "198.18.1.1:21", wantErr: "refused"},
	})

	wantRouting := map[string]string{
		"-4 rule show":             "fwmark 0x4655 lookup 2121",
		"-6 rule show":             "fwmark 0x4655 lookup 2121",
		"-4 route show table 2121": "local default dev lo",
		"-6 route show table 2121": "local default dev lo",
	}
	for args, want := range wantRouting {
		if got := r.gw.ipOut(t, strings.Fields(args)...); !strings.Contains(got, want) {
			t.Errorf("while running, ip %s:\n%s\nwant a line with %q", args, got, want)
		}
	}
	shut = true
	if err := fw.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for args, want := range wantRouting {
		if got := r.gw.ipOut(t, strings.Fields(args)...); strings.Contains(got, want) {
			t.Errorf("after Shutdown, ip %s still has %q:\n%s", args, want, got)
		}
	}
	if got := listOwnTable(t, r.gw); got != "" {
		t.Errorf("table inet ftpgate still there after Shutdown:\n%s", got)
	}
}

func TestTProxyPreservesClientAddress(t *testing.T) {
	r := newRouter(t)
	newFirewall(t, r.gw, Config{Intercept: Intercept{Mode: InterceptTProxy, ListenPort: listenPort}})
	serveWho(t, r.server, "198.18.1.2:21", "[fd00:19::2]:21")
	transparent := SocketOptions{Transparent: true}
	runProbes(t, []probeCase{
		{name: "ipv4 from the client's address", ns: r.gw, from: "198.18.0.2", to: "198.18.1.2:21", opts: transparent,
			want: "server 198.18.1.2:21 from 198.18.0.2"},
		{name: "ipv6 from the client's address", ns: r.gw, from: "fd00:18::2", to: "[fd00:19::2]:21", opts: transparent,
			want: "server [fd00:19::2]:21 from fd00:18::2"},
		{name: "ipv4 kernel's choice", ns: r.gw, to: "198.18.1.2:21", want: "server 198.18.1.2:21 from 198.18.1.1"},
		{name: "not transparent", ns: r.gw, from: "198.18.0.2", to: "198.18.1.2:21",
			wantErr: "cannot assign requested address"},
	})
}

func TestRedirectOutput(t *testing.T) {
	r := newRouter(t)
	newFirewall(t, r.gw, Config{Intercept: Intercept{Mode: InterceptRedirect, ListenPort: listenPort, Output: true}})
	lineServer(t, listenIn(t, r.gw, fmt.Sprintf(":%d", listenPort), SocketOptions{}), origDst)
	serveWho(t, r.server, "198.18.1.2:21", "[fd00:19::2]:21")
	loop := SocketOptions{Mark: DefaultLoopMark}
	runProbes(t, []probeCase{
		{name: "own connection caught", ns: r.gw, to: "198.18.1.2:21", want: "gw 198.18.1.2:21"},
		{name: "own ipv6 connection caught", ns: r.gw, to: "[fd00:19::2]:21", want: "gw [fd00:19::2]:21"},
		{name: "loop mark not caught", ns: r.gw, to: "198.18.1.2:21", opts: loop, want: "server 198.18.1.2:21 from 198.18.1.1"},
		{name: "ipv6 loop mark not caught", ns: r.gw, to: "[fd00:19::2]:21", opts: loop,
			want: "server [fd00:19::2]:21 from fd00:19::1"},
		{name: "other mark caught", ns: r.gw, to: "198.18.1.2:21", opts: SocketOptions{Mark: 7}, want: "gw 198.18.1.2:21"},
		{name: "forwarded still caught", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:21", want: "gw 198.18.1.2:21"},
	})
}

// ipOut runs "ip -n <ns> args..." and returns its output.
func (ns *testNS) ipOut(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// divertElements lists the elements of a divert map as nft prints them,
// "198.18.0.2 . 198.18.1.2 . 40500 : 198.18.0.1 . 40001", sorted.
func (ns *testNS) divertElements(t testing.TB, m string) []string {
	t.Helper()
	out := ns.nft(t, "-j", "list", "map", "inet", "ftpgate", m)
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem [][2]json.RawMessage `json:"elem"`
			} `json:"map"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list map %s: %v\n%s", m, err, out)
	}
	var elems []string
	for _, o := range doc.Nftables {
		if o.Map == nil {
			continue
		}
		for _, kv := range o.Map.Elem {
			// Key: {"elem": {"val": {"concat": [...]}, "timeout": s, ...}};
			// value: {"concat": [...]}.
			var key struct {
				Elem struct {
					Val struct {
						Concat []any `json:"concat"`
					} `json:"val"`
					Timeout int `json:"timeout"`
				} `json:"elem"`
			}
			var val struct {
				Concat []any `json:"concat"`
			}
			if err := json.Unmarshal(kv[0], &key); err != nil {
				t.Fatalf("nft -j: map key %s: %v", kv[0], err)
			}
			if err := json.Unmarshal(kv[1], &val); err != nil {
				t.Fatalf("nft -j: map value %s: %v", kv[1], err)
			}
			join := func(xs []any) string {
				parts := make([]string, len(xs))
				for i, x := range xs {
					parts[i] = fmt.Sprint(x)
				}
				return strings.Join(parts, " . ")
			}
			elems = append(elems, fmt.Sprintf("%s : %s timeout %ds", join(key.Elem.Val.Concat), join(val.Concat), key.Elem.Timeout))
		}
	}
	slices.Sort(elems)
	return elems
}

func TestPinholeDiverts(t *testing.T) {
	for _, mode := range []InterceptMode{InterceptRedirect, InterceptTProxy} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRouter(t)
			fw := newFirewall(t, r.gw, Config{DataPorts: []PortRange{{40000, 40100}},
				Intercept: Intercept{Mode: mode, ListenPort: listenPort}})
			// ftpgate's data listeners: one on each side of the gateway (the
			// proxy may choose Local freely among its addresses).
			serveWho(t, r.gw, "198.18.0.1:40001", "[fd00:19::1]:40002")
			// The real server, on the port the client was told.
			serveWho(t, r.server, "198.18.1.2:40500", "[fd00:19::2]:40500")
			ctx := t.Context()
			p4 := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
				Intercept: netip.MustParseAddrPort("198.18.1.2:40500")}
			p6 := Pinhole{Peer: netip.MustParseAddr("fd00:18::2"), Local: netip.MustParseAddrPort("[fd00:19::1]:40002"),
				Intercept: netip.MustParseAddrPort("[fd00:19::2]:40500")}
			for _, p := range []Pinhole{p4, p6} {
				if err := fw.Open(ctx, p, 30*time.Second); err != nil {
					t.Fatalf("Open %s: %v", p, err)
				}
			}
			if got, want := r.gw.divertElements(t, "divert4"), []string{"198.18.0.2 . 198.18.1.2 . 40500 : 198.18.0.1 . 40001 timeout 30s"}; !slices.Equal(got, want) {
				t.Errorf("divert4 = %q, want %q", got, want)
			}
			if got, want := r.gw.divertElements(t, "divert6"), []string{"fd00:18::2 . fd00:19::2 . 40500 : fd00:19::1 . 40002 timeout 30s"}; !slices.Equal(got, want) {
				t.Errorf("divert6 = %q, want %q", got, want)
			}
			if got := r.gw.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 1 || got[0].Key != "198.18.0.2 . 198.18.0.1 . 40001" {
				t.Errorf("pinholes4 = %+v, want the pinhole keyed by the local address", got)
			}
			runProbes(t, []probeCase{
				{name: "diverted", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:40500",
					want: "server 198.18.0.1:40001 from 198.18.0.2"},
				{name: "ipv6 diverted", ns: r.client, from: "fd00:18::2", to: "[fd00:19::2]:40500",
					want: "server [fd00:19::1]:40002 from fd00:18::2"},
				{name: "another client", ns: r.client, from: "198.18.0.3", to: "198.18.1.2:40500",
					want: "server 198.18.1.2:40500 from 198.18.0.3"},
				{name: "ipv6 another client", ns: r.client, from: "fd00:18::3", to: "[fd00:19::2]:40500",
					want: "server [fd00:19::2]:40500 from fd00:18::3"},
				{name: "another server", ns: r.client, from: "198.18.0.2", to: "198.18.1.3:40500", wantErr: "refused"},
				{name: "data port without pinhole", ns: r.client, from: "198.18.0.3", to: "198.18.0.1:40001",
					wantErr: "timeout"},
			})

			for _, p := range []Pinhole{p4, p6} {
				if err := fw.Close(ctx, p); err != nil {
					t.Fatalf("Close %s: %v", p, err)
				}
			}
			for _, m := range []string{"divert4", "divert6"} {
				if got := r.gw.divertElements(t, m); len(got) != 0 {
					t.Errorf("after Close: %s = %q, want empty", m, got)
				}
			}
			runProbes(t, []probeCase{
				{name: "after Close", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:40500",
					want: "server 198.18.1.2:40500 from 198.18.0.2"},
				{name: "ipv6 after Close", ns: r.client, from: "fd00:18::2", to: "[fd00:19::2]:40500",
					want: "server [fd00:19::2]:40500 from fd00:18::2"},
			})

			// The divert expires with the pinhole.
			if err := fw.Open(ctx, p4, time.Second); err != nil {
				t.Fatal(err)
			}
			runProbes(t, []probeCase{{name: "short pinhole", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:40500",
				want: "server 198.18.0.1:40001 from 198.18.0.2"}})
			took, gone := waitFor(3*time.Second, func() bool { return len(r.gw.divertElements(t, "divert4")) == 0 })
			if !gone {
				t.Fatalf("divert element with a 1s timeout still there after %s", took)
			}
			if got := r.gw.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
				t.Errorf("pinhole outlived its divert element: %+v", got)
			}
			runProbes(t, []probeCase{{name: "after expiry", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:40500",
				want: "server 198.18.1.2:40500 from 198.18.0.2"}})
		})
	}
}

func TestPinholeDivertNeedsInterception(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{})
	p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
		Intercept: netip.MustParseAddrPort("198.18.1.2:40500")}
	if err := fw.Open(t.Context(), p, 0); err == nil || !strings.Contains(err.Error(), "diverting needs interception") {
		t.Errorf("Open of a diverting pinhole without interception = %v, want an error", err)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Errorf("the refused pinhole reached pinholes4: %+v", got)
	}
}

func TestPinholeDivertOnOldKernels(t *testing.T) {
	// Without "destroy element" a Close deletes, and a half-expired pair
	// (one element gone) must still close cleanly.
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{Intercept: Intercept{Mode: InterceptRedirect, ListenPort: listenPort}})
	forceDelete(t, fw)
	ctx := t.Context()
	p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
		Intercept: netip.MustParseAddrPort("198.18.1.2:40500")}
	if err := fw.Open(ctx, p, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := fw.Open(ctx, p, time.Minute); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	// Only our own connection may change the owned table: expire the
	// pinhole element by hand through it.
	k := fw.(*kernelFirewall)
	if err := k.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	n, _ := p.normalize()
	err := k.flush(k.conn.SetDeleteElements(k.set4, []nftables.SetElement{{Key: elementKey(n)}}))
	k.release()
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.setElements(t, "inet", "ftpgate", "pinholes4"); len(got) != 0 {
		t.Fatalf("pinholes4 = %+v, want the element gone", got)
	}
	if err := fw.Close(ctx, p); err != nil {
		t.Fatalf("Close with the pinhole element gone: %v", err)
	}
	if got := ns.divertElements(t, "divert4"); len(got) != 0 {
		t.Errorf("divert4 = %q after Close, want empty", got)
	}
	if err := fw.Close(ctx, p); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestExternalSetWithInterception(t *testing.T) {
	r := newRouter(t)
	loadRuleset(t, r.gw, operatorRuleset)
	before := r.gw.nft(t, "list", "table", "inet", "filter")
	cfg := Config{Mode: ModeExternalSet, Table: "filter", NetNS: r.gw.fd(),
		Intercept: Intercept{Mode: InterceptRedirect, ListenPort: listenPort}}
	fw, err := New(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = fw.Shutdown(t.Context()) })
	own := listOwnTable(t, r.gw)
	for _, want := range []string{"map divert4", "map divert6", "chain prerouting", "redirect to :2100"} {
		if !strings.Contains(own, want) {
			t.Errorf("table inet ftpgate lacks %q:\n%s", want, own)
		}
	}
	for _, unwanted := range []string{"pinholes4", "chain input"} {
		if strings.Contains(own, unwanted) {
			t.Errorf("table inet ftpgate has %q, which external-set mode keeps in the operator's table:\n%s", unwanted, own)
		}
	}
	// The operator's input chain admits the control listener and, through
	// its pinhole set, the diverted data connection.
	lineServer(t, listenIn(t, r.gw, fmt.Sprintf(":%d", listenPort), SocketOptions{}), origDst)
	serveWho(t, r.gw, "198.18.0.1:40001")
	serveWho(t, r.server, "198.18.1.2:40500")
	p := Pinhole{Peer: netip.MustParseAddr("198.18.0.2"), Local: netip.MustParseAddrPort("198.18.0.1:40001"),
		Intercept: netip.MustParseAddrPort("198.18.1.2:40500")}
	if err := fw.Open(t.Context(), p, 30*time.Second); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := r.gw.setElements(t, "inet", "filter", "ftpgate_pinholes4"); len(got) != 1 || got[0].Key != "198.18.0.2 . 198.18.0.1 . 40001" {
		t.Errorf("operator's ftpgate_pinholes4 = %+v, want the pinhole", got)
	}
	runProbes(t, []probeCase{
		{name: "control listener not admitted by the operator", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:21", wantErr: "timeout"},
		{name: "diverted data connection", ns: r.client, from: "198.18.0.2", to: "198.18.1.2:40500",
			want: "server 198.18.0.1:40001 from 198.18.0.2"},
	})
	if err := fw.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := listOwnTable(t, r.gw); got != "" {
		t.Errorf("table inet ftpgate still there after Shutdown:\n%s", got)
	}
	if got := r.gw.nft(t, "list", "table", "inet", "filter"); got != before {
		t.Errorf("operator's table after Shutdown:\n%s\nwas:\n%s", got, before)
	}
}

func TestCleanupInterception(t *testing.T) {
	tproxy := Intercept{Mode: InterceptTProxy, ListenPort: listenPort}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"own-table tproxy", Config{Intercept: tproxy}},
		{"external-set tproxy", Config{Mode: ModeExternalSet, Table: "filter", Intercept: tproxy}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNS(t)
			// What a killed ftpgate leaves: an unowned table (as an older
			// ftpgate or a person may) and tproxy's policy routing, twice.
			ns.nft(t, "add", "table", "inet", "ftpgate")
			ns.nft(t, "add", "map", "inet", "ftpgate", "divert4",
				"{ type ipv4_addr . ipv4_addr . inet_service : ipv4_addr . inet_service; flags timeout; }")
			for _, fam := range []string{"-4", "-6"} {
				ns.ip(t, fam, "rule", "add", "fwmark", "0x4655", "lookup", "2121")
				ns.ip(t, fam, "rule", "add", "fwmark", "0x4655", "lookup", "2121")
				ns.ip(t, fam, "rule", "add", "fwmark", "0x9", "lookup", "2121") // not ours: another mark
				ns.ip(t, fam, "route", "add", "local", "default", "dev", "lo", "table", "2121")
			}
			tc.cfg.NetNS = ns.fd()
			if err := Cleanup(t.Context(), tc.cfg); err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if got := listOwnTable(t, ns); got != "" {
				t.Errorf("table inet ftpgate after Cleanup:\n%s", got)
			}
			for _, fam := range []string{"-4", "-6"} {
				rules := ns.ipOut(t, fam, "rule", "show")
				if strings.Contains(rules, "fwmark 0x4655") {
					t.Errorf("ip %s rule after Cleanup still has ftpgate's rule:\n%s", fam, rules)
				}
				if !strings.Contains(rules, "fwmark 0x9 lookup 2121") {
					t.Errorf("ip %s rule after Cleanup lost a rule that is not ftpgate's:\n%s", fam, rules)
				}
				if routes := ns.ipOut(t, fam, "route", "show", "table", "2121"); strings.TrimSpace(routes) != "" {
					t.Errorf("ip %s route show table 2121 after Cleanup:\n%s", fam, routes)
				}
			}
			if err := Cleanup(t.Context(), tc.cfg); err != nil {
				t.Errorf("second Cleanup: %v", err)
			}
		})
	}
}

func TestTProxyToleratesExistingRouting(t *testing.T) {
	ns := newNS(t)
	for _, fam := range []string{"-4", "-6"} {
		ns.ip(t, fam, "rule", "add", "fwmark", "0x4655", "lookup", "2121")
		ns.ip(t, fam, "route", "add", "local", "default", "dev", "lo", "table", "2121")
	}
	fw := newFirewall(t, ns, Config{Intercept: Intercept{Mode: InterceptTProxy, ListenPort: listenPort}})
	for _, fam := range []string{"-4", "-6"} {
		if n := strings.Count(ns.ipOut(t, fam, "rule", "show"), "fwmark 0x4655 lookup 2121"); n != 1 {
			t.Errorf("ip %s rule: %d rules fwmark 0x4655 lookup 2121, want 1 (no duplicate)", fam, n)
		}
	}
	if err := fw.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, fam := range []string{"-4", "-6"} {
		if rules := ns.ipOut(t, fam, "rule", "show"); strings.Contains(rules, "fwmark 0x4655") {
			t.Errorf("ip %s rule after Shutdown:\n%s", fam, rules)
		}
	}
}
