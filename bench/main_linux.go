//go:build linux

// Command bench measures ftpgate against plain routing in one run: it builds its own network
// namespaces (client, gateway, server; 198.18.0.0/15 only), starts vsftpd in the server
// namespace, builds ftpgate, and runs curl, lftp and a Go load generator through each column
// in interleaved rounds with the order rotated. It prints medians and ranges as ratios to
// routing measured in the same rounds and writes BENCHMARKS.md. See issue 15.
//
//	go run ./bench            # the full benchmark (under 15 minutes), writes BENCHMARKS.md
//	go run ./bench --quick    # one round, small sizes: a smoke test (bench_linux_test.go)
//	go run ./bench --scale    # adds 1,000 concurrent sessions, 8,000 idle sessions and pinholes under load
//	go run ./bench --profile DIR  # pprof and strace of ftpgate during small-file transfers
//
// It never touches the root namespace's firewall or routes; the namespaces and everything
// started in them are removed at the end, also on failure or Ctrl-C.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "loadgen":
			os.Exit(loadgenMain(os.Args[2:]))
		case "idle-server":
			os.Exit(idleServerMain(os.Args[2:]))
		case "steps":
			os.Exit(stepsMain(os.Args[2:]))
		case "relay":
			os.Exit(relayMain(os.Args[2:]))
		}
	}
	os.Exit(benchMain(os.Args[1:]))
}

// options is the command line.
type options struct {
	quick    bool
	scale    bool
	rounds   int
	out      string
	jsonOut  string
	ftpgate  string
	profile  string
	sessions int
	logLevel string // ftpgate's --log-level
	timeout  time.Duration
	tests    map[string]bool // the groups to run: download, upload, mirror, sessions, splice
	args     []string        // as given, for the report
}

// testGroups are the per-round test groups --tests can select.
var testGroups = []string{"download", "upload", "mirror", "transfer", "sessions", "splice"}

// sizes of one run.
type sizes struct {
	big, upload      int64
	smallFiles       int
	mirrorRuns       int // lftp mirrors per round and column, of which the median counts
	sessions         int
	scaleSessions    int
	idleSessions     int
	pinholePlans     int // plans in all of the pinhole load test (1,000 at a time)
	profileTransfers int
}

func (o options) sizes() sizes {
	sz := sizes{big: 1 << 30, upload: 256 << 20, smallFiles: 500, mirrorRuns: 3, sessions: 100, scaleSessions: 1000, idleSessions: 8000, profileTransfers: 500, pinholePlans: 20000}
	if o.quick {
		sz = sizes{big: 32 << 20, upload: 8 << 20, smallFiles: 40, mirrorRuns: 1, sessions: 10, scaleSessions: 50, idleSessions: 200, profileTransfers: 40, pinholePlans: 2000}
	}
	if o.sessions > 0 {
		sz.sessions = o.sessions
	}
	return sz
}

func benchMain(args []string) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "one round, small sizes (a smoke test)")
	fs.BoolVar(&o.scale, "scale", false, "also run the scale tests (1,000 concurrent sessions, 8,000 idle sessions, pinholes under 1,000 concurrent plans)")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (--quick: 1)")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "report file to write")
	fs.StringVar(&o.jsonOut, "json", "", "also write the raw results as JSON to this file")
	fs.StringVar(&o.ftpgate, "ftpgate", "", "ftpgate binary to measure (default: go build ./cmd/ftpgate into a temp dir)")
	fs.StringVar(&o.profile, "profile", "", "instead of the rounds: profile ftpgate during small-file transfers, write pprof and strace files to this dir")
	fs.DurationVar(&o.timeout, "timeout", 14*time.Minute, "bound of the whole run")
	tests := fs.String("tests", strings.Join(testGroups, ","), "test groups to run, comma-separated")
	fs.StringVar(&o.logLevel, "ftpgate-log-level", "info", "ftpgate's --log-level (logs of rounds with dropped data-port packets are kept)")
	sessions := fs.Int("sessions", 0, "concurrent sessions of the sessions test (default 100; --quick 10)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.tests = map[string]bool{}
	for _, t := range strings.Split(*tests, ",") {
		if !slices.Contains(testGroups, t) {
			fmt.Fprintf(os.Stderr, "bench: unknown test group %q (want some of %s)\n", t, strings.Join(testGroups, ","))
			return 2
		}
		o.tests[t] = true
	}
	if *sessions < 0 || *sessions > 5000 {
		fmt.Fprintln(os.Stderr, "bench: --sessions must be 1..5000")
		return 2
	}
	o.sessions = *sessions
	if o.quick {
		o.rounds = 1
	}
	if o.rounds < 1 || o.rounds > 20 {
		fmt.Fprintln(os.Stderr, "bench: --rounds must be 1..20")
		return 2
	}
	o.args = args
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces)")
		return 1
	}
	for _, p := range []string{"ip", "curl", "lftp", "strace", vsftpdBin} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s not found (run scripts/install-test-deps.sh)\n", p)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

