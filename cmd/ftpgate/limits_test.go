package main

import (
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/proxy"
)

// TestLimitSettings: the limits: section and policy's command keys reach
// the proxy configuration, and flags override the file.
func TestLimitSettings(t *testing.T) {
	p := writeConfig(t, `
listen: ["198.18.0.1:21"]
upstream: 198.18.1.2:21
firewall: {mode: none}
limits:
  max_sessions: 100
  max_sessions_per_client: 5
  upstream_connect: lazy
  data_idle_timeout: 30s
policy:
  require_client_tls: true
  commands:
    presets: [no-delete]
    site_commands: [CHMOD]
    rules:
      - {name: admins, users: ["admin"], action: allow}
`)
	fc, err := newRunFlags().parse([]string{"--config", p, "--max-sessions-per-client", "7", "--commands-preset", "read-only,strict",
		"--max-upload-size", "10M"})
	if err != nil {
		t.Fatal(err)
	}
	pc, _, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	l := pc.Limits
	if l.MaxSessions != 100 || l.MaxSessionsPerClient != 7 || l.UpstreamConnect != policy.UpstreamLazy ||
		l.DataIdleTimeout != 30*time.Second || l.MaxUploadSize != 10<<20 {
		t.Errorf("limits %+v", l)
	}
	c := pc.Policy.Commands
	if !pc.Policy.RequireClientTLS || len(c.Presets) != 2 || c.Presets[0] != "read-only" || len(c.SiteCommands) != 1 ||
		len(c.Rules) != 1 || c.Rules[0].Name != "admins" {
		t.Errorf("command policy %+v, require TLS %v", c, pc.Policy.RequireClientTLS)
	}
	if err := pc.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	for _, bad := range [][]string{{"--upstream-connect", "sometimes"}, {"--commands-preset", "nonsense"}, {"--max-upload-size", "lots"}} {
		fc, err := newRunFlags().parse(append([]string{"--listen", "198.18.0.1:21", "--upstream", "198.18.1.2:21", "--firewall", "none"}, bad...))
		if err == nil {
			var cfg proxy.Config
			if cfg, _, err = fc.settings(); err == nil {
				err = cfg.Validate()
			}
		}
		if err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
