package demo

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// What the lab serves and moves.
const (
	downloadName = "demo.bin"
	uploadName   = "upload.bin"
	downloadSize = 32 << 20
	uploadSize   = 16 << 20
	pinholeTTL   = "10s"
	dataPorts    = "40000-40099" // ftpgate's
	serverPorts  = "30000-30099" // the embedded server's passive ports
	adminAddr    = "127.0.0.1:9121"
	blockedAfter = 3 * time.Second // the client's data timeout in the blocked step
)

// Shapes the demo shows.
const (
	shapeEdge    = "redirect" // transparent edge gateway
	shapeReverse = "reverse"  // DMZ relay
)

const usageText = `Usage: ftpgate demo [--mode redirect|reverse] [--keep] [--clean]

Builds a throw-away lab of three network namespaces (client, gateway, server),
runs an embedded FTP server, ftpgate on the gateway behind a default-drop
forward policy, and a Go FTP client, and narrates what happens. Needs root;
installs nothing. It removes the lab on exit, on Ctrl-C, and on the next
start after a kill -9.

`

// Main is `ftpgate demo`.
func Main(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	mode := fs.String("mode", shapeEdge, "redirect (transparent edge gateway) or reverse (DMZ relay: the client connects to the gateway)")
	keep := fs.Bool("keep", false, "leave the lab up and print commands to try by hand")
	clean := fs.Bool("clean", false, "only remove labs of earlier runs (crashed, interrupted, or kept with --keep)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ftpgate demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *mode != shapeEdge && *mode != shapeReverse {
		fmt.Fprintf(os.Stderr, "ftpgate demo: --mode %q: want redirect or reverse\n", *mode)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "ftpgate demo: needs root (it creates network namespaces and nftables tables); run it as root")
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate demo: own binary: %v\n", err)
		return 1
	}
	n := &narrator{w: os.Stdout}
	if err := cleanLeftovers(*clean, n.note); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate demo: remove leftovers: %v\n", err)
		return 1
	}
	if *clean {
		n.note("no demo lab left")
		return 0
	}

	// SIGPIPE too: output piped into a command that ended (| head) stops the
	// demo with its cleanup, instead of killing it outright.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	d := &demo{exe: exe, shape: *mode, keep: *keep, n: n}
	err = d.run(ctx)
	kept := d.keep && err == nil && ctx.Err() == nil
	if !kept {
		d.teardown()
	}
	switch {
	case ctx.Err() != nil:
		n.line("")
		n.line("interrupted: lab %s removed", d.state.Prefix)
		return 130
	case err != nil:
		fmt.Fprintf(os.Stderr, "ftpgate demo: %v\n", err)
		return 1
	}
	if kept {
		d.printKeep()
	}
	return 0
}

// demo is one run: its lab and the processes in it.
type demo struct {
	exe   string
	shape string
	keep  bool
	n     *narrator

	explained      bool // the pinhole format was explained
	aheadExplained bool // answering ahead was explained

	state   labState
	srvDir  string
	served  string // sha256 of the download file
	server  *proc
	ftpgate *proc
	srvLog  *feed
	gateLog *feed
}

func (d *demo) ns(role string) string { return nsPath(d.state.Prefix, role) }

// controlAddr is where the client connects: the server itself (the gateway
// intercepts), or the gateway (DMZ relay).
func (d *demo) controlAddr() string {
	if d.shape == shapeReverse {
		return gatewayLAN + ":21"
	}
	return serverIP + ":21"
}