// env is one run's topology, server and binaries.
type env struct {
	o        options
	sz       sizes
	tp       *topology
	work     string // on tmpfs: served files, uploads, mirrors, logs
	root     string // served directory
	self     string // this binary, for the namespace subcommands
	ftpgate  string
	features string // `ftpgate run -h`
	upload   string // the client's upload source
}

func run(ctx context.Context, o options) (err error) {
	e := &env{o: o, sz: o.sizes()}
	if e.self, err = os.Executable(); err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	bindir, err := os.MkdirTemp("", "ftpgate-bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bindir)
	if e.ftpgate = o.ftpgate; e.ftpgate == "" {
		if e.ftpgate, err = buildFtpgate(ctx, bindir); err != nil {
			return err
		}
	}
	h, _ := exec.CommandContext(ctx, e.ftpgate, "run", "-h").CombinedOutput()
	e.features = string(h)
	if !strings.Contains(e.features, "-upstream") {
		return fmt.Errorf("%s run -h does not list its flags:\n%s", e.ftpgate, tailString(e.features, 5))
	}
	if e.work, err = os.MkdirTemp("/dev/shm", "ftpgate-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.work)
	if err := os.Chmod(e.work, 0o755); err != nil { // the FTP user must reach the served dir
		return err
	}
	e.root = filepath.Join(e.work, "srv")
	if err := fillServed(e.root, e.sz.big, e.sz.smallFiles); err != nil {
		return fmt.Errorf("served files: %w", err)
	}
	e.upload = filepath.Join(e.work, "upload.bin")
	if err := sparseFile(e.upload, e.sz.upload); err != nil {
		return err
	}

	e.tp, err = newTopology(ctx)
	defer func() {
		if e.tp != nil {
			err = errors.Join(err, e.tp.remove())
		}
	}()
	if err != nil {
		return err
	}
	srv, err := startVsftpd(ctx, e.tp, e.work, e.root)
	if err != nil {
		return err
	}
	defer srv.stop(5 * time.Second)

	if o.profile != "" {
		return e.profileRun(ctx, o.profile)
	}
	res, err := e.measure(ctx)
	if err != nil {
		return err
	}
	report := e.report(res)
	fmt.Print(report.text)
	if err := os.WriteFile(o.out, []byte(report.markdown), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", o.out)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.jsonOut, err)
		}
	}
	if n := res.failures(); n > 0 {
		return fmt.Errorf("%d measurements failed (see the table)", n)
	}
	return nil
}

// moduleDir is the root of the ftpgate module the bench runs from.
func moduleDir(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		return "", fmt.Errorf("go env GOMOD: %v (run from the ftpgate module)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod))), nil
}

// buildFtpgate builds ./cmd/ftpgate of this module into dir.
func buildFtpgate(ctx context.Context, dir string) (string, error) {
	mod, err := moduleDir(ctx)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "ftpgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/ftpgate")
	cmd.Dir = mod
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ftpgate: %w\n%s", err, b)
	}
	return out, nil
}

