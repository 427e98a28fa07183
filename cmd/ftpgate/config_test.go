package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ftpgate.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileAndFlags(t *testing.T) {
	p := writeConfig(t, `
listen: ["198.18.0.1:21"]
upstream: 198.18.1.2:21
passive_ports: 41000-41009
server_mode: active
firewall:
  mode: none
  ttl: 3s
timeouts:
  data: 7s
`)
	fc, err := newRunFlags().parse([]string{"--config", p, "--server-mode", "client", "--listen", "[fd00::1]:21"})
	if err != nil {
		t.Fatal(err)
	}
	pc, nc, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	if pc.ServerMode != proxy.ServerClient {
		t.Errorf("server mode %q: the flag should override the file", pc.ServerMode)
	}
	if len(pc.Listen) != 1 || pc.Listen[0] != "[fd00::1]:21" {
		t.Errorf("listen %v: the flag should replace the file's list", pc.Listen)
	}
	if pc.Upstream != "198.18.1.2:21" || pc.DataTimeout != 7*time.Second {
		t.Errorf("file settings lost: %+v", pc)
	}
	if pc.PassivePorts != (nat.PortRange{Lo: 41000, Hi: 41009}) || nc.Mode != nat.ModeNone || nc.TTL != 3*time.Second {
		t.Errorf("passive ports %v, firewall %+v", pc.PassivePorts, nc)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, file string
		args       []string
		want       string
	}{
		{"unknown key names the line", "upstream: a:21\nlisen: [\":21\"]\n", nil, "ftpgate.yaml:2: unknown setting lisen"},
		{"wrong type", "upstream: a:21\nlisten: 5\n", nil, "ftpgate.yaml:2: "},
		{"no upstream", "listen: [\":21\"]\n", nil, "no upstream"},
		{"transparent mode with upstream", "upstream: a:21\nmode: redirect\n", nil, "reverse mode"},
		{"bad mode", "mode: sideways\n", nil, "mode"},
		{"bad intercept port", "mode: redirect\nintercept: {ports: \"21,x\"}\n", nil, "port"},
		{"bad intercept source", "mode: redirect\nintercept: {sources: [\"lan\"]}\n", nil, "intercept source"},
		{"transparent listen without port", "mode: tproxy\nlisten: [\"0.0.0.0:0\"]\n", nil, "fixed port"},
		{"preserve address outside tproxy", "mode: redirect\npreserve_client_address: true\n", nil, "tproxy"},
		{"neither upstream nor mode", "passive_ports: 40000-40010\n", nil, "--upstream"},
		{"bad range", "upstream: a:21\npassive_ports: 5-1\n", nil, "passive ports"},
		{"bad server mode", "upstream: a:21\n", []string{"--server-mode", "sideways"}, "server mode"},
		{"bad firewall mode", "upstream: a:21\nfirewall: {mode: sometimes}\n", nil, "firewall"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--config", writeConfig(t, tt.file)}, tt.args...)
			fc, err := newRunFlags().parse(args)
			if err == nil {
				_, _, err = fc.settings()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestDefaultPassivePortsWithOwnTable(t *testing.T) {
	fc, err := newRunFlags().parse([]string{"--upstream", "198.18.1.2:21"})
	if err != nil {
		t.Fatal(err)
	}
	pc, nc, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	if pc.PassivePorts != defaultPassivePorts || len(nc.DataPorts) != 1 || nc.DataPorts[0] != defaultPassivePorts {
		t.Fatalf("passive ports %v, firewall data ports %v: want the default range in both", pc.PassivePorts, nc.DataPorts)
	}
}

func TestAddrSource(t *testing.T) {
	log := zap.NewNop()
	src, stop, err := addrSource(context.Background(), "advertise", "198.18.0.1", log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if a, ok := src.Addr(false); !ok || a != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("static source gave %v %v", a, ok)
	}
	if _, ok := src.Addr(true); ok {
		t.Fatal("an IPv4 source answered for IPv6")
	}
	if _, _, err := addrSource(context.Background(), "advertise", "interface:no-such-if0", log); err == nil ||
		!strings.Contains(err.Error(), "no-such-if0") {
		t.Fatalf("missing interface: error %v", err)
	}
}

func TestTransparentSettings(t *testing.T) {
	fc, err := newRunFlags().parse([]string{"--mode", "redirect", "--intercept-ports", "21,2121",
		"--intercept-sources", "198.18.0.0/24", "--deny-destinations", "198.18.9.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	pc, nc, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	if !pc.DivertData || nc.Intercept.ListenPort != defaultTransparentPort || len(nc.Intercept.Ports) != 2 ||
		len(nc.Intercept.Sources) != 1 || len(pc.Policy.DenyDestinations) != 1 {
		t.Fatalf("proxy %+v\nfirewall %+v", pc, nc)
	}
}

// TestDeployExamples: the example configurations in deploy/config load and
// validate, so they cannot rot.
func TestDeployExamples(t *testing.T) {
	files, err := filepath.Glob("../../deploy/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	k8s, err := filepath.Glob("../../deploy/kubernetes/ftpgate-config/*.yaml")
	if err != nil || len(k8s) == 0 {
		t.Fatalf("no Kubernetes ftpgate configs found: %v", err)
	}
	files = append(files, k8s...)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fc, err := newRunFlags().parse([]string{"--config", f})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := fc.settings(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSidecarSettings(t *testing.T) {
	p := writeConfig(t, `
upstream: 127.0.0.1:2121
passive_ports: 40000-40007
advertise_rules:
  - clients: [10.0.0.0/8]
    address: 10.96.0.10
  - clients: [0.0.0.0/0]
    address: 198.18.7.1
    ports: {40000: 30000}
proxy_protocol:
  trusted: [198.18.5.0/24]
  control: true
  data: true
`)
	fc, err := newRunFlags().parse([]string{"--config", p, "--proxy-protocol-upstream", "2"})
	if err != nil {
		t.Fatal(err)
	}
	pc, _, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.AdvertiseRules) != 2 || pc.AdvertiseRules[1].Ports[40000] != 30000 {
		t.Errorf("advertise rules %+v", pc.AdvertiseRules)
	}
	pp := pc.ProxyProtocol
	if !pp.Control || !pp.Data || pp.SendUpstream != 2 || len(pp.Trusted) != 1 {
		t.Errorf("PROXY protocol %+v", pp)
	}
	// The flag form of a rule.
	fc, err = newRunFlags().parse([]string{"--upstream", "a:21", "--advertise-rule", "10.0.0.0/8,fd00::/8=10.96.0.10"})
	if err != nil {
		t.Fatal(err)
	}
	if r := fc.AdvertiseRules; len(r) != 1 || len(r[0].Clients) != 2 || r[0].Address != "10.96.0.10" {
		t.Errorf("flag rule %+v", r)
	}
	// PROXY protocol without trusted networks is refused.
	fc, _ = newRunFlags().parse([]string{"--upstream", "a:21", "--proxy-protocol", "control"})
	if _, _, err := fc.settings(); err == nil || !strings.Contains(err.Error(), "trusted") {
		t.Errorf("error %v, want one about trusted networks", err)
	}
}
