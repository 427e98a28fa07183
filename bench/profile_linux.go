//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	c := e.columns()[1]
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