func (d *demo) run(ctx context.Context) error {
	var b [3]byte
	if _, err := crand.Read(b[:]); err != nil {
		return fmt.Errorf("random lab name: %w", err)
	}
	d.state = labState{Prefix: namePrefix + hex.EncodeToString(b[:]), Exe: d.exe}
	if st, err := procStart(os.Getpid()); err == nil {
		d.state.Owner = procInfo{Name: "demo", Pid: os.Getpid(), Start: st}
	}
	start := time.Now()
	title := "transparent edge gateway (--mode redirect)"
	if d.shape == shapeReverse {
		title = "DMZ relay (--mode reverse)"
	}
	d.n.line("ftpgate demo: %s, lab %s", title, d.state.Prefix)
	d.n.line("")
	d.n.picture(d.shape)
	d.n.line("")

	dir, err := os.MkdirTemp("", d.state.Prefix+"-")
	if err != nil {
		return fmt.Errorf("lab directory: %w", err)
	}
	d.state.Dir = dir
	if err := d.state.save(); err != nil { // from here on a kill -9 leaves a trail
		return err
	}
	if err := buildNetwork(d.state.Prefix); err != nil {
		return err
	}
	if err := installForwardPolicy(d.state.Prefix, d.shape == shapeEdge); err != nil {
		return err
	}
	policy := "ct state established,related accept; counter; policy drop"
	if d.shape == shapeEdge {
		policy = "ct state established,related accept; tcp dport 21 accept; counter; policy drop"
	}
	d.n.note("lab up in %s: namespaces %s-{client,gateway,server}, veths, routes", since(start), d.state.Prefix)
	d.n.note("gateway firewall: table inet %s, chain forward { %s }, no ct helper", demoTable, policy)

	if err := d.startServer(ctx); err != nil {
		return err
	}
	if err := d.startFtpgate(ctx); err != nil {
		return err
	}
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"passive download (PASV)", d.passiveDownload},
		{"active download (PORT)", d.activeDownload},
		{"upload (EPSV)", d.upload},
		{"the same download with ftpgate stopped", d.blockedDownload},
	}
	for i, s := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.n.line("")
		d.n.line("%d. %s", i+1, s.title)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	d.n.line("")
	if d.keep {
		if err := d.startFtpgate(ctx); err != nil {
			return err
		}
		d.state.Kept = true
		return d.state.save()
	}
	d.n.line("done in %s", since(start))
	return nil
}

// startServer writes the served file and starts the embedded server in the
// server namespace.
func (d *demo) startServer(ctx context.Context) error {
	d.srvDir = filepath.Join(d.state.Dir, "srv")
	if err := os.Mkdir(d.srvDir, 0o755); err != nil {
		return fmt.Errorf("served directory: %w", err)
	}
	sum, err := writeRandom(filepath.Join(d.srvDir, downloadName), downloadSize)
	if err != nil {
		return err
	}
	d.served = sum
	logPath := filepath.Join(d.state.Dir, serverLogs)
	out, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	defer out.Close()
	if d.srvLog, err = tailFile(logPath); err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	listen := serverIP + ":21"
	cmd := exec.Command(d.exe, ServerCommand, "--listen", listen, "--root", d.srvDir, "--passive-ports", serverPorts)
	cmd.Stdout, cmd.Stderr = out, out
	if d.server, err = d.start("server", roleServer, cmd); err != nil {
		return err
	}
	if _, ok := d.waitReady(ctx, d.srvLog, d.server, func(b []byte) bool {
		e, ok := parseEvent(b)
		return ok && e.Ev == "ready"
	}); !ok {
		return fmt.Errorf("the embedded server did not start:\n%s", tailOf(logPath))
	}
	d.n.note("server: goftp.io/server/v2 on %s (passive ports %s), serving %s, %s, sha256 %s",
		listen, serverPorts, downloadName, size(downloadSize), short(sum))
	return nil
}

// ftpgateArgs is ftpgate's command line in the gateway.
func (d *demo) ftpgateArgs() []string {
	args := []string{"run"}
	if d.shape == shapeEdge {
		args = append(args, "--mode", "redirect", "--listen", "0.0.0.0:8021", "--intercept-interfaces", lanIf)
	} else {
		args = append(args, "--listen", gatewayLAN+":21", "--upstream", serverIP+":21")
	}
	return append(args, "--passive-ports", dataPorts, "--pinhole-ttl", pinholeTTL,
		"--admin-listen", adminAddr, "--log-level", "debug", "--log-format", "json")
}

// startFtpgate starts ftpgate in the gateway namespace and waits until it
// serves.
func (d *demo) startFtpgate(ctx context.Context) error {
	logPath := filepath.Join(d.state.Dir, ftpgateLogs)
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ftpgate log: %w", err)
	}
	defer out.Close()
	if d.gateLog != nil {
		d.gateLog.stop()
	}
	if d.gateLog, err = tailFile(logPath); err != nil {
		return fmt.Errorf("ftpgate log: %w", err)
	}
	args := d.ftpgateArgs()
	cmd := exec.Command(d.exe, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if d.ftpgate, err = d.start("ftpgate", roleGateway, cmd); err != nil {
		return err
	}
	if _, ok := d.waitReady(ctx, d.gateLog, d.ftpgate, isMsg("ftpgate started")); !ok {
		return fmt.Errorf("ftpgate did not start:\n%s", tailOf(logPath))
	}
	d.n.note("gateway: ftpgate %s  (pid %d, log %s)", strings.Join(args, " "), d.ftpgate.cmd.Process.Pid, logPath)
	what := "listens on " + gatewayLAN + ":21 and relays to " + serverIP + ":21"
	if d.shape == shapeEdge {
		what = "redirects tcp/21 arriving on " + lanIf + " to itself (port 8021)"
	}
	d.n.note("ftpgate: table inet ftpgate (owned: it dies with the process) keeps ports %s closed but for pinholes; it %s", dataPorts, what)
	return nil
}

