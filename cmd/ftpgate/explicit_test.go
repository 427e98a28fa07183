package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/proxy"
)

// shaCryptHello is SHA-512 crypt of "Hello world!" (salt "saltstring").
const shaCryptHello = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"

func writeUsers(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplicitConfig(t *testing.T) {
	users := writeUsers(t, "# proxy users\nalice:"+shaCryptHello+"\n")
	p := writeConfig(t, `
mode: explicit
listen: ["198.18.0.1:21"]
explicit:
  auth: `+users+`
policy:
  deny_destinations: ["198.18.0.0/24"]
  destination_ports: "21,2121"
firewall: {mode: none}
`)
	fc, err := newRunFlags().parse([]string{"--config", p, "--allow-destinations", "198.18.0.0/15"})
	if err != nil {
		t.Fatal(err)
	}
	pc, _, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	if pc.Mode != proxy.ModeExplicit || pc.Upstream != "" {
		t.Errorf("mode %q upstream %q", pc.Mode, pc.Upstream)
	}
	if pc.Explicit.Users.Len() != 1 || !pc.Explicit.Users.Verify("alice", "Hello world!").Allow {
		t.Errorf("proxy users not loaded: %d users", pc.Explicit.Users.Len())
	}
	if !slices.Equal(pc.Policy.DestinationPorts, []uint16{21, 2121}) || len(pc.Policy.DenyDestinations) != 1 || len(pc.Policy.AllowDestinations) != 1 {
		t.Errorf("destination policy %+v", pc.Policy)
	}

	fc, err = newRunFlags().parse([]string{"--mode", "explicit", "--explicit-auth", "off", "--destination-ports", "2121", "--firewall", "none"})
	if err != nil {
		t.Fatal(err)
	}
	if pc, _, err = fc.settings(); err != nil {
		t.Fatal(err)
	}
	if pc.Explicit.Users != nil || !slices.Equal(pc.Policy.DestinationPorts, []uint16{2121}) || len(pc.Listen) != 1 || pc.Listen[0] != ":21" {
		t.Errorf("explicit mode from flags: users %v, ports %v, listen %v", pc.Explicit.Users, pc.Policy.DestinationPorts, pc.Listen)
	}
}

func TestUpstreamConnectConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		file string
		lazy bool
	}{
		{args: []string{"--upstream-connect", "lazy"}, lazy: true},
		{args: []string{"--upstream-connect", "eager"}},
		{file: "limits: {upstream_connect: lazy}\n", lazy: true},
		{file: "limits: {upstream_connect: lazy}\n", args: []string{"--upstream-connect", "eager"}},
		{},
	} {
		args := append([]string{"--config", writeConfig(t, "upstream: 198.18.1.2:21\nfirewall: {mode: none}\n"+tc.file)}, tc.args...)
		fc, err := newRunFlags().parse(args)
		if err != nil {
			t.Fatal(err)
		}
		pc, _, err := fc.settings()
		if err != nil {
			t.Fatal(err)
		}
		if lazy := pc.Limits.UpstreamConnect == policy.UpstreamLazy; lazy != tc.lazy {
			t.Errorf("file %q flags %v: lazy %v, want %v", tc.file, tc.args, lazy, tc.lazy)
		}
	}
}

func TestExplicitConfigErrors(t *testing.T) {
	bad := writeUsers(t, "alice:plaintext\n")
	empty := writeUsers(t, "# nobody\n")
	tests := []struct {
		name, file string
		args       []string
		want       string
	}{
		{"explicit with upstream", "mode: explicit\nupstream: a:21\n", nil, "--upstream is for reverse mode"},
		{"users file missing", "mode: explicit\n", []string{"--explicit-auth", "/nonexistent/users"}, "explicit.auth"},
		{"bad hash names the line", "mode: explicit\n", []string{"--explicit-auth", bad}, "line 1"},
		{"no users", "mode: explicit\n", []string{"--explicit-auth", empty}, "no users"},
		{"proxy users outside explicit mode", "upstream: a:21\n", []string{"--explicit-auth", empty}, "--mode explicit"},
		{"bad upstream connect", "upstream: a:21\n", []string{"--upstream-connect", "sometimes"}, "upstream_connect"},
		{"bad destination port", "mode: explicit\n", []string{"--destination-ports", "21,0"}, "port"},
		{"unknown explicit key", "mode: explicit\nexplicit: {users: x}\n", nil, "unknown setting users"},
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
