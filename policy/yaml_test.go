package policy

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestYAML checks that the yaml tags decode the documented configuration,
// with unknown keys refused as cmd/ftpgate does (KnownFields).
func TestYAML(t *testing.T) {
	const doc = `
policy:
  require_client_tls: true
  allow_destinations: [198.18.0.0/15]
  destination_ports: [21, 2121]
  clients:
    - {name: office, listeners: [public], networks: [198.18.0.0/24], action: allow}
    - {listeners: [public], action: deny}
  commands:
    presets: [strict]
    site_commands: [CHMOD, UMASK]
    rules:
      - name: anonymous read-only
        users: [anonymous, "ftp-*"]
        preset: read-only
        action: deny
      - {name: no-dele, verbs: [DELE, "SITE EXEC"], classes: [obsolete], action: deny, code: 553, message: No.}
limits:
  max_sessions: 100
  max_sessions_per_client: 5
  max_login_failures: 3
  upstream_connect: lazy
  data_idle_timeout: 90s
  max_upload_size: 1048576
  max_line: 2048
  max_reply: 32768
  max_reply_lines: 500
`
	var got struct {
		Policy Config `yaml:"policy"`
		Limits Limits `yaml:"limits"`
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := got.Policy.Validate(); err != nil {
		t.Fatalf("policy: %v", err)
	}
	if err := got.Limits.Validate(); err != nil {
		t.Fatalf("limits: %v", err)
	}
	p, l := got.Policy, got.Limits
	if !p.RequireClientTLS || len(p.Clients) != 2 || p.Clients[0].Networks[0].String() != "198.18.0.0/24" ||
		len(p.Commands.Rules) != 2 || p.Commands.Rules[1].Code != 553 || p.Commands.Rules[0].Users[1] != "ftp-*" ||
		p.DestinationPorts[1] != 2121 {
		t.Fatalf("policy decoded as %+v", p)
	}
	if l.DataIdleTimeout != 90*time.Second || l.UpstreamConnect != "lazy" || l.MaxReplyLines != 500 || l.MaxUploadSize != 1<<20 {
		t.Fatalf("limits decoded as %+v", l)
	}
	d := p.Command(SessionFacts{User: "ftp-7", ClientTLS: true, ProtectedData: true}, mustCommand(t, "STOR a"))
	if d.Allow || d.Rule != `rule "anonymous read-only"` {
		t.Fatalf("decoded policy decided %+v", d)
	}

	var bad struct {
		Policy Config `yaml:"policy"`
	}
	dec = yaml.NewDecoder(strings.NewReader("policy:\n  commands:\n    preset: read-only\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&bad); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("unknown key: %v, want an error naming line 3", err)
	}
}