// start starts cmd in the namespace of role and records it for a later
// cleanup. With --keep, the kernel must not kill it when the demo exits.
func (d *demo) start(name, role string, cmd *exec.Cmd) (*proc, error) {
	p, err := startIn(name, d.ns(role), cmd, !d.keep)
	if err != nil {
		return nil, err
	}
	if err := d.state.record(name, p.cmd.Process.Pid); err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return p, nil
}

// waitReady waits for a ready line, the process's exit, or 10 s.
func (d *demo) waitReady(ctx context.Context, f *feed, p *proc, ok func([]byte) bool) ([]byte, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil && !p.exited() {
		if l, found := f.waitFor(0, 50*time.Millisecond, ok); found {
			return l, true
		}
	}
	return nil, false
}

func (d *demo) teardown() {
	for _, p := range []*proc{d.ftpgate, d.server} {
		if p != nil {
			p.stop(time.Second)
		}
	}
	for _, f := range []*feed{d.gateLog, d.srvLog} {
		if f != nil {
			f.stop()
		}
	}
	if d.state.Prefix == "" {
		return
	}
	if _, err := removeLab(&d.state); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate demo: cleanup: %v\n", err)
	}
}

// step is what one client step saw, from all three sides.
type step struct {
	client []event
	server []event
	gate   []logLine
	err    error // the client's failure, if any
}

