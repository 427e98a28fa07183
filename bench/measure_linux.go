//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Kinds of figure.
const (
	kindRate  = "rate"  // MB/s, higher is better; shown as a fraction of routing
	kindTime  = "time"  // seconds, lower is better; shown as a multiple of routing
	kindCPU   = "cpu"   // the relaying process's CPU time per GiB or per file; routing has none
	kindCount = "count" // a plain count; routing has none
)

// Test IDs, in table order.
const (
	tDownload  = "download"
	tDownCPU   = "download-cpu"
	tUpload    = "upload"
	tUpCPU     = "upload-cpu"
	tMirror1   = "mirror1"
	tMirror8   = "mirror8"
	tMirrorCPU = "mirror-cpu"
	tSessions  = "sessions"
	tTransfer  = "transfer"
	tExchange  = "exchange"
	tDrops     = "drops"
	tSplice    = "splice"
	tScale     = "scale-sessions"
	tIdle      = "idle-sessions"
	tPinholes  = "pinholes"
)

// cell is one test through one column: a value per round.
type cell struct {
	Values []float64 `json:"values"`
	Rounds []int     `json:"rounds"`           // the round of each value
	Ratios []float64 `json:"ratios,omitempty"` // to routing's value of the same round
	Failed int       `json:"failed,omitempty"` // sessions that failed (load tests)
	Err    string    `json:"error,omitempty"`
	Note   string    `json:"note,omitempty"` // a measured text (splice counts, RSS)
}

// results is the whole run.
type results struct {
	Columns []string                    `json:"columns"`
	NA      map[string]string           `json:"na"`
	Tests   []string                    `json:"tests"`
	Cells   map[string]map[string]*cell `json:"cells"` // test -> column -> cell
	Rounds  int                         `json:"rounds"`
	Seconds float64                     `json:"seconds"`
	// Steal is the CPU time, in seconds over all CPUs, that the hypervisor
	// gave to others while this machine wanted it, during the run (-1: not
	// known). On a shared host it is why runs of one build differ.
	Steal float64 `json:"steal"`
}

func (r *results) at(test, col string) *cell {
	m := r.Cells[test]
	if m == nil {
		m = map[string]*cell{}
		r.Cells[test] = m
	}
	c := m[col]
	if c == nil {
		c = &cell{}
		m[col] = c
	}
	return c
}

// add records v as test's figure through col in round.
func (r *results) add(test, col string, round int, v float64) {
	c := r.at(test, col)
	c.Values = append(c.Values, v)
	c.Rounds = append(c.Rounds, round)
}

func (r *results) fail(test, col string, err error) {
	fmt.Fprintf(os.Stderr, "bench: %s via %s: %v\n", test, col, err)
	if c := r.at(test, col); c.Err == "" {
		c.Err = err.Error()
	}
}

// expected reports whether test has a figure for column col.
func (r *results) expected(test, col string) bool {
	switch {
	case r.NA[col] != "":
		return false
	case test == tSplice || test == tDrops:
		return col != "routing" && col != colHelper && col != colRelay // ftpgate's only
	case test == tDownCPU || test == tUpCPU || test == tMirrorCPU:
		return col != "routing" && col != colHelper // no relaying process there
	case test == tIdle || test == tPinholes:
		return col == colReverse
	}
	return true
}

// failures counts expected cells that have an error or no figure.
func (r *results) failures() int {
	n := 0
	for _, t := range r.Tests {
		for _, col := range r.Columns {
			if !r.expected(t, col) {
				continue
			}
			if c := r.Cells[t][col]; c == nil || c.Err != "" || (len(c.Values) == 0 && c.Note == "") {
				n++
			}
		}
	}
	return n
}

