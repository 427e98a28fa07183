//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profileRun profiles ftpgate (reverse) during small-file transfers and writes to dir:
//
//	cpu.pprof, block.pprof, mutex.pprof  pprof profiles during repeated lftp mirrors (1 at a time)
//	trace.out                           go tool trace of one mirror
//	ftpgate.strace, client.strace        strace -f -tt -T of ftpgate and of curl for one 4 KiB transfer
//	routing-client.strace                the same transfer's client side without ftpgate
//
// It needs ftpgate's --admin-pprof flag.
func (e *env) profileRun(ctx context.Context, dir string) error {
	if !e.hasFlag("admin-pprof") {
		return fmt.Errorf("%s has no --admin-pprof flag", e.ftpgate)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := e.column(colReverse)
	// Step timings first, with nothing attached to ftpgate, for variants that isolate a cost;
	// three passes with the order rotated, the median of the passes' medians shown.
	table, err := e.stepVariants(ctx, dir, 3)
	if err != nil {
		return err
	}
	fmt.Fprint(os.Stderr, table)
	if err := os.WriteFile(filepath.Join(dir, "steps.md"), []byte(table), 0o644); err != nil {
		return err
	}
	g, err := startGate(ctx, e.tp, e.ftpgate, append(append([]string{}, c.args...), "--admin-pprof"), filepath.Join(dir, "ftpgate.log"))
	if err != nil {
		return err
	}
	defer g.stop()
	fetch := func(name, path string) chan error {
		errc := make(chan error, 1)
		go func() {
			b, err := g.get(ctx, path)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
			errc <- err
		}()
		return errc
	}
	mirrors := func(d time.Duration) error {
		for end := time.Now().Add(d); time.Now().Before(end); {
			secs, err := e.mirror(ctx, c.target, 1)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: profile: mirror of %d files in %.2fs\n", e.sz.smallFiles, secs)
		}
		return nil
	}
	// Reset the block and mutex profiles' baseline by reading them once.
	_, _ = g.get(ctx, "/debug/pprof/block")
	cpu := fetch("cpu.pprof", "/debug/pprof/profile?seconds=10")
	if err := mirrors(9 * time.Second); err != nil {
		return err
	}
	if err := <-cpu; err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	for _, p := range []string{"block", "mutex", "goroutine"} {
		if err := <-fetch(p+".pprof", "/debug/pprof/"+p); err != nil {
			return fmt.Errorf("%s profile: %w", p, err)
		}
	}
	tr := fetch("trace.out", "/debug/pprof/trace?seconds=3")
	if err := mirrors(2 * time.Second); err != nil {
		return err
	}
	if err := <-tr; err != nil {
		return fmt.Errorf("trace: %w", err)
	}

	if rs, err := runIn(ctx, e.tp.Gateway, "nft", "list", "ruleset"); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "gateway-ruleset.nft"), rs, 0o644)
	}

	// One 4 KiB transfer, traced on both ends; the timestamps share the wall clock.
	one := smallDir + "/f0001.dat"
	out := filepath.Join(dir, "ftpgate.strace")
	st, err := attachStrace(ctx, g.proc.pid(), out, "-tt", "-T", "-s", "80")
	if err != nil {
		return err
	}
	_, cerr := runIn(ctx, e.tp.Client, "strace", "-f", "-tt", "-T", "-s", "80", "-o", filepath.Join(dir, "client.strace"),
		"curl", "-sS", "--user", e2eUser+":"+e2ePassword, "-o", "/dev/null", ftpURL(c.target, one))
	if _, err := st.finish(out); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if _, err := runIn(ctx, e.tp.Client, "strace", "-f", "-tt", "-T", "-s", "80", "-o", filepath.Join(dir, "routing-client.strace"),
		"curl", "-sS", "--user", e2eUser+":"+e2ePassword, "-o", "/dev/null", ftpURL(serverV4, one)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: profile written to %s\n", dir)
	return nil
}

// ctTable turns conntrack on in the gateway namespace without filtering anything.
const ctTable = `table inet benchct {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
	}
}
`

