package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// runCheck runs `ftpgate check` with args and returns its exit code and
// what it printed.
func runCheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmdCheck(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckTypoNamesFileAndLine(t *testing.T) {
	p := writeConfig(t, "upstream: 198.18.1.2:21\nfirewall:\n  mode: none\n  tll: 5s\n")
	code, out, errs := runCheck(t, "--config", p)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := p + ":4: unknown setting tll"; !strings.Contains(errs, want) {
		t.Errorf("stderr %q does not contain %q", errs, want)
	}
	if out != "" {
		t.Errorf("printed a configuration despite the error:\n%s", out)
	}
}

func TestCheckErrors(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"syntax error", "upstream: [198.18.1.2:21\n", "ftpgate.yaml:"},
		{"wrong type", "upstream: a:21\ntimeouts:\n  idle: soon\n", "ftpgate.yaml:3: "},
		{"bad port list", "mode: redirect\nintercept:\n  ports: \"21,x\"\n", "ftpgate.yaml:3: port \"x\""},
		{"invalid value", "upstream: a:21\nserver_mode: sideways\n", "server mode"},
		{"sysmon", "upstream: a:21\nsysmon: spin\n", `sysmon "spin": want poll or park`},
		{"two typos", "upstream: a:21\nlisen: []\nadvertize: x\n", "ftpgate.yaml:2: unknown setting lisen; "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCheck(t, "--config", writeConfig(t, tt.file))
			if code != 1 || out != "" || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, an error with %q", code, out, errs, tt.want)
			}
		})
	}
}

// TestCheckExampleConfigsRoundTrip checks every example config in deploy/:
// check accepts it, fills the defaults in, and its output read back gives
// the same effective configuration.
func TestCheckExampleConfigsRoundTrip(t *testing.T) {
	files, err := filepath.Glob("../../deploy/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs in deploy/config: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errs := runCheck(t, "--config", f)
			if code != 0 {
				t.Fatalf("check %s: exit %d: %s", f, code, errs)
			}
			for _, want := range []string{"log_level: info\n", "connect: 10s\n", "shutdown_grace: 30s\n", "min_version: \"1.2\"\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("effective config lacks the default %q:\n%s", want, out)
				}
			}
			again := writeConfig(t, out)
			code, out2, errs := runCheck(t, "--config", again)
			if code != 0 {
				t.Fatalf("check of check's own output: exit %d: %s\n%s", code, errs, out)
			}
			if body(out2) != body(out) {
				t.Errorf("effective config changed when read back:\nfirst:\n%s\nsecond:\n%s", out, out2)
			}
			// Beyond the text: the decoded values agree too.
			a, err := loadFile(again)
			if err != nil {
				t.Fatal(err)
			}
			b, err := a.effective()
			if err != nil {
				t.Fatal(err)
			}
			y, err := b.marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(y) != body(out) {
				t.Errorf("decoded effective config differs:\n%s\nwant\n%s", y, body(out))
			}
		})
	}
}

func TestCheckFlagsOverrideAndCapabilities(t *testing.T) {
	p := writeConfig(t, "upstream: 198.18.1.2:21\nlisten: [\"198.18.0.1:21\"]\n")
	code, out, errs := runCheck(t, "--config", p, "--firewall", "none", "--passive-ports", "41000-41009")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"  mode: none\n", "passive_ports: 41000-41009\n", "mode: reverse\n",
		"# needs CAP_NET_BIND_SERVICE: listen 198.18.0.1:21 is below port "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("firewall none on a high data port range should not need CAP_NET_ADMIN:\n%s", out)
	}
}

// body drops check's leading comment lines.
func body(out string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}
