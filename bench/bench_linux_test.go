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
	needNamespaces(t)
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
	want := []string{"routing", colHelper, colRelay, "ftpgate reverse", "ftpgate redirect", "ftpgate --data-path kernel"}
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
	for col, why := range res.NA { // only the kernel column may wait for its flag
		if col != "ftpgate --data-path kernel" {
			t.Errorf("column %s not measured: %s", col, why)
		}
	}
	if measured == 0 {
		t.Error("nothing measured")
	}
	if n := res.Cells[tSplice]["ftpgate reverse"]; n == nil || !strings.Contains(n.Note, " splice") {
		t.Errorf("splice check of ftpgate reverse missing: %+v", n)
	}
	if d := res.Cells[tDrops]["ftpgate reverse"]; d == nil || len(d.Values) != 1 {
		t.Errorf("drop counter of ftpgate reverse missing: %+v", d)
	}
	report, err := os.ReadFile(md)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	for _, s := range []string{"| test | routing |", "kernel: Linux", "commit:", "- steal: ", " s of CPU time (/proc/stat", "go run ./bench --quick"} {
		if !strings.Contains(string(report), s) {
			t.Errorf("report lacks %q:\n%s", s, report)
		}
	}
	if strings.Contains(string(report), "FAILED") || strings.Contains(string(report), "not measured") {
		t.Errorf("report shows a failure:\n%s", report)
	}
	t.Logf("bench --quick:\n%s", out)
}

// TestStraceCounts parses strace -c's summary as strace 6 prints it, with and without the
// errors column.
func TestStraceCounts(t *testing.T) {
	text := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 91.23    0.412345         187      2202           splice
  5.10    0.023051         348        66        12 read
  3.67    0.016600         415        40           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.451996         195      2308        12 total
`
	got := straceCounts(text)
	want := map[string]int64{"splice": 2202, "read": 66, "write": 40}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d, want %d", k, got[k], v)
		}
	}
}

// TestCellsAgainstRouting: ratios compare figures of the same round only, and a column whose
// routing figure is missing shows its absolute figure instead of a ratio.
func TestCellsAgainstRouting(t *testing.T) {
	r := &results{Columns: []string{"routing", "ftpgate reverse"}, NA: map[string]string{},
		Cells: map[string]map[string]*cell{}, Tests: []string{tDownload, tMirror1}}
	r.add(tDownload, "routing", 1, 1000)
	r.add(tDownload, "routing", 2, 2000)
	r.add(tDownload, "ftpgate reverse", 0, 900) // routing failed in round 0
	r.add(tDownload, "ftpgate reverse", 2, 1000)
	r.add(tMirror1, "ftpgate reverse", 0, 0.8)
	r.fail(tMirror1, "routing", os.ErrDeadlineExceeded)
	r.compare()
	e := &env{sz: options{}.sizes()}
	if got := r.Cells[tDownload]["ftpgate reverse"].Ratios; len(got) != 1 || got[0] != 0.5 {
		t.Errorf("download ratios %v, want [0.5] (round 2 only)", got)
	}
	rows := e.rows()
	if got := r.show(tMirror1, "ftpgate reverse", rows[tMirror1]); got != "0.80 s" {
		t.Errorf("mirror cell without a routing figure: %q, want the absolute figure", got)
	}
	if got := r.show(tMirror1, "routing", rows[tMirror1]); !strings.HasPrefix(got, "FAILED: ") {
		t.Errorf("failed routing cell: %q", got)
	}
	if n := r.failures(); n != 1 {
		t.Errorf("failures %d, want 1", n)
	}
}
