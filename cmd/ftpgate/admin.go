package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// healthTimeout bounds the /healthz probe of the firewall's netlink
// connection.
const healthTimeout = 2 * time.Second

// readiness is what /readyz answers: ready only while the control listeners
// are up, the firewall is installed and the process is not draining.
type readiness struct {
	listening, firewall, draining atomic.Bool
}

func (r *readiness) setListening(up bool)        { r.listening.Store(up) }
func (r *readiness) setFirewallInstalled(b bool) { r.firewall.Store(b) }

// drain marks the process as shutting down; it is never ready again.
func (r *readiness) drain() { r.draining.Store(true) }

// check returns nil when ready, else why not.
func (r *readiness) check() error {
	switch {
	case r.draining.Load():
		return errors.New("draining: shutting down")
	case !r.firewall.Load():
		return errors.New("firewall not installed")
	case !r.listening.Load():
		return errors.New("listeners not up")
	}
	return nil
}

// adminConfig is what the admin endpoint serves.
type adminConfig struct {
	// Metrics is served on /metrics.
	Metrics *metrics
	// Health is /healthz's check beyond "the process serves": that the
	// firewall's netlink connection answers. nil checks nothing more.
	Health func(context.Context) error
	// Ready answers /readyz.
	Ready *readiness
	// Vars is the "ftpgate" object of /debug/vars.
	Vars func() map[string]int64
	// Snapshot is served on /status (as statusView) for `ftpgate status`;
	// nil serves no /status.
	Snapshot func() proxy.Snapshot
	// Pprof also serves net/http/pprof under /debug/pprof/, with block and
	// mutex profiling on: for profiling, not for production.
	Pprof bool
}

// newAdminHandler serves /metrics, /healthz, /readyz, /status and /debug/vars. The
// last one is ftpgate's own JSON (its counters and the Go memory
// statistics), not expvar's, which would publish the command line.
func newAdminHandler(c adminConfig) http.Handler {
	mux := http.NewServeMux()
	if c.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(c.Metrics.reg, promhttp.HandlerOpts{Registry: c.Metrics.reg}))
	}
	if c.Snapshot != nil {
		mux.Handle("GET /status", serveStatus(c.Snapshot))
	}
	if c.Pprof {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		mux.HandleFunc("/debug/pprof/", pprof.Index) // serves the named profiles too
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if c.Health != nil {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := c.Health(ctx); err != nil {
				http.Error(w, "unhealthy: firewall: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Ready.check(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /debug/vars", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		vars := map[string]any{"memstats": &ms}
		if c.Vars != nil {
			vars["ftpgate"] = c.Vars()
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if err := json.NewEncoder(w).Encode(vars); err != nil {
			return // the client went away
		}
	})
	return mux
}

// startAdmin serves h on addr until the returned server is closed.
func startAdmin(addr string, h http.Handler, log *zap.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint", zap.Error(err))
		}
	}()
	log.Info("admin endpoint", zap.Stringer("addr", l.Addr()))
	return hs, nil
}

// firewallPinger is a firewall that can tell whether its netlink connection
// still answers. nat.Firewall has no such method yet; when nat's kernel
// firewall gets one, /healthz uses it without a change here.
type firewallPinger interface {
	Ping(ctx context.Context) error
}

// firewallHealth returns fw's health check for /healthz, or nil if fw
// cannot be asked.
func firewallHealth(fw nat.Firewall) func(context.Context) error {
	if p, ok := fw.(firewallPinger); ok {
		return p.Ping
	}
	return nil
}

// shutdownOnSignal flips readiness to draining and then calls cancel (which
// starts the proxy's drain) when SIGTERM or SIGINT arrives, so that /readyz
// says 503 before the first listener closes. With a delay, ftpgate keeps
// accepting for that long after /readyz turned 503 (as kube-apiserver's
// --shutdown-delay-duration): a load balancer that follows readiness takes
// the instance out before its listeners close, and no connection it still
// sends there is refused. A second signal during the delay cuts it short.
// Later signals are swallowed until stop is called, as with
// signal.NotifyContext.
func shutdownOnSignal(cancel context.CancelFunc, ready *readiness, delay time.Duration, log *zap.Logger) (stop func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case sig := <-ch:
			ready.drain()
			if delay > 0 {
				log.Info("signal: not ready; still accepting for the shutdown delay", zap.Stringer("signal", sig),
					zap.Duration("delay", delay))
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case sig = <-ch:
					t.Stop()
					log.Info("second signal: shutdown delay cut short", zap.Stringer("signal", sig))
				case <-quit:
					t.Stop()
					return
				}
			}
			log.Info("draining: no new sessions", zap.Stringer("signal", sig))
			cancel()
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(quit)
		<-done
	}
}
