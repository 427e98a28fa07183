//go:build linux

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickRun runs the benchmark in --quick mode (one round, small sizes) so that it cannot
// rot: every measured column must have a figure for every test, and the report must be
// written. It asserts no timing. Needs root and FTPGATE_E2E=1 (then a missing prerequisite is
// a failure, as in the e2e suite).
func TestQuickRun(t *testing.T) {
	if os.Getenv("FTPGATE_E2E") != "1" {
		t.Skip("set FTPGATE_E2E=1 (as root) to run the benchmark's smoke mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("FTPGATE_E2E=1 but not root: the benchmark needs network namespaces")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bench")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./bench: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	md, js := filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "results.json")
	cmd := exec.CommandContext(ctx, bin, "--quick", "--out", md, "--json", js, "--timeout", "4m")
	cmd.Dir = ".." // the module root: the benchmark builds ./cmd/ftpgate there
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench --quick: %v\n%s", err, out)
	}
	var res results
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results: %v", err)
	}
	want := []string{"routing", "ftpgate reverse", "ftpgate redirect", "ftpgate --data-path kernel"}
	if strings.Join(res.Columns, ",") != strings.Join(want, ",") {
		t.Errorf("columns %q, want %q", res.Columns, want)
	}
	measured := 0
	for _, test := range res.Tests {
		for _, col := range res.Columns {
			if !res.expected(test, col) {
				continue
			}
			c := res.Cells[test][col]
			switch {
			case c == nil:
				t.Errorf("%s via %s: not measured", test, col)
			case c.Err != "":
				t.Errorf("%s via %s: %s", test, col, c.Err)
			case len(c.Values) == 0 && c.Note == "":
				t.Errorf("%s via %s: no figure", test, col)
			case c.Failed > 0:
				t.Errorf("%s via %s: %d sessions failed", test, col, c.Failed)
			default:
				measured++
			}
		}
	}
	if measured < 3*len(res.Tests)-3 { // at least routing, reverse and redirect
		t.Errorf("only %d figures measured", measured)
	}
	if n := res.Cells[tSplice]["ftpgate reverse"]; n == nil || !strings.Contains(n.Note, " splice") {
		t.Errorf("splice check of ftpgate reverse missing: %+v", n)
	}
	report, err := os.ReadFile(md)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	for _, s := range []string{"| test | routing |", "kernel: Linux", "commit:", "go run ./bench --quick"} {
		if !strings.Contains(string(report), s) {
			t.Errorf("report lacks %q:\n%s", s, report)
		}
	}
	if strings.Contains(string(report), "FAILED") || strings.Contains(string(report), "not measured") {
		t.Errorf("report shows a failure:\n%s", report)
	}
	t.Logf("bench --quick:\n%s", out)
}
