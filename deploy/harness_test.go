package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Harness: the static ftpgate binary, the repository root, and the rule for
// missing prerequisites.

// repoRoot is the module root, one directory up.
const repoRoot = ".."

// strictPrereqs reports whether a missing prerequisite must fail the test
// (CI=true or FTPGATE_E2E=1) instead of skipping it.
func strictPrereqs() bool {
	ci, e2e := os.Getenv("CI"), os.Getenv("FTPGATE_E2E")
	return ci == "true" || ci == "1" || e2e == "1" || e2e == "true"
}

// prereq fails or skips the test, as strictPrereqs says.
func prereq(t testing.TB, format string, args ...any) {
	t.Helper()
	if strictPrereqs() {
		t.Fatalf("missing prerequisite (CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
	}
	t.Skipf("missing prerequisite (skipping; CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
}

// requireRoot: namespaces, chroot and mounts need it.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		prereq(t, "%s needs root", why)
	}
}

// lookPath finds bin or reports the Debian package that has it.
func lookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		prereq(t, "%s (apt-get install -y %s; scripts/install-test-deps.sh does): %v", bin, pkg, err)
	}
	return p
}

// goBuild cross-compiles ftpgate as the release build does: static,
// -trimpath, stripped, with version set.
func goBuild(t testing.TB, out, version string, env ...string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version,
		"-o", out, "./cmd/ftpgate")
	cmd.Dir = repoRoot
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(env, " "), err, b)
	}
}

var host struct {
	once sync.Once
	dir  string
}

// hostBinary is a static ftpgate for this machine, built once per test
// binary in a directory every user may read.
func hostBinary(t testing.TB) string {
	t.Helper()
	host.once.Do(func() {
		d, err := os.MkdirTemp("", "ftpgate-deploy-test-")
		if err == nil {
			err = os.Chmod(d, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		host.dir = d
	})
	bin := filepath.Join(host.dir, "ftpgate")
	if _, err := os.Stat(bin); err != nil {
		goBuild(t, bin, "deploy-test")
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if host.dir != "" {
		os.RemoveAll(host.dir)
	}
	os.Exit(code)
}