// column is one way the client reaches the server.
type column struct {
	Name    string
	args    []string // ftpgate's flags; nil for routing, the kernel helper and the bare relay
	relay   bool     // the bare relay (bench relay) runs on the gateway
	ruleset string   // an nft ruleset the gateway holds while the column runs
	target  string   // where the client connects
	NA      string   // why the column is not measured, if it is not
}

// column returns the column named name; the ftpgate columns are colReverse, colRedirect
// and colKernel.
func (e *env) column(name string) column {
	for _, c := range e.columns() {
		if c.Name == name {
			return c
		}
	}
	panic("bench: no column " + name)
}

// The ftpgate columns' names.
const (
	colReverse  = "ftpgate reverse"
	colRedirect = "ftpgate redirect"
	colKernel   = "ftpgate --data-path kernel"
)

// colHelper is the column of the kernel's own FTP helper: the gateway DNATs the client's
// control connection to the server and SNATs it, and nf_conntrack_ftp with nf_nat_ftp
// follows each data connection the same way, in the kernel (the issue's "kernel FTP
// helper"). Neither it nor routing runs ftpgate.
const colHelper = "kernel FTP helper"

// colRelay is the bare relay's column (bench relay with --ports): two io.Copy calls per
// connection, a splice each way, for the control port and every port of vsftpd's passive
// range, on one P as ftpgate's default is here. No FTP, no firewall, no logging: the least a
// user-space relay in Go pays on this machine, per byte and per connection. Every client of
// the benchmark asks for EPSV, whose reply names only a port, so their data connections come
// to the relay too.
const colRelay = "bare Go relay"

// relayRuleset is colRelay's table in the gateway: it forwards nothing between the client
// and the server, so a data connection that went around the relay would fail, not be
// measured as the relay's.
var relayRuleset = `table inet bench_relay {
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
`

// helperRuleset is colHelper's table in the gateway.
var helperRuleset = fmt.Sprintf(`table inet bench_ftphelper {
	ct helper ftp {
		type "ftp" protocol tcp
		l3proto inet
	}
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s tcp dport 21 dnat ip to %[2]s:21
	}
	chain helpers {
		type filter hook prerouting priority filter; policy accept;
		ip daddr %[2]s tcp dport 21 ct helper set "ftp"
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[3]s ip daddr %[2]s snat ip to %[4]s
	}
}
`, gwLANV4, serverV4, clientV4, gwWANV4)

func (e *env) columns() []column {
	base := []string{"run", "--admin-listen", adminAddr, "--log-format", "json", "--log-level", e.o.logLevel,
		"--passive-ports", "40000-40999", "--idle-timeout", "10m",
		// One load generator is one client address: the session limits (a
		// defence against one host) are off, as the comparison is of speed.
		"--max-sessions", "-1", "--max-sessions-per-client", "-1", "--max-login-failures", "-1"}
	reverse := append(append([]string{}, base...), "--listen", gwLANV4+":21", "--upstream", serverV4+":21")
	cols := []column{
		{Name: "routing", target: serverV4},
		{Name: colHelper, ruleset: helperRuleset, target: gwLANV4},
		{Name: colRelay, relay: true, ruleset: relayRuleset, target: gwLANV4},
		{Name: colReverse, args: reverse, target: gwLANV4},
		{Name: colRedirect, args: append(append([]string{}, base...), "--mode", "redirect",
			"--intercept-interfaces", lanIf), target: serverV4},
		{Name: colKernel, args: append(append([]string{}, reverse...), "--data-path", "kernel"), target: gwLANV4},
	}
	if !e.hasFlag("data-path") {
		cols[len(cols)-1].NA = "n/a (not implemented)" // colKernel
	}
	return cols
}

// hasFlag reports whether ftpgate run -h lists --name.
func (e *env) hasFlag(name string) bool {
	sc := bufio.NewScanner(strings.NewReader(e.features))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && (f[0] == "-"+name || f[0] == "--"+name) {
			return true
		}
	}
	return false
}