// measure runs the rounds, then the splice check and the optional scale tests.
func (e *env) measure(ctx context.Context) (*results, error) {
	start := time.Now()
	steal0, stealErr := stealSeconds()
	cols := e.columns()
	res := &results{NA: map[string]string{}, Cells: map[string]map[string]*cell{}, Rounds: e.o.rounds}
	for _, g := range []struct {
		group string
		tests []string
	}{
		{"download", []string{tDownload, tDownCPU}}, {"upload", []string{tUpload, tUpCPU}},
		{"mirror", []string{tMirror1, tMirror8, tMirrorCPU}}, {"transfer", []string{tTransfer, tExchange}}, {"sessions", []string{tSessions}}, {"splice", []string{tSplice}},
	} {
		if e.o.tests[g.group] {
			res.Tests = append(res.Tests, g.tests...)
		}
	}
	res.Tests = append(res.Tests, tDrops)
	if e.o.scale {
		res.Tests = append(res.Tests, tScale, tIdle, tPinholes)
	}
	var live []column
	for _, c := range cols {
		res.Columns = append(res.Columns, c.Name)
		if c.NA != "" {
			res.NA[c.Name] = c.NA
			continue
		}
		live = append(live, c)
	}
	for round := range e.o.rounds {
		for i := range live {
			c := live[(i+round)%len(live)]
			fmt.Fprintf(os.Stderr, "bench: round %d/%d: %s\n", round+1, e.o.rounds, c.Name)
			if err := e.roundFor(ctx, res, c, round); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range live {
		if c.args == nil || !e.o.tests["splice"] {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: splice check: %s\n", c.Name)
		if err := e.spliceCheck(ctx, res, c); err != nil {
			res.fail(tSplice, c.Name, err)
		}
	}
	if e.o.scale {
		for _, c := range live {
			fmt.Fprintf(os.Stderr, "bench: %d concurrent sessions: %s\n", e.sz.scaleSessions, c.Name)
			e.withGate(ctx, res, tScale, c, func(g *gate) error {
				err := e.sessions(ctx, res, tScale, 0, c, e.sz.scaleSessions, 5*time.Minute)
				if c.args != nil && res.at(tScale, c.Name).Failed > 0 {
					res.at(tScale, c.Name).Note = e.dataPortDrops(ctx)
				}
				return err
			})
		}
		fmt.Fprintf(os.Stderr, "bench: %d idle sessions\n", e.sz.idleSessions)
		rev := e.column(colReverse)
		if err := e.idle(ctx, res, rev); err != nil {
			res.fail(tIdle, rev.Name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: pinholes under 1,000 concurrent plans (%d plans)\n", e.sz.pinholePlans)
		if err := e.pinholes(ctx, res, rev); err != nil {
			res.fail(tPinholes, rev.Name, err)
		}
	}
	res.compare()
	res.Seconds = time.Since(start).Seconds()
	res.Steal = -1
	if steal1, err := stealSeconds(); err == nil && stealErr == nil {
		res.Steal = steal1 - steal0
	}
	return res, ctx.Err()
}

// compare sets every cell's ratios to routing's figure of the same round.
func (r *results) compare() {
	for _, t := range r.Tests {
		base := r.Cells[t]["routing"]
		if base == nil {
			continue
		}
		for col, c := range r.Cells[t] {
			if col == "routing" {
				continue
			}
			c.Ratios = nil
			for i, v := range c.Values {
				if j := slices.Index(base.Rounds, c.Rounds[i]); j >= 0 && base.Values[j] > 0 {
					c.Ratios = append(c.Ratios, v/base.Values[j])
				}
			}
		}
	}
}

// forgetConnections empties the gateway's conntrack table before a column or variant, as if
// each had a machine of its own: the redirect column's data connections, client:E ->
// server:P diverted to gateway:P, leave conntrack entries in TIME_WAIT for 120 s whose reply
// tuple gateway:P -> client:E is that of a direct connection client:E -> gateway:P; when the
// client picks the same port E for one (about one data connection in 2,000-5,000), the kernel
// drops its SYN after ftpgate's pinhole admitted it (no nat chain remaps it), until the old
// entry expires.
func (e *env) forgetConnections(ctx context.Context) error {
	_, err := runIn(ctx, e.tp.Gateway, "conntrack", "--flush")
	return err
}

// dropRuleset deletes the table a column's ruleset made ("table FAMILY NAME {" is its
// first line), so that the next column starts without it.
func (e *env) dropRuleset(ruleset string) error {
	first, _, _ := strings.Cut(ruleset, "\n")
	f := strings.Fields(first)
	if len(f) < 3 || f[0] != "table" {
		return fmt.Errorf("a column's ruleset starts with %q, not its table", first)
	}
	_, err := runIn(context.Background(), e.tp.Gateway, "nft", "delete", "table", f[1], f[2])
	return err
}

// withGate runs fn with c's ftpgate or bare relay running (none for routing and the kernel
// helper) and records a start failure under test, on a gateway that has forgotten the columns
// before (forgetConnections).
func (e *env) withGate(ctx context.Context, res *results, test string, c column, fn func(*gate) error) {
	if err := e.forgetConnections(ctx); err != nil {
		res.fail(test, c.Name, fmt.Errorf("forget the earlier columns' connections: %w", err))
		return
	}
	if c.ruleset != "" {
		f := filepath.Join(e.work, "column.nft")
		if err := os.WriteFile(f, []byte(c.ruleset), 0o644); err != nil {
			res.fail(test, c.Name, err)
			return
		}
		if _, err := runIn(ctx, e.tp.Gateway, "nft", "-f", f); err != nil {
			res.fail(test, c.Name, fmt.Errorf("the column's ruleset: %w", err))
			return
		}
		defer func() {
			if err := e.dropRuleset(c.ruleset); err != nil {
				res.fail(test, c.Name, err)
			}
		}()
	}
	var g *gate
	var err error
	switch {
	case c.args != nil:
		g, err = startGate(ctx, e.tp, e.ftpgate, c.args, filepath.Join(e.work, "ftpgate.log"))
	case c.relay:
		g, err = startRelay(ctx, e.tp, e.self, c.target, serverPassive.String())
	}
	if err != nil {
		res.fail(test, c.Name, err)
		return
	}
	if g != nil {
		defer g.stop()
	}
	if err := fn(g); err != nil {
		res.fail(test, c.Name, err)
	}
}

// roundFor runs every per-round test through column c with one ftpgate process.
func (e *env) roundFor(ctx context.Context, res *results, c column, round int) error {
	e.withGate(ctx, res, tDrops, c, func(g *gate) error {
		cpu := func() float64 {
			if g == nil {
				return 0
			}
			v, _ := g.cpu()
			return v
		}
		for _, x := range []struct {
			group, test, cpuTest string
			size                 int64
			run                  func() (float64, error)
		}{
			{"download", tDownload, tDownCPU, e.sz.big, func() (float64, error) { return e.download(ctx, c.target) }},
			{"upload", tUpload, tUpCPU, e.sz.upload, func() (float64, error) { return e.uploadOnce(ctx, c.target, round) }},
		} {
			if !e.o.tests[x.group] {
				continue
			}
			c0 := cpu()
			mbps, err := x.run()
			if err != nil {
				res.fail(x.test, c.Name, err)
				continue
			}
			res.add(x.test, c.Name, round, mbps)
			if g != nil {
				res.add(x.cpuTest, c.Name, round, (cpu()-c0)/(float64(x.size)/(1<<30)))
			}
		}
		for _, m := range []struct {
			test     string
			parallel int
		}{{tMirror1, 1}, {tMirror8, 8}} {
			if !e.o.tests["mirror"] {
				break
			}
			// A mirror takes well under a second here, so one run is at the mercy of
			// a moment's contention: the round's figure is the median of a few runs
			// back to back, and the CPU per file is over all of them.
			c0 := cpu()
			var runs []float64
			var err error
			for range e.sz.mirrorRuns {
				var secs float64
				if secs, err = e.mirror(ctx, c.target, m.parallel); err != nil {
					break
				}
				runs = append(runs, secs)
			}
			if err != nil {
				res.fail(m.test, c.Name, err)
				continue
			}
			res.add(m.test, c.Name, round, median(runs))
			if g != nil && m.parallel == 1 {
				res.add(tMirrorCPU, c.Name, round, (cpu()-c0)/float64(len(runs)*e.sz.smallFiles)*1e6)
			}
		}
		if e.o.tests["transfer"] {
			if st, err := e.steps(ctx, c.target, false); err != nil {
				res.fail(tTransfer, c.Name, err)
				res.fail(tExchange, c.Name, err)
			} else {
				res.add(tTransfer, c.Name, round, float64(st["transfer total"][0])/1000)
				res.add(tExchange, c.Name, round, float64(st[stepExchange][0]))
			}
		}
		if e.o.tests["sessions"] {
			if err := e.sessions(ctx, res, tSessions, round, c, e.sz.sessions, 2*time.Minute); err != nil {
				res.fail(tSessions, c.Name, err)
			}
		}
		if c.args != nil {
			n, err := e.dropCounter(ctx)
			if err != nil {
				return err
			}
			res.add(tDrops, c.Name, round, float64(n))
			if n > 0 {
				e.keepLog(c, round)
			}
		}
		return nil
	})
	return ctx.Err()
}

func ftpURL(host, path string) string { return "ftp://" + host + "/" + path }

// curlRate runs curl in the client namespace and returns bytes and seconds from its -w.
func (e *env) curlRate(ctx context.Context, what string, want int64, args ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := runIn(ctx, e.tp.Client, "curl", append([]string{"-sS", "--max-time", "280",
		"--user", e2eUser + ":" + e2ePassword}, args...)...)
	if err != nil {
		return 0, err
	}
	var size int64
	var secs float64
	if _, err := fmt.Sscan(string(out), &size, &secs); err != nil {
		return 0, fmt.Errorf("curl -w output %q: %w", out, err)
	}
	if size != want || secs <= 0 {
		return 0, fmt.Errorf("%s: %d bytes in %.3fs, want %d bytes", what, size, secs, want)
	}
	return float64(size) / secs / 1e6, nil
}

// download fetches the big file (passive, EPSV) to /dev/null and returns MB/s.
func (e *env) download(ctx context.Context, host string) (float64, error) {
	return e.curlRate(ctx, "download", e.sz.big, "-o", "/dev/null", "-w", "%{size_download} %{time_total}", ftpURL(host, bigName))
}

// uploadOnce stores the upload file and removes it from the server again.
func (e *env) uploadOnce(ctx context.Context, host string, round int) (float64, error) {
	name := fmt.Sprintf(upName, round)
	defer os.Remove(filepath.Join(e.root, name))
	return e.curlRate(ctx, "upload", e.sz.upload, "-T", e.upload, "-w", "%{size_upload} %{time_total}", ftpURL(host, name))
}

// mirror has lftp mirror the small files with parallel transfers and returns the wall-clock
// seconds of the whole lftp run, after checking that every file arrived.
func (e *env) mirror(ctx context.Context, host string, parallel int) (float64, error) {
	dst, err := os.MkdirTemp(e.work, "mirror-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dst)
	script := strings.Join([]string{
		"set cmd:fail-exit yes", "set ftp:ssl-allow no", "set net:max-retries 1", "set net:timeout 30",
		// EPSV, as curl and the Go clients use: its reply names only a port, so that the
		// bare relay's column relays the data connections too.
		"set ftp:passive-mode yes", "set ftp:prefer-epsv yes",
		fmt.Sprintf("open -u %s,%s ftp://%s", e2eUser, e2ePassword, host),
		fmt.Sprintf("mirror --parallel=%d /%s %s", parallel, smallDir, dst),
	}, "; ")
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	if _, err := runIn(ctx, e.tp.Client, "lftp", "-c", script); err != nil {
		return 0, err
	}
	secs := time.Since(t0).Seconds()
	ents, err := os.ReadDir(dst)
	if err != nil {
		return 0, err
	}
	if len(ents) != e.sz.smallFiles {
		return 0, fmt.Errorf("mirror --parallel=%d: %d files arrived, want %d", parallel, len(ents), e.sz.smallFiles)
	}
	return secs, nil
}

// sessions runs the Go load generator with n concurrent sessions in the client namespace.
func (e *env) sessions(ctx context.Context, res *results, test string, round int, c column, n int, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound+30*time.Second)
	defer cancel()
	out, err := runIn(ctx, e.tp.Client, e.self, "loadgen", "--addr", c.target+":21",
		"--sessions", strconv.Itoa(n), "--timeout", bound.String())
	if err != nil {
		return err
	}
	var lr loadResult
	if err := json.Unmarshal(out, &lr); err != nil {
		return fmt.Errorf("loadgen output %q: %w", out, err)
	}
	res.add(test, c.Name, round, lr.Seconds)
	cl := res.at(test, c.Name)
	cl.Failed += lr.Failed
	if lr.Failed > 0 {
		fmt.Fprintf(os.Stderr, "bench: %s via %s: %d of %d sessions failed, e.g. %s\n", test, c.Name, lr.Failed, n, strings.Join(lr.Errors, "; "))
	}
	return nil
}

// dataPortDrops reports the counter of the own table's rule that drops data-port packets
// without a pinhole: a failed data connection that shows there met no pinhole.
func (e *env) dataPortDrops(ctx context.Context) string {
	n, err := e.dropCounter(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("data-port packets dropped without a pinhole: %d", n)
}

// keepLog copies ftpgate's log of a round with dropped data-port packets out of the work
// directory (which is removed) and says where.
func (e *env) keepLog(c column, round int) {
	dst := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%s-round%d.log", e.tp.Prefix, strings.ReplaceAll(c.Name, " ", "-"), round+1))
	b, err := os.ReadFile(filepath.Join(e.work, "ftpgate.log"))
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: keep ftpgate log: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "bench: %s dropped data-port packets in round %d; its log: %s\n", c.Name, round+1, dst)
}

// dropCounter reads the packets counter of the own table's data-port drop rule.
func (e *env) dropCounter(ctx context.Context) (int64, error) {
	out, err := runIn(ctx, e.tp.Gateway, "nft", "list", "chain", "inet", "ftpgate", "input")
	if err != nil {
		return 0, fmt.Errorf("no drop counter: %s", firstLine(err.Error()))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "counter packets"); i >= 0 && strings.Contains(line, "drop") {
			if f := strings.Fields(line[i:]); len(f) >= 3 {
				return strconv.ParseInt(f[2], 10, 64)
			}
		}
	}
	return 0, errors.New("no drop counter in table inet ftpgate")
}

// spliceCheck attaches strace -f -c to c's ftpgate during one download and records the
// splice and read/write counts.
func (e *env) spliceCheck(ctx context.Context, res *results, c column) error {
	g, err := startGate(ctx, e.tp, e.ftpgate, c.args, filepath.Join(e.work, "ftpgate.log"))
	if err != nil {
		return err
	}
	defer g.stop()
	out := filepath.Join(e.work, "strace-c.txt")
	st, err := attachStrace(ctx, g.proc.pid(), out, "-c", "-e", "trace=splice,read,write,readv,writev,sendfile,recvfrom,sendto")
	if err != nil {
		return err
	}
	_, derr := e.download(ctx, c.target)
	text, err := st.finish(out)
	if derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	calls := straceCounts(text)
	rw := calls["read"] + calls["write"] + calls["readv"] + calls["writev"] + calls["recvfrom"] + calls["sendto"]
	res.at(tSplice, c.Name).Note = fmt.Sprintf("%d splice, %d read/write", calls["splice"], rw)
	// The splice relay must move the bytes in the kernel: the read/write calls left are the
	// control channel's, a few dozen, where a copy in user space (32 KiB at a time) makes
	// one of each per 32 KiB. The kernel column's data never reaches ftpgate: no splice, and
	// the control channel's read/write calls only.
	copied := int64(rw) > e.sz.big/(64<<10)
	if slices.Contains(c.args, "kernel") {
		if calls["splice"] != 0 || copied {
			return fmt.Errorf("the data went through ftpgate: %d splice, %d read/write calls for one download", calls["splice"], rw)
		}
		return nil
	}
	if calls["splice"] == 0 || copied {
		return fmt.Errorf("the data was copied in user space: %d splice, %d read/write calls for one download", calls["splice"], rw)
	}
	return nil
}

// tracer is a strace attached to a process.
type tracer struct{ p *process }

// attachStrace attaches strace -f (with args) to pid, writing to out, and returns once it
// holds every thread.
func attachStrace(ctx context.Context, pid int, out string, args ...string) (*tracer, error) {
	cmd := exec.CommandContext(ctx, "strace", append(append([]string{"-f", "-o", out}, args...), "-p", strconv.Itoa(pid))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = w
	p, err := startProcess("strace", cmd)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	lines := bufio.NewScanner(r)
	timer := time.AfterFunc(10*time.Second, func() { _ = p.cmd.Process.Signal(syscall.SIGINT) })
	attached := false
	for !attached && lines.Scan() {
		attached = strings.Contains(lines.Text(), "attached")
	}
	if !timer.Stop() || !attached {
		p.stop(time.Second)
		r.Close()
		return nil, fmt.Errorf("strace did not attach to pid %d within 10s", pid)
	}
	go func() { _, _ = io.Copy(io.Discard, r); r.Close() }()
	return &tracer{p: p}, nil
}

// finish detaches strace (SIGINT) and returns what it wrote.
func (t *tracer) finish(out string) (string, error) {
	_ = t.p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-t.p.done:
	case <-time.After(15 * time.Second):
		t.p.stop(time.Second)
		return "", fmt.Errorf("strace did not exit after SIGINT")
	}
	b, err := os.ReadFile(out)
	return string(b), err
}

// straceCounts parses strace -c's table into calls per syscall.
func straceCounts(text string) map[string]int64 {
	calls := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		// % time, seconds, usecs/call, calls, [errors], syscall
		if len(f) < 5 || strings.HasPrefix(line, "%") || strings.HasPrefix(line, "-") {
			continue
		}
		if n, err := strconv.ParseInt(f[3], 10, 64); err == nil && f[len(f)-1] != "total" {
			calls[f[len(f)-1]] = n
		}
	}
	return calls
}

// idle holds many logged-in sessions through c's ftpgate (reverse, toward a minimal Go
// upstream in the server namespace) and records ftpgate's RSS per session.
func (e *env) idle(ctx context.Context, res *results, c column) error {
	srvCmd := nsrun.Command(ctx, e.tp.Server, e.self, "idle-server", "--addr", fmt.Sprintf("%s:%d", serverV4, idlePort))
	srv, err := startProcess("idle-server", srvCmd)
	if err != nil {
		return err
	}
	defer srv.stop(time.Second)
	if err := waitBanner(ctx, e.tp.Gateway, fmt.Sprintf("%s:%d", serverV4, idlePort), srv); err != nil {
		return err
	}
	args := append([]string{}, c.args...)
	for i, a := range args {
		if a == "--upstream" {
			args[i+1] = fmt.Sprintf("%s:%d", serverV4, idlePort)
		}
	}
	g, err := startGate(ctx, e.tp, e.ftpgate, args, filepath.Join(e.work, "ftpgate-idle.log"))
	if err != nil {
		return err
	}
	defer g.stop()
	time.Sleep(200 * time.Millisecond)
	rss0, err := procStatus(g.proc.pid(), "VmRSS")
	if err != nil {
		return err
	}
	n := e.sz.idleSessions
	lg := nsrun.Command(ctx, e.tp.Client, e.self, "loadgen", "--idle", "--addr", gwLANV4+":21",
		"--sessions", strconv.Itoa(n), "--timeout", "5m")
	stdin, err := lg.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := lg.StdoutPipe()
	if err != nil {
		return err
	}
	lg.Stderr = os.Stderr
	lp, err := startProcess("loadgen", lg)
	if err != nil {
		return err
	}
	defer lp.stop(10 * time.Second)
	defer stdin.Close()
	var ok, failed int
	readyc := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil {
			_, err = fmt.Sscanf(line, "ready %d %d", &ok, &failed)
		}
		readyc <- err
	}()
	select {
	case err := <-readyc:
		if err != nil {
			return fmt.Errorf("idle loadgen: %w", err)
		}
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("idle loadgen: %d sessions not logged in within 5m", n)
	}
	time.Sleep(time.Second) // let ftpgate settle (its goroutines park, the GC runs)
	rss, err := procStatus(g.proc.pid(), "VmRSS")
	if err != nil {
		return err
	}
	threads, _ := procStatus(g.proc.pid(), "Threads")
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.proc.pid()))
	cl := res.at(tIdle, c.Name)
	cl.Failed = failed
	if ok > 0 {
		perSession := float64(rss-rss0) / float64(ok)
		res.add(tIdle, c.Name, 0, perSession)
		cl.Note = fmt.Sprintf("%d logged in, %d failed: RSS %d → %d MiB, %.1f KiB per session, %d fds, %d threads",
			ok, failed, rss0>>10, rss>>10, perSession, len(fds), threads)
	}
	return nil
}
