package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The pinhole test (--scale) measures the firewall alone: nat's
// BenchmarkPinholesUnderLoad and its diverting twin run 1,000 data plans at
// once against one firewall in a namespace of their own, each opening a
// pinhole, holding it for a while and closing it, over and over. Two holds:
// 1–20 ms (a firewall asked for far more than sessions ask of it, about
// 150,000 changes a second) and 100–200 ms (about 13,000 a second, still
// more than the 1,000-session test asks). The figure is the median of one
// plan's Open plus Close.

// loadBench is one sub-benchmark's line of `go test -bench` output.
type loadBench struct {
	name    string
	metrics map[string]float64 // by unit, e.g. "openclose-p50-µs"
}

// parseBenchLines reads the Benchmark lines of go test output: the name,
// the count, then value-unit pairs.
func parseBenchLines(out []byte) []loadBench {
	var bs []loadBench
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		b := loadBench{name: f[0], metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b.metrics[f[i+1]] = v
			}
		}
		bs = append(bs, b)
	}
	return bs
}

// pinholes runs the nat load benchmarks and records them on column c.
func (e *env) pinholes(ctx context.Context, res *results, c column) error {
	mod, err := moduleDir(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "PinholesUnderLoad",
		"-benchtime", fmt.Sprintf("%dx", e.sz.pinholePlans), "./nat")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "FTPGATE_E2E=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench PinholesUnderLoad ./nat: %w\n%s", err, out)
	}
	bs := parseBenchLines(out)
	var notes []string
	var headline float64
	found := false
	for _, b := range bs {
		p50, ok := b.metrics["openclose-p50-µs"]
		if !ok {
			continue
		}
		kind, hold := "plain", strings.TrimPrefix(b.name[strings.Index(b.name, "/")+1:], "hold=")
		if strings.Contains(b.name, "Diverting") {
			kind = "diverting"
		}
		if i := strings.LastIndex(hold, "-"); strings.Count(hold, "-") > 1 {
			hold = hold[:i] // go test's -GOMAXPROCS suffix
		}
		notes = append(notes, fmt.Sprintf("%s, %s holds: %s µs (p99 %s µs), %s changes/s, %.0f live",
			kind, hold, format(p50), format(b.metrics["openclose-p99-µs"]), format(b.metrics["ops/s"]), b.metrics["live-mid"]))
		if kind == "plain" && strings.HasPrefix(hold, "100-") {
			headline, found = p50, true
		}
	}
	if !found {
		return fmt.Errorf("no PinholesUnderLoad figures in:\n%s", out)
	}
	res.add(tPinholes, c.Name, 0, headline)
	res.at(tPinholes, c.Name).Note = strings.Join(notes, "; ")
	return nil
}
