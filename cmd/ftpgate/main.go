// Command ftpgate is a firewall-aware FTP proxy and application-level gateway.
// It wires the packages together: flags and config file, logger, firewall,
// proxy, signals and the admin endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `ftpgate — firewall-aware FTP proxy

Usage:
  ftpgate run --listen ADDR --upstream HOST:PORT [flags]   relay FTP to a server
  ftpgate check --config FILE [flags]                       validate a configuration and print it with defaults filled in
  ftpgate cleanup [--firewall MODE ...]                      remove kernel state ftpgate created
  ftpgate status [--admin HOST:PORT] [--watch] [--json]      sessions, transfers and pinholes of a running ftpgate
  ftpgate demo [--mode redirect|reverse] [--keep] [--clean]  a throw-away lab that shows ftpgate at work (root)
  ftpgate version                                            print the version

Run 'ftpgate run -h' for the flags.
`

func main() {
	startSysmon(os.Args) // sysmon.go: "run" may execute itself again first
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:])
	case "check":
		return cmdCheck(args[1:], os.Stdout, os.Stderr)
	case "cleanup":
		return cmdCleanup(args[1:])
	case "status":
		return cmdStatus(args[1:], os.Stdout, os.Stderr)
	case "version", "--version", "-version":
		fmt.Println(versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	if code, ok := demoCommand(args[0], args[1:]); ok { // demo.go: the demo and its hidden re-execs
		return code
	}
	fmt.Fprintf(os.Stderr, "ftpgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("ftpgate %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func cmdRun(args []string) int {
	rf := newRunFlags()
	fc, err := rf.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	log, level, err := newLogger(fc.LogLevel, fc.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	defer log.Sync()
	if err := setProcs(fc.Procs, log); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	pcfg, nc, err := fc.settings()
	pc := &wiredConfig{Config: pcfg}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	logSysmon(fc.Sysmon, log)
	if err := checkCapabilities(capabilityNeeds(pcfg, nc, fc.AdminListen, unprivilegedPortStart()), effectiveCapabilities); err != nil {
		log.Error("insufficient privileges", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}

	// SIGTERM and SIGINT first make /readyz answer 503, then cancel ctx,
	// which starts the drain.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := &readiness{}
	defer shutdownOnSignal(cancel, ready, fc.Timeouts.ShutdownDelay, log)()

	fw, err := nat.New(ctx, nc, log.Named("nat"))
	if err != nil {
		log.Error("firewall setup failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
	ready.setFirewallInstalled(true)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := fw.Shutdown(sctx); err != nil {
			log.Error("firewall shutdown", zap.Error(err))
		}
	}()

	if err := wire(ctx, pc, nc, fc, log); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
	defer pc.stop()

	obs, err := openObservers(fc.AuditLog, fc.Xferlog, log.Named("audit"))
	if err != nil {
		log.Error("audit logs", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
	defer obs.close() // runs after Serve returned: the last records are written
	defer reopenOnSignal(obs.sinks, log)()
	pc.Observer = obs.observer()

	srv, err := proxy.New(pc.Config, fw, log.Named("proxy"))
	if err != nil {
		log.Error("invalid configuration", zap.Error(err))
		return 2
	}
	defer reloadOnSIGHUP(ctx, &reloader{args: args, srv: srv, fw: fw, nc: nc, wired: pc, fc: fc, level: level, log: log})()
	obs.metrics.watchServer(srv.Stats)
	obs.metrics.watchReadiness(ready)
	obs.metrics.configLoaded(time.Now())
	if err := srv.Listen(ctx); err != nil {
		log.Error("listen failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
	obs.metrics.watchPassivePorts(passivePortsInUse(srv))
	ready.setListening(true)
	if fc.AdminListen != "" {
		admin, err := startAdmin(fc.AdminListen, newAdminHandler(adminConfig{
			Metrics:  obs.metrics,
			Health:   firewallHealth(fw),
			Ready:    ready,
			Vars:     func() map[string]int64 { return statsVars(srv) },
			Snapshot: srv.Snapshot,
			Pprof:    fc.AdminPprof,
		}), log)
		if err != nil {
			log.Error("admin endpoint", zap.Error(err))
			fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
			return 1
		}
		defer admin.Close()
	}
	log.Info("ftpgate started", zap.String("version", versionString()), zap.String("firewall", string(nc.Mode)))
	if err := srv.Serve(ctx); err != nil {
		log.Error("serve", zap.Error(err))
		return 1
	}
	log.Info("ftpgate stopped")
	return 0
}

func cmdCleanup(args []string) int {
	rf := newRunFlags()
	fc, err := rf.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate cleanup: %v\n", err)
		return 2
	}
	nc := nat.Config{Mode: nat.FirewallMode(fc.Firewall.Mode), Table: fc.Firewall.Table, Family: fc.Firewall.Family,
		Set4: fc.Firewall.Set4, Set6: fc.Firewall.Set6}
	if err := nat.Cleanup(context.Background(), nc); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate cleanup: %v\n", err)
		return 1
	}
	fmt.Println("ftpgate cleanup: done")
	return 0
}

func newLogger(level, format string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	var cfg zap.Config
	switch format {
	case "", "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, zap.AtomicLevel{}, fmt.Errorf("log format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl) // a reload may change it
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	log, err := cfg.Build()
	return log, cfg.Level, err
}

// statsVars is the "ftpgate" object of /debug/vars: live counters.
func statsVars(srv *proxy.Server) map[string]int64 {
	st := srv.Stats()
	return map[string]int64{
		"goroutines": int64(runtime.NumGoroutine()),
		"fds":        countFDs(),
		"listeners":  st.Listeners,
		"sessions":   st.Sessions,
		"pinholes":   st.Pinholes,
		"accepted":   st.Accepted,
		"transfers":  st.Transfers,
	}
}

// passivePortsInUse is the passive port gauges' source: the proxy's own
// count of ports with a listener or a running transfer, and the range size.
func passivePortsInUse(srv *proxy.Server) func() (inUse, total int) {
	return func() (int, int) {
		st := srv.Stats()
		return st.DataPortsInUse, st.DataPortsTotal
	}
}

// countFDs counts this process's open file descriptors.
func countFDs() int64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return int64(len(ents))
}

// wiredConfig is the proxy's configuration with the live parts attached.
type wiredConfig struct {
	proxy.Config
	stops []func()
}

func (w *wiredConfig) stop() {
	for _, f := range w.stops {
		f()
	}
}

// wire attaches what the configuration needs at run time: address sources
// that follow interfaces or names, and the kernel hooks of the transparent
// modes.
func wire(ctx context.Context, pc *wiredConfig, nc nat.Config, fc fileConfig, log *zap.Logger) error {
	for _, a := range []struct {
		what, spec string
		dst        *nat.AddrSource
	}{{"advertise", fc.Advertise, &pc.Advertise}, {"upstream source", fc.UpstreamSource, &pc.UpstreamSource}} {
		src, stop, err := addrSource(ctx, a.what, a.spec, log)
		if err != nil {
			pc.stop()
			return err
		}
		*a.dst = src
		pc.stops = append(pc.stops, stop)
	}
	for i, r := range fc.AdvertiseRules {
		if r.Address == "" {
			continue
		}
		src, stop, err := addrSource(ctx, fmt.Sprintf("advertise rule %d", i+1), r.Address, log)
		if err != nil {
			pc.stop()
			return err
		}
		pc.AdvertiseRules[i].Addr = src
		pc.stops = append(pc.stops, stop)
	}
	pc.Hooks.IsLocal = func(a netip.Addr) bool {
		addrs, err := nat.LocalAddrs()
		return err == nil && slices.Contains(addrs, a)
	}
	if !pc.Mode.Transparent() {
		return nil
	}
	loop := nc.Intercept.LoopMark
	if loop == 0 {
		loop = nat.DefaultLoopMark
	}
	pc.Hooks = proxy.Hooks{
		OriginalDst:            nat.OriginalDst,
		DialControl:            nat.SocketOptions{Mark: loop}.Control,
		TransparentDialControl: nat.SocketOptions{Transparent: true, Mark: loop}.Control,
		LocalToward:            nat.SourceFor,
		IsLocal:                pc.Hooks.IsLocal,
	}
	if pc.Mode == proxy.ModeTProxy {
		pc.Hooks.ListenControl = nat.SocketOptions{Transparent: true}.Control
	}
	return nil
}
