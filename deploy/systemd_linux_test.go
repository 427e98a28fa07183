package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	unitFile   = "systemd/ftpgate.service"
	ftpsDropIn = "systemd/ftpgate.service.d/ftps.conf"
	// unitExec is where the unit expects the binary.
	unitExec = "/usr/local/bin/ftpgate"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit alone and
// with its FTPS drop-in. verify insists that ExecStart's binary exists, so
// it runs in a private mount namespace with a tmpfs on /usr/local/bin that
// holds a freshly built ftpgate; nothing on the host changes. Any message
// (verify also warns, with exit status 0, about unknown keys) fails.
func TestSystemdUnitVerifies(t *testing.T) {
	requireRoot(t, "mounting a private /usr/local/bin for systemd-analyze verify")
	analyze := lookPath(t, "systemd-analyze", "systemd")
	unshare := lookPath(t, "unshare", "util-linux")
	bin := hostBinary(t)

	withDropIn := t.TempDir()
	copyFile(t, unitFile, filepath.Join(withDropIn, "ftpgate.service"))
	copyFile(t, ftpsDropIn, filepath.Join(withDropIn, "ftpgate.service.d", "ftps.conf"))
	for name, unit := range map[string]string{
		"unit":                unitFile,
		"unit with ftps.conf": filepath.Join(withDropIn, "ftpgate.service"),
	} {
		t.Run(name, func(t *testing.T) {
			script := `set -e
mount -t tmpfs -o mode=0755 ftpgate-verify /usr/local/bin
cp "$1" /usr/local/bin/ftpgate
exec "$2" verify "$3"`
			out, err := exec.Command(unshare, "--mount", "--propagation", "private",
				"sh", "-c", script, "sh", bin, analyze, unit).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
		})
	}
	// The drop-in is really read: a misspelt key in it is reported.
	bad := t.TempDir()
	copyFile(t, unitFile, filepath.Join(bad, "ftpgate.service"))
	writeFile(t, filepath.Join(bad, "ftpgate.service.d", "ftps.conf"), "[Service]\nLoadCredentia=tls.key:/etc/ftpgate/tls.key\n")
	out, _ := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs ftpgate-verify /usr/local/bin && cp "$1" /usr/local/bin/ && exec "$2" verify "$3"`,
		"sh", bin, analyze, filepath.Join(bad, "ftpgate.service")).CombinedOutput()
	if !strings.Contains(string(out), "LoadCredentia") {
		t.Errorf("verify did not read the drop-in next to the unit (no complaint about a bad key):\n%s", out)
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for ftpgate\.service: ([0-9.]+) (\S+)`)

// TestSystemdUnitSecurity rates the unit's sandboxing with systemd-analyze
// security --offline (no running systemd needed) and wants "OK" or better.
func TestSystemdUnitSecurity(t *testing.T) {
	analyze := lookPath(t, "systemd-analyze", "systemd")
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRe.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security --offline=yes %s: exposure %s %s", unitFile, m[1], m[2])
	if !slices.Contains([]string{"PERFECT", "SAFE", "OK"}, m[2]) {
		t.Errorf("exposure %.1f rated %s, want OK or better:\n%s", score, m[2], out)
	}
}

// TestSystemdUnitPrivileges reads the unit's settings: a dynamic user with
// exactly CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (no CAP_NET_RAW), reload by
// SIGHUP, and the TLS files through LoadCredential in the drop-in.
func TestSystemdUnitPrivileges(t *testing.T) {
	unit := unitSettings(t, unitFile)
	want := map[string]string{
		"DynamicUser":           "yes",
		"AmbientCapabilities":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":       "yes",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"ExecStart":             unitExec + " run --config /etc/ftpgate/ftpgate.yaml",
	}
	for k, v := range want {
		if got := unit[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want exactly %q", k, got, v)
		}
	}
	drop := unitSettings(t, ftpsDropIn)
	creds := strings.Join(drop["LoadCredential"], " ")
	for _, c := range []string{"tls.crt:", "tls.key:"} {
		if !strings.Contains(creds, c) {
			t.Errorf("%s: no LoadCredential=%s…", ftpsDropIn, c)
		}
	}
}

// unitSettings reads KEY=VALUE lines of a unit file, every value of a key
// in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
