// Command ftpgate is a firewall-aware FTP proxy and application-level gateway.
// It wires the packages together: flags and config file, logger, firewall,
// proxy, signals and the admin endpoint.
package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"
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
  ftpgate cleanup [--firewall MODE ...]                      remove kernel state ftpgate created
  ftpgate version                                            print the version

Run 'ftpgate run -h' for the flags.
`

func main() {
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
	case "cleanup":
		return cmdCleanup(args[1:])
	case "version", "--version", "-version":
		fmt.Println(versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
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
	withPprof := rf.fs.Bool("admin-pprof", false, "also serve net/http/pprof under /debug/pprof/ on --admin-listen, with block and mutex profiling on")
	fc, err := rf.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	log, err := newLogger(fc.LogLevel, fc.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}
	defer log.Sync()
	pcfg, nc, err := fc.settings()
	pc := &wiredConfig{Config: pcfg}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	fw, err := nat.New(ctx, nc, log.Named("nat"))
	if err != nil {
		log.Error("firewall setup failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
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
	defer reloadOnSIGHUP(ctx, pc.TLS.Certificate, fc.TLS, log)()

	srv, err := proxy.New(pc.Config, fw, log.Named("proxy"))
	if err != nil {
		log.Error("invalid configuration", zap.Error(err))
		return 2
	}
	if err := srv.Listen(ctx); err != nil {
		log.Error("listen failed", zap.Error(err))
		fmt.Fprintf(os.Stderr, "ftpgate run: %v\n", err)
		return 1
	}
	if fc.AdminListen != "" {
		admin, err := startAdmin(fc.AdminListen, srv, *withPprof, log)
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
	nc := nat.Config{Mode: nat.Mode(fc.Firewall.Mode), Table: fc.Firewall.Table, Family: fc.Firewall.Family,
		Set4: fc.Firewall.Set4, Set6: fc.Firewall.Set6}
	if err := nat.Cleanup(context.Background(), nc); err != nil {
		fmt.Fprintf(os.Stderr, "ftpgate cleanup: %v\n", err)
		return 1
	}
	fmt.Println("ftpgate cleanup: done")
	return 0
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
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
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	return cfg.Build()
}

// startAdmin serves /healthz and /debug/vars (expvar, with an "ftpgate"
// object of live counters) on addr, and /debug/pprof/ if withPprof is set.
func startAdmin(addr string, srv *proxy.Server, withPprof bool, log *zap.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	expvar.Publish("ftpgate", expvar.Func(func() any {
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
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/debug/vars", expvar.Handler())
	if withPprof {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		mux.HandleFunc("/debug/pprof/", pprof.Index) // serves the named profiles too
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint", zap.Error(err))
		}
	}()
	log.Info("admin endpoint", zap.Stringer("addr", l.Addr()))
	return hs, nil
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
		dst        *proxy.AddrSource
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