// runStep runs one client step and collects what the server and ftpgate
// reported meanwhile. It waits (bounded) for ftpgate's transfer record so
// that every pinhole line of the step is in.
func (d *demo) runStep(ctx context.Context, args ...string) (step, error) {
	var s step
	srvMark, gateMark := d.srvLog.mark(), 0
	gateRunning := d.ftpgate != nil && !d.ftpgate.exited()
	if gateRunning {
		gateMark = d.gateLog.mark()
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, d.exe, append([]string{ClientCommand}, args...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := startIn("client", d.ns(roleClient), cmd, true)
	if err != nil {
		return s, err
	}
	<-p.done
	if ctx.Err() != nil {
		return s, ctx.Err()
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if e, ok := parseEvent([]byte(l)); ok {
			s.client = append(s.client, e)
			if e.Ev == "error" {
				s.err = errors.New(e.Text)
			}
		}
	}
	if p.err != nil && s.err == nil {
		return s, fmt.Errorf("client: %w: %s", p.err, strings.TrimSpace(out.String()))
	}
	if gateRunning && s.err == nil {
		d.gateLog.waitFor(gateMark, 3*time.Second, isMsg("transfer"))
	}
	time.Sleep(20 * time.Millisecond) // the server's last lines
	for _, b := range d.srvLog.since(srvMark) {
		if e, ok := parseEvent(b); ok {
			s.server = append(s.server, e)
		}
	}
	if gateRunning {
		for _, b := range d.gateLog.since(gateMark) {
			if l, ok := parseLog(b); ok {
				s.gate = append(s.gate, l)
			}
		}
	}
	return s, nil
}

// show narrates a step in causal order: what the client sent, what
// ftpgate asked the server and heard, the pinholes it opened, what the
// client received, the data connection, and the pinholes closed.
func (d *demo) show(s step, clientCmd string) {
	n := d.n
	if clientCmd != "" {
		n.item("client  -> ftpgate  %s", clientCmd)
	}
	for _, e := range s.client {
		if e.Ev == "cmd" {
			n.item("client  -> ftpgate  %s %s", e.Verb, e.Arg)
		}
	}
	// A passive client in front of a passive server leg is answered ahead:
	// ftpgate tells the client its own data port without waiting for the
	// server, whose reply then comes while the client connects.
	ahead := slices.ContainsFunc(s.gate, func(l logLine) bool { return l.Msg == "passive data plan" && l.Asked != "" })
	var later []string
	last := ""
	for _, e := range s.server {
		switch {
		case e.Ev == "cmd" && slices.Contains([]string{"PASV", "EPSV", "PORT", "EPRT"}, e.Verb):
			n.item("ftpgate -> server   %s", strings.TrimSpace(e.Verb+" "+e.Arg))
			last = e.Verb
		case e.Ev == "cmd":
			last = ""
		case e.Ev == "reply" && ahead && (e.Code == 227 || e.Code == 229):
			later = append(later, fmt.Sprintf("server  -> ftpgate  %d %s", e.Code, e.Text))
			last = ""
		case e.Ev == "reply" && (e.Code == 227 || e.Code == 229 || last == "PORT" || last == "EPRT"):
			n.item("server  -> ftpgate  %d %s", e.Code, e.Text)
			last = ""
		}
	}
	opened := 0
	for _, l := range s.gate {
		if l.Msg == "pinhole open" {
			n.item("pinhole open        %s  ttl %gs", l.Pinhole, l.TTL)
			opened++
		}
	}
	if opened > 0 && !d.explained {
		d.explained = true
		if d.shape == shapeEdge {
			n.item("                    (client -> ftpgate's data port, diverted from the server's address and")
			n.item("                    the same port: the passive reply names the server, as clients expect)")
		} else {
			n.item("                    (only this client, only this port of ftpgate; for %s at most)", pinholeTTL)
		}
	}
	for _, e := range s.client {
		if e.Ev == "reply" {
			n.item("ftpgate -> client   %d %s", e.Code, e.Text)
		}
	}
	for i, l := range later {
		n.item("%s", l)
		if i == 0 && !d.aheadExplained {
			d.aheadExplained = true
			n.item("                    (the client was answered with ftpgate's own data port without waiting")
			n.item("                    for this; ftpgate connects to the server's port once it comes)")
		}
	}
	for _, e := range s.client {
		switch e.Ev {
		case "dial":
			n.item("client connects     %s", e.Addr)
		case "accept":
			n.item("client accepted     a data connection from %s", e.Addr)
			n.item("                    (ftpgate dials the client itself: no pinhole, nothing forwarded)")
		}
	}
	for _, l := range s.gate {
		if l.Msg == "pinhole closed" {
			n.item("pinhole closed      %s  (its peer connected)", l.Pinhole)
		}
	}
	for _, l := range s.gate {
		if l.Msg == "transfer" {
			n.item("ftpgate transfer    %s, client %s, server %s, reply %d", size(l.Bytes), l.ClientMode, l.ServerMode, l.Code)
		}
	}
}

func (s step) done() (event, bool) {
	for _, e := range s.client {
		if e.Ev == "done" {
			return e, true
		}
	}
	return event{}, false
}

func (d *demo) download(ctx context.Context, stepName, clientCmd string) error {
	s, err := d.runStep(ctx, "--step", stepName, "--server", d.controlAddr(), "--file", downloadName)
	if err != nil {
		return err
	}
	d.show(s, clientCmd)
	if s.err != nil {
		return fmt.Errorf("download failed: %w", s.err)
	}
	e, ok := s.done()
	if !ok {
		return errors.New("the client reported no result")
	}
	verdict := "matches the served file"
	if e.Sum != d.served {
		return fmt.Errorf("downloaded %s with sha256 %s, served %s", size(e.Bytes), e.Sum, d.served)
	}
	d.n.result("downloaded %s in %s (%s), sha256 %s %s", size(e.Bytes), secs(e.Secs), rate(e.Bytes, e.Secs), short(e.Sum), verdict)
	return nil
}

func (d *demo) passiveDownload(ctx context.Context) error {
	return d.download(ctx, stepGetPASV, "PASV")
}

func (d *demo) activeDownload(ctx context.Context) error {
	return d.download(ctx, stepGetPORT, "")
}

func (d *demo) upload(ctx context.Context) error {
	s, err := d.runStep(ctx, "--step", stepPutEPSV, "--server", d.controlAddr(), "--file", uploadName,
		"--size", fmt.Sprint(uploadSize))
	if err != nil {
		return err
	}
	d.show(s, "EPSV")
	if s.err != nil {
		return fmt.Errorf("upload failed: %w", s.err)
	}
	e, ok := s.done()
	if !ok {
		return errors.New("the client reported no result")
	}
	got, err := fileSum(filepath.Join(d.srvDir, uploadName))
	if err != nil {
		return err
	}
	if got != e.Sum {
		return fmt.Errorf("uploaded %s with sha256 %s, the server stored %s", size(e.Bytes), e.Sum, got)
	}
	d.n.result("uploaded %s in %s (%s), sha256 %s matches the file the server stored", size(e.Bytes), secs(e.Secs),
		rate(e.Bytes, e.Secs), short(e.Sum))
	return nil
}

// blockedDownload stops ftpgate and tries again: the forward policy drops
// the data connection (edge), or nothing listens on the gateway and the
// server is out of reach (DMZ relay).
func (d *demo) blockedDownload(ctx context.Context) error {
	d.ftpgate.stop(5 * time.Second)
	tables, err := gatewayTables(d.state.Prefix)
	if err != nil {
		return err
	}
	if slices.Contains(tables, "ftpgate") {
		return errors.New("table inet ftpgate is still there after ftpgate stopped")
	}
	d.n.item("ftpgate stopped; its table went with it: the gateway has only table inet %s", demoTable)
	targets := []string{d.controlAddr()}
	if d.shape == shapeReverse {
		targets = append(targets, serverIP+":21") // and the server directly
	}
	for _, target := range targets {
		before, err := droppedPackets(d.state.Prefix)
		if err != nil {
			return err
		}
		s, err := d.runStep(ctx, "--step", stepGetPASV, "--server", target, "--file", downloadName,
			"--timeout", blockedAfter.String())
		if err != nil {
			return err
		}
		after, err := droppedPackets(d.state.Prefix)
		if err != nil {
			return err
		}
		d.n.item("client  -> %s  PASV, RETR %s (no ftpgate in the path)", target, downloadName)
		for _, e := range s.server {
			if e.Ev == "reply" && e.Code == 227 {
				d.n.item("server  -> client   %d %s", e.Code, e.Text)
			}
		}
		for _, e := range s.client {
			switch e.Ev {
			case "reply":
				d.n.item("client received     %d %s  (unchanged)", e.Code, e.Text)
			case "dial":
				d.n.item("client connects     %s", e.Addr)
			}
		}
		if s.err == nil {
			return fmt.Errorf("the download through %s worked without ftpgate: the firewall is not in the way", target)
		}
		e := s.client[len(s.client)-1]
		why := "nothing listens there now"
		if after > before {
			why = fmt.Sprintf("the gateway's forward policy dropped %d packet(s)", after-before)
		}
		d.n.result("blocked after %s: %s; %s", secs(e.Secs), e.Text, why)
	}
	return nil
}

func (d *demo) printKeep() {
	p := d.state.Prefix
	cl, gw := nsName(p, roleClient), nsName(p, roleGateway)
	host := serverIP
	if d.shape == shapeReverse {
		host = gatewayLAN
	}
	n := d.n
	n.line("")
	n.line("The lab stays up (--keep); ftpgate runs again in %s (pid %d).", gw, d.ftpgate.cmd.Process.Pid)
	n.line("Try it by hand (needs ip from iproute2, and curl or lftp):")
	n.line("  ip netns exec %s curl -s ftp://%s:%s@%s/%s | sha256sum", cl, demoUser, demoPass, host, downloadName)
	n.line("  ip netns exec %s curl -s -P - ftp://%s:%s@%s/%s | sha256sum   # active mode", cl, demoUser, demoPass, host, downloadName)
	n.line("  ip netns exec %s lftp -u %s,%s -e 'set ftp:passive-mode off; ls; bye' %s", cl, demoUser, demoPass, host)
	n.line("  ip netns exec %s nft list ruleset                 # ftpgate's table and the demo's", gw)
	n.line("  ip netns exec %s curl -s http://%s/debug/vars | grep '\"ftpgate\"'   # ftpgate's counters", gw, adminAddr)
	n.line("  tail -f %s", filepath.Join(d.state.Dir, ftpgateLogs))
	n.line("ftpgate's table is owned by its process and goes with it; 'ftpgate cleanup' is for what a")
	n.line("tproxy ftpgate leaves after a crash: ip netns exec %s go run ./cmd/ftpgate cleanup", gw)
	n.line("Remove the lab: ftpgate demo --clean   (from the source tree: go run ./cmd/ftpgate demo --clean)")
}

// writeRandom writes n random bytes to path and returns their sha256.
func writeRandom(path string, n int64) (string, error) {
	random, err := randomBytes(n)
	if err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("served file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), random); err != nil {
		return "", fmt.Errorf("served file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("served file: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tailOf returns the last lines of a log file, for an error message.
func tailOf(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
