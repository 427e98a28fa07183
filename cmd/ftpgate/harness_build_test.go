package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Harness: the ftpgate binary for tests that run it as a program (under
// strace, as another user, in a namespace).

var built struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// buildFtpgate builds ./cmd/ftpgate once per test binary into a directory
// every user may read and run (tests run it as nobody), removed when the
// tests end (TestMain).
func buildFtpgate(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "ftpgate-cmd-test-")
		if built.err != nil {
			return
		}
		if built.err = os.Chmod(built.dir, 0o755); built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(built.dir, "ftpgate"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build ftpgate: %v\n%s", built.err, built.out)
	}
	return filepath.Join(built.dir, "ftpgate")
}

// removeBuilt deletes the binary's directory.
func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// strictPrereqs reports whether a missing prerequisite must fail the test
// (CI=true or FTPGATE_E2E=1) instead of skipping it.
func strictPrereqs() bool {
	ci, e2e := os.Getenv("CI"), os.Getenv("FTPGATE_E2E")
	return ci == "true" || ci == "1" || e2e == "1" || e2e == "true"
}

// prereq fails or skips the test, as strictPrereqs says, for a missing
// prerequisite.
func prereq(t testing.TB, format string, args ...any) {
	t.Helper()
	if strictPrereqs() {
		t.Fatalf("missing prerequisite (CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
	}
	t.Skipf("missing prerequisite (skipping; CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
}

func TestMain(m *testing.M) {
	code := m.Run()
	removeBuilt()
	os.Exit(code)
}