// stepVariants times the steps of small downloads through variants that isolate one cost
// each, in passes with the order rotated, and returns a Markdown table of the median of the
// passes' medians (with the largest p90 and maximum seen) per step and variant.
func (e *env) stepVariants(ctx context.Context, dir string, passes int) (string, error) {
	c, redirect := e.column(colReverse), e.column(colRedirect)
	none := append(append([]string{}, c.args...), "--firewall", "none")
	variants := []struct {
		name   string
		args   []string
		target string
		ct     bool // a table in the gateway namespace that turns conntrack on, as ftpgate's own does
		relay  bool // the bare relay (bench relay) on the gateway
		// control times only the control exchange, back to back with no transfers between:
		// the bare relay knows no FTP, and "--firewall none, control only" is its like through
		// ftpgate, with no table in the gateway either (in the other variants each TYPE I
		// follows a transfer's 226).
		control bool
	}{
		{"routing", nil, serverV4, false, false, false},
		{"routing + conntrack", nil, serverV4, true, false, false},
		{"ftpgate reverse", c.args, c.target, false, false, false},
		{"reverse --firewall none", none, c.target, false, false, false},
		{"reverse --firewall none + conntrack", none, c.target, true, false, false},
		{"reverse --log-level warn", append(append([]string{}, c.args...), "--log-level", "warn"), c.target, false, false, false},
		{"ftpgate redirect", redirect.args, redirect.target, false, false, false},
		{"reverse --firewall none, control only", none, c.target, false, false, true},
		{"bare Go relay (io.Copy, control only)", nil, gwLANV4, false, true, true},
	}
	got := make([][]stepStats, len(variants))
	for pass := range passes {
		for i := range variants {
			k := (i + pass) % len(variants)
			v := variants[k]
			st, err := e.stepTimes(ctx, v.args, v.target, v.ct, v.relay, v.control, filepath.Join(dir, "steps-ftpgate.log"))
			if err != nil {
				return "", fmt.Errorf("step timings %s: %w", v.name, err)
			}
			got[k] = append(got[k], st)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d × 4 KiB RETR (EPSV) in one session per pass, %d passes; µs: median of the passes' medians (max p90 / max)\n\n| step |", e.sz.profileTransfers, passes)
	for _, v := range variants {
		fmt.Fprintf(&b, " %s |", v.name)
	}
	fmt.Fprintf(&b, "\n|---|%s\n", strings.Repeat("---|", len(variants)))
	for _, step := range stepNames {
		fmt.Fprintf(&b, "| %s |", step)
		for k := range variants {
			var med []float64
			var p90, mx int64
			for _, st := range got[k] {
				if v, ok := st[step]; ok {
					med = append(med, float64(v[0]))
					p90, mx = max(p90, v[1]), max(mx, v[2])
				}
			}
			if len(med) == 0 {
				b.WriteString(" — |") // not timed there (the data steps of a control-only variant)
				continue
			}
			fmt.Fprintf(&b, " %.0f (%d / %d) |", median(med), p90, mx)
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// stepTimes runs the steps subcommand in the client namespace against target, through an
// ftpgate started with args (none: routing), with conntrack turned on in the gateway if ct,
// through the bare relay if relay, timing only the control exchange if control.
func (e *env) stepTimes(ctx context.Context, args []string, target string, ct, relay, control bool, logPath string) (stepStats, error) {
	if err := e.forgetConnections(ctx); err != nil {
		return nil, fmt.Errorf("forget the earlier variants' connections: %w", err)
	}
	if ct {
		f := filepath.Join(e.work, "benchct.nft")
		if err := os.WriteFile(f, []byte(ctTable), 0o644); err != nil {
			return nil, err
		}
		if _, err := runIn(ctx, e.tp.Gateway, "nft", "-f", f); err != nil {
			return nil, err
		}
		defer runIn(context.Background(), e.tp.Gateway, "nft", "delete", "table", "inet", "benchct")
	}
	if args != nil {
		g, err := startGate(ctx, e.tp, e.ftpgate, args, logPath)
		if err != nil {
			return nil, err
		}
		defer g.stop()
	}
	if relay {
		r, err := startRelay(ctx, e.tp, e.self, target, "")
		if err != nil {
			return nil, err
		}
		defer r.stop()
	}
	return e.steps(ctx, target, control)
}

// steps runs the steps subcommand in the client namespace against target.
func (e *env) steps(ctx context.Context, target string, controlOnly bool) (stepStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	args := []string{"steps", "--addr", target + ":21", "--n", strconv.Itoa(e.sz.profileTransfers)}
	if controlOnly {
		args = append(args, "--control-only")
	}
	out, err := runIn(ctx, e.tp.Client, e.self, args...)
	if err != nil {
		return nil, err
	}
	var st stepStats
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("steps output %q: %w", out, err)
	}
	return st, nil
}
