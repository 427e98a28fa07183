package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// ftpgateBinary builds ftpgate once, for the tests that run the program as
// a user would (the demo's, the sysmon re-exec's), into a directory of its
// own, so that any process running that file after a test is one the test
// left behind.
func ftpgateBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "ftpgate-cmd-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "ftpgate")
		out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}
