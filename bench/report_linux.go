//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row describes how a test is shown.
type row struct {
	label string
	kind  string
	unit  string
}

func (e *env) rows() map[string]row {
	mib := func(n int64) string {
		if n >= 1<<30 {
			return fmt.Sprintf("%d GiB", n>>30)
		}
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return map[string]row{
		tDownload:  {mib(e.sz.big) + " passive download (curl)", kindRate, "MB/s"},
		tDownCPU:   {"relay CPU per GiB, download", kindCPU, "s"},
		tUpload:    {mib(e.sz.upload) + " upload (curl -T)", kindRate, "MB/s"},
		tUpCPU:     {"relay CPU per GiB, upload", kindCPU, "s"},
		tMirror1:   {fmt.Sprintf("%d × 4 KiB files, lftp mirror, 1 at a time", e.sz.smallFiles), kindTime, "s"},
		tMirror8:   {"same, 8 in parallel", kindTime, "s"},
		tMirrorCPU: {"relay CPU per file, the mirror 1 at a time", kindCPU, "µs"},
		tTransfer:  {fmt.Sprintf("one 4 KiB transfer, EPSV to 226 (Go client, median of %d in one session)", e.sz.profileTransfers), kindTime, "ms"},
		tExchange:  {fmt.Sprintf("one control exchange, TYPE I to 200 (the same client, median of %d)", e.sz.profileTransfers), kindTime, "µs"},
		tSessions:  {fmt.Sprintf("%d concurrent sessions (LIST + 1 MiB RETR)", e.sz.sessions), kindTime, "s"},
		tDrops:     {"data-port packets the own table dropped without a pinhole, per round (should be 0)", kindCount, ""},
		tSplice:    {"splice check: ftpgate syscalls during one download (strace -f -c)", "", ""},
		tScale:     {fmt.Sprintf("%d concurrent sessions (LIST + 1 MiB RETR)", e.sz.scaleSessions), kindTime, "s"},
		tIdle:      {fmt.Sprintf("%d idle logged-in sessions: ftpgate RSS per session", e.sz.idleSessions), "", "KiB"},
		tPinholes:  {"pinhole open+close median under 1,000 concurrent plans (nat benchmark, one firewall)", "", "µs"},
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// format shows one figure with the precision its size deserves.
func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func spread(v []float64) string {
	if len(v) < 2 {
		return ""
	}
	return fmt.Sprintf(" [%s..%s]", format(slices.Min(v)), format(slices.Max(v)))
}

// show renders one cell.
func (r *results) show(test, col string, rw row) string {
	if na := r.NA[col]; na != "" {
		return na
	}
	if !r.expected(test, col) {
		if rw.kind == kindCPU {
			return "kernel"
		}
		return "—"
	}
	c := r.Cells[test][col]
	switch {
	case c == nil:
		return "not measured"
	case c.Err != "":
		return "FAILED: " + firstLine(c.Err)
	case c.Note != "" && test == tSplice:
		return c.Note
	case len(c.Values) == 0:
		return "not measured"
	}
	var s string
	switch {
	case rw.kind == kindCount:
		s = fmt.Sprintf("%.0f%s", median(c.Values), spread(c.Values))
	case rw.kind == kindCPU || test == tIdle || test == tPinholes:
		s = fmt.Sprintf("%s %s%s", format(median(c.Values)), rw.unit, spread(c.Values))
	case col == "routing" && rw.kind == kindRate:
		s = fmt.Sprintf("1.00 (%s %s%s)", format(median(c.Values)), rw.unit, spread(c.Values))
	case col == "routing" || len(c.Ratios) == 0: // no routing figure of the same round to compare with
		s = fmt.Sprintf("%s %s%s", format(median(c.Values)), rw.unit, spread(c.Values))
	case rw.kind == kindRate:
		s = fmt.Sprintf("%.2f%s (%s %s)", median(c.Ratios), spread(c.Ratios), format(median(c.Values)), rw.unit)
	default:
		s = fmt.Sprintf("%s %s (%.2f×%s)", format(median(c.Values)), rw.unit, median(c.Ratios), spread(c.Ratios))
	}
	if test == tSessions || test == tScale {
		s += fmt.Sprintf(", %d failed", c.Failed)
		if c.Note != "" {
			s += " (" + c.Note + ")"
		}
	}
	if test == tIdle || test == tPinholes {
		s += " (" + c.Note + ")"
	}
	return s
}

// stealText says how much CPU time the hypervisor took from this machine during the run.
func stealText(r *results) string {
	if r.Steal < 0 {
		return "not known (no /proc/stat)"
	}
	return fmt.Sprintf("%.2f s of CPU time (/proc/stat: time this machine's CPUs waited while the hypervisor"+
		" ran others; figures from runs with more of it are noisier)", r.Steal)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

type report struct{ text, markdown string }

func (e *env) report(r *results) report {
	rows := e.rows()
	var tb strings.Builder
	fmt.Fprintf(&tb, "| test | %s |\n|---|%s\n", strings.Join(r.Columns, " | "), strings.Repeat("---|", len(r.Columns)))
	for _, t := range r.Tests {
		cells := make([]string, len(r.Columns))
		for i, col := range r.Columns {
			cells[i] = strings.ReplaceAll(r.show(t, col, rows[t]), "|", "/")
		}
		fmt.Fprintf(&tb, "| %s | %s |\n", rows[t].label, strings.Join(cells, " | "))
	}
	table := tb.String()

	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	commit := "unknown"
	if b, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(b))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			commit += " (with uncommitted changes)"
		}
	}
	cmdline := "go run ./bench"
	if len(e.o.args) > 0 {
		cmdline += " " + strings.Join(e.o.args, " ")
	}
	var md strings.Builder
	fmt.Fprintf(&md, `# ftpgate benchmarks

Written by `+"`%s`"+` (scripts/bench.sh); do not edit by hand.

- date: %s
- kernel: Linux %s, %d CPUs, %s
- commit: %s
- rounds: %d, interleaved, the order of the columns rotated each round; run time %s
- steal: %s

Topology: three network namespaces on this host, client ── gateway ── server (vsftpd), 198.18.0.0/15.
"routing" is the gateway forwarding with no middlebox, the physical limit of the topology. ftpgate runs
in the gateway namespace with its own nftables table (pinholes on): "reverse" listens on the gateway's
address; "redirect" intercepts the client's connections to the server's address (transparent); all run
with ftpgate's defaults (so --procs is half the CPUs). The "bare Go relay" is no FTP proxy at all: two
io.Copy calls per connection (a splice each way) for port 21 and each of vsftpd's passive ports, on one P,
with no firewall, policy or logging, and the gateway forwarding nothing around it. It is the least that any
user-space relay in Go pays here, to compare ftpgate's relay and per-transfer costs with.
Each figure is the median of the rounds with [min..max]; ratios are to routing in the same round:
for throughput a fraction of routing (higher is better), for times a multiple of routing (lower is
better). "Relay CPU" is the utime+stime of ftpgate (or of the bare relay) from /proc during the transfer,
per GiB moved (per file for the mirror: the whole lftp runs, login and listing included, over their
files; 10 ms ticks).

%s`, cmdline, time.Now().UTC().Format(time.RFC3339), strings.TrimSpace(string(kernel)), runtime.NumCPU(),
		runtime.Version(), commit, r.Rounds, time.Duration(r.Seconds*float64(time.Second)).Round(time.Second), stealText(r), table)
	fmt.Fprintf(&md, `
Notes:
- download and upload: curl, passive (EPSV), a sparse file on tmpfs to /dev/null and from tmpfs.
- mirror: lftp `+"`mirror --parallel=N`"+` with EPSV, wall-clock time of the whole lftp run, every file checked to arrive;
  a round's figure is the median of %[3]d runs back to back (relay CPU per file: over all of them).
- one transfer: the benchmark's own client times EPSV→229, the data connect, RETR→150, the data and the 226
  of %[1]d downloads of a 4 KiB file in one session; `+"`go run ./bench --profile DIR`"+` shows each step, for
  variants that isolate the firewall, conntrack and logging, with pprof and strace of ftpgate. Before each
  download it times a TYPE I and its 200 alone: one command and one reply relayed, the unit of what every
  command costs (--profile compares it with a bare io.Copy relay).
- sessions: each connects, logs in, LISTs /, RETRs 1 MiB (size checked) and QUITs, all at once; at most %[2]d
  connection handshakes are in flight (vsftpd listens with a backlog of 32); failed sessions are counted.
- splice check: `+"`strace -f -c`"+` attached to ftpgate during one download; read/write are the control path's.
- idle sessions: through ftpgate reverse to a minimal Go upstream in the server namespace; RSS from /proc.
- pinholes: nat's BenchmarkPinholesUnderLoad, 1,000 plans at once on one firewall (one netlink connection) in
  a namespace of its own, each opening a pinhole, holding it 1–20 or 100–200 ms and closing it; the figure is
  the median of a plan's Open plus Close with the 100–200 ms holds, the other loads in the note.
- the kernel column is ftpgate reverse with `+"`--data-path kernel`"+`: the gateway's firewall forwards each passive
  data connection itself (an exact DNAT and SNAT per transfer), so its splice row shows no splice at all.
`, e.sz.profileTransfers, maxHandshakes, e.sz.mirrorRuns)
	if !e.o.scale {
		md.WriteString("- the scale tests (1,000 concurrent and 8,000 idle sessions, pinholes under load) run with `--scale`.\n")
	}
	return report{text: table, markdown: md.String()}
}
