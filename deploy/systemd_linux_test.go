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

// TestSystemdSyscallFilterAllowsFtpgate runs ftpgate under strace (start,
// one control connection, SIGTERM) in a throw-away network namespace, and
// checks that every system call it made passes the unit's
// SystemCallFilter=, as systemd-analyze expands its groups. Without a
// running systemd this is how the filter is known not to break ftpgate.
func TestSystemdSyscallFilterAllowsFtpgate(t *testing.T) {
	requireRoot(t, "a network namespace")
	analyze := lookPath(t, "systemd-analyze", "systemd")
	strace := lookPath(t, "strace", "strace")
	lookPath(t, "ip", "iproute2")
	bash := lookPath(t, "bash", "bash")
	bin := hostBinary(t)

	allowed := map[string]bool{}
	for i, f := range unitSettings(t, unitFile)["SystemCallFilter"] {
		deny := strings.HasPrefix(f, "~")
		for _, g := range strings.Fields(strings.TrimPrefix(f, "~")) {
			for _, s := range expandSyscalls(t, analyze, g, map[string]bool{}) {
				switch {
				case deny:
					delete(allowed, s)
				case i == 0 || !deny:
					allowed[s] = true
				}
			}
		}
	}
	if !allowed["splice"] || !allowed["accept4"] || allowed["setrlimit"] {
		t.Fatalf("the expanded filter looks wrong: splice %v, accept4 %v, setrlimit %v",
			allowed["splice"], allowed["accept4"], allowed["setrlimit"])
	}

	ns := testNetns(t)
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command("ip", "netns", "exec", ns, strace, "-f", "-qq", "-o", trace,
		bin, "run", "--log-format", "console", "--listen", "198.18.77.1:21", "--upstream", "198.18.77.2:21")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stop := startAndWait(t, cmd, &out, "ftpgate started", true)
	// One control connection: ftpgate accepts it, fails to reach the
	// unreachable upstream, answers and closes.
	if b, err := exec.Command("ip", "netns", "exec", ns, bash, "-c",
		`exec 3<>/dev/tcp/198.18.77.1/21 && read -t 10 line <&3; echo "$line"`).CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "421") {
		t.Errorf("control connection: %v, reply %q (want 421: no upstream)", err, b)
	}
	if err := stop(); err != nil {
		t.Errorf("ftpgate after SIGTERM: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range straceCall.FindAllStringSubmatch(string(b), -1) {
		used[m[1]] = true
	}
	if !used["accept4"] || !used["capget"] {
		t.Fatalf("the trace lacks accept4/capget; did ftpgate run?\n%s", out.String())
	}
	var denied []string
	for s := range used {
		if !allowed[s] {
			denied = append(denied, s)
		}
	}
	slices.Sort(denied)
	if len(denied) > 0 {
		t.Errorf("the unit's SystemCallFilter would refuse: %v", denied)
	}
	t.Logf("%d distinct system calls used, all allowed", len(used))
}

// straceCall matches the system call name of a strace -f line.
var straceCall = regexp.MustCompile(`(?m)^\d+ +([a-z_0-9]+)\(`)

// expandSyscalls lists the system calls of a systemd syscall group (or a
// single name), following nested groups.
func expandSyscalls(t *testing.T, analyze, group string, seen map[string]bool) []string {
	t.Helper()
	if !strings.HasPrefix(group, "@") {
		return []string{group}
	}
	if seen[group] {
		return nil
	}
	seen[group] = true
	b, err := exec.Command(analyze, "syscall-filter", "--no-pager", group).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", group, err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n")[1:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, expandSyscalls(t, analyze, l, seen)...)
	}
	return out
}
