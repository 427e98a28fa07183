package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// Harness: the static ftpgate binary, the repository root, and the rule for
// missing prerequisites.

// repoRoot is the module root, one directory up.
const repoRoot = ".."

// requireRoot: namespaces, chroot and mounts need it.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Prereq(t, "%s needs root", why)
	}
}

// lookPath finds bin or reports the Debian package that has it.
func lookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		testenv.Prereq(t, "%s (apt-get install -y %s; scripts/install-test-deps.sh does): %v", bin, pkg, err)
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
