package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"go.uber.org/zap"
)

// Go processors: --procs / procs: is how many threads run ftpgate's Go code
// at once (GOMAXPROCS). The default is half the CPUs the runtime sees (its
// own choice, which follows a container's CPU limit), at least one: the
// bytes move in the kernel (splice, or the kernel data path), whose TCP work
// for the relayed connections, and the clients and servers beside ftpgate,
// need the other half. Measured on 2 vCPUs (go run ./bench, small files): one
// processor instead of two took a 500-file mirror from about 2.3x to 1.6x of
// plain routing, with large downloads and 100 concurrent sessions no slower,
// because goroutine hand-offs no longer wake and spin a second processor.
// A GOMAXPROCS environment variable is obeyed when --procs is not given.

func addProcsFlag(fs *flag.FlagSet, fc *fileConfig) {
	fs.IntVar(&fc.Procs, "procs", 0, "how many threads run ftpgate's Go code at once (GOMAXPROCS; default half the CPUs, at least 1, or $GOMAXPROCS)")
}

// procs returns the processor count to use and whether to set it.
func procs(n, current int, env string) (int, bool, error) {
	switch {
	case n < 0:
		return 0, false, fmt.Errorf("procs %d: want 0 (default) or more", n)
	case n > 0:
		return n, true, nil
	case env != "":
		return current, false, nil // the environment decided
	}
	return max(1, current/2), true, nil
}

// setProcs applies --procs and logs the outcome.
func setProcs(n int, log *zap.Logger) error {
	p, set, err := procs(n, runtime.GOMAXPROCS(0), os.Getenv("GOMAXPROCS"))
	if err != nil {
		return err
	}
	if set {
		runtime.GOMAXPROCS(p)
	}
	log.Info("go processors", zap.Int("procs", p), zap.Int("cpus", runtime.NumCPU()))
	return nil
}
