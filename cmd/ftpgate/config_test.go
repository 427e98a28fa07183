package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
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
		{"unknown key names the line", "upstream: a:21\nlisen: [\":21\"]\n", nil, "line 2"},
		{"wrong type", "upstream: a:21\nlisten: 5\n", nil, "line 2"},
		{"no upstream", "listen: [\":21\"]\n", nil, "no upstream"},
		{"bad advertise", "upstream: a:21\nadvertise: nowhere\n", nil, "advertise"},
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
