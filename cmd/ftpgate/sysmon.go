package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// The Go runtime's system monitor: --sysmon / sysmon: poll (the default)
// or park.
//
// sysmon is the runtime's own thread that takes processors back from long
// system calls and preempts long-running goroutines. When every processor
// is idle it parks, and the next system call wakes it with a futex; after
// such a wake it polls every 20µs for at least a millisecond. ftpgate is
// idle between almost every two exchanges it relays (it waits for a client
// or a server), so it parked and woke sysmon two to three times per small
// transfer, each time waking a thread on another CPU and starting the 20µs
// polling again. Measured on 2 vCPUs (a nested KVM guest), go run ./bench
// --tests mirror, 500 files of 4 KiB:
//   - one round (3,000 files through ftpgate), counted with perf: park made
//     8,113 sysmon wakes, 18,748 futex and 16,777 nanosleep calls; poll 0,
//     985 and 2,373;
//   - ftpgate's CPU per file, three alternating pairs of 3-round runs,
//     reverse / redirect / kernel data path: park 900/980/800, 880/880/820
//     and 820/900/780µs; poll 800/600/680, 600/660/540 and 600/660/540µs.
//     The same runs' 8-parallel mirror through reverse: park 2.15x, 1.67x
//     and 1.83x of routing, poll 1.80x, 1.54x and 1.43x.
//
// The runtime has one switch for this: while GODEBUG's schedtrace is set,
// sysmon never parks; with nothing to do it backs off to one wake every
// 10ms. GODEBUG is read only when the program starts, so with poll ftpgate
// run sets schedtrace to its largest value (2^31-1 ms, 24.8 days, the
// interval of schedtrace's one-line report on standard error) and executes
// itself again, keeping its process ID, name, arguments and the rest of its
// environment. That report comes once the host has been up 24.8 days:
// a host up longer than that gets one "SCHED ..." line at start and one
// every 24.8 days after. park leaves the runtime as it is, and so does a
// GODEBUG that already names schedtrace.
//
// The price of poll is at most 100 wake-ups a second while ftpgate is
// idle: 16 ticks of CPU (0.16s) in 30 idle seconds on that guest, against
// none parked. It is taken at start only, like --procs.

const (
	sysmonPoll = "poll"
	sysmonPark = "park"

	// schedtraceForever is schedtrace's largest value, in milliseconds.
	schedtraceForever = "schedtrace=2147483647"
)

func addSysmonFlag(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.Sysmon, "sysmon", "", "the Go runtime's monitor thread while ftpgate is idle: poll (at most every 10ms, so each burst of work need not wake it) or park (default poll; taken at start)")
}

// checkSysmon validates the setting.
func checkSysmon(mode string) error {
	switch mode {
	case "", sysmonPoll, sysmonPark:
		return nil
	}
	return fmt.Errorf("sysmon %q: want poll or park", mode)
}

// schedtrace reads godebug (a GODEBUG value): whether it names schedtrace
// (then the setting is the operator's, and left alone), and whether that is
// a positive number of milliseconds, with which the runtime's sysmon never
// parks. The runtime takes the first setting of a key.
func schedtrace(godebug string) (named, polls bool) {
	for kv := range strings.SplitSeq(godebug, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "schedtrace" {
			n, err := strconv.Atoi(v)
			return true, err == nil && n > 0
		}
	}
	return false, false
}

// sysmonGodebug returns the GODEBUG value to execute ftpgate with for mode,
// and false when there is nothing to do: park, or schedtrace already named.
func sysmonGodebug(mode, godebug string) (string, bool) {
	if named, _ := schedtrace(godebug); mode == sysmonPark || named {
		return "", false
	}
	if godebug == "" {
		return schedtraceForever, true
	}
	return godebug + "," + schedtraceForever, true
}

// sysmonExecErr is why the start could not set schedtrace (logged by
// logSysmon), when it tried.
var sysmonExecErr error

// startSysmon runs first in main, before anything else: for "ftpgate run"
// whose setting is poll, it executes the program again with schedtrace set,
// and does not return unless that fails. Only the process's own start does
// this; realMain, which tests call in their own process, never does.
func startSysmon(args []string) {
	if len(args) < 2 || args[1] != "run" {
		return
	}
	rf := newRunFlags()
	rf.fs.SetOutput(io.Discard) // realMain parses again and reports errors
	fc, err := rf.parse(args[2:])
	if err != nil || checkSysmon(fc.Sysmon) != nil {
		return
	}
	godebug, ok := sysmonGodebug(fc.Sysmon, os.Getenv("GODEBUG"))
	if !ok {
		return
	}
	sysmonExecErr = reexec(args, godebug)
}

// logSysmon logs what sysmon does in this process.
func logSysmon(mode string, log *zap.Logger) {
	named, polls := schedtrace(os.Getenv("GODEBUG"))
	state := sysmonPark
	if polls {
		state = sysmonPoll
	}
	switch {
	case mode != sysmonPark && !named:
		why := sysmonExecErr
		if why == nil {
			why = errors.New("not started as its own program")
		}
		log.Warn("go runtime: sysmon parks when idle; --sysmon poll needs ftpgate to execute itself again with GODEBUG schedtrace set", zap.Error(why))
	case mode == sysmonPark && polls:
		log.Info("go runtime: GODEBUG sets schedtrace, so sysmon polls despite --sysmon park")
	}
	log.Info("go runtime", zap.String("sysmon", state))
}
