package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// reloader applies the configuration anew on SIGHUP: the command line is
// parsed again, which re-reads the config file (and the certificate files),
// and the result goes to the running proxy for new sessions and new data
// plans. Running sessions keep the configuration they began with. An invalid
// file is refused with its file:line, and the running configuration stays.
type reloader struct {
	args  []string // the command line of `ftpgate run`, without "run"
	srv   *proxy.Server
	fw    nat.Firewall
	nc    nat.Config   // what the firewall was built from
	wired *wiredConfig // the configuration now in force
	fc    fileConfig   // and the settings it came from
	level zap.AtomicLevel
	log   *zap.Logger
}

// dataPortSetter is a firewall whose closed data port range can change
// while it runs (nat's kernel firewall and its fake).
type dataPortSetter interface {
	SetDataPorts(ctx context.Context, ports []nat.PortRange) error
}

// reload applies the configuration anew and logs the outcome.
func (r *reloader) reload(ctx context.Context) error {
	err := r.apply(ctx)
	if err != nil {
		r.log.Error("SIGHUP: configuration reload failed; the running configuration stays", zap.Error(err))
		return err
	}
	r.log.Info("SIGHUP: configuration reloaded; new sessions use it, running ones finish as they began")
	return nil
}

func (r *reloader) apply(ctx context.Context) error {
	fail := func(err error) error { // refused before the proxy saw it: the metrics still count it
		r.wired.Observer.Observe(proxy.ReloadEvent{Time: time.Now(), Err: err})
		return err
	}
	fc, err := newRunFlags().parse(r.args)
	if err != nil {
		return fail(err)
	}
	lvl, err := parseLevel(fc.LogLevel)
	if err != nil {
		return fail(err)
	}
	pcfg, nc, err := fc.settings()
	if err != nil {
		return fail(err)
	}
	if err := firewallUnchanged(r.nc, nc); err != nil {
		return fail(err)
	}
	for _, f := range []struct{ what, was, is string }{
		{"log format", r.fc.LogFormat, fc.LogFormat},
		{"audit log", r.fc.AuditLog, fc.AuditLog},
		{"xferlog", r.fc.Xferlog, fc.Xferlog},
		{"admin endpoint", r.fc.AdminListen, fc.AdminListen},
		{"procs", strconv.Itoa(r.fc.Procs), strconv.Itoa(fc.Procs)},
		{"sysmon", r.fc.Sysmon, fc.Sysmon},
	} {
		if f.was != f.is {
			r.log.Warn("SIGHUP: this setting changes only on restart", zap.String("setting", f.what),
				zap.String("running", f.was), zap.String("file", f.is))
		}
	}
	pc := &wiredConfig{Config: pcfg}
	if err := wire(ctx, pc, nc, fc, r.log); err != nil {
		return fail(err)
	}
	pc.Observer = r.wired.Observer
	// One certificate store for the process: a session pins the certificate
	// it began with, new sessions present the new one.
	if cur, next := r.wired.TLS.Certificate, pc.TLS.Certificate; cur != nil && next != nil {
		cur.Store(next.Current())
		pc.TLS.Certificate = cur
		r.log.Info("SIGHUP: certificate reloaded; new sessions present it", certFields(cur.Current())...)
	}
	setter, canSet := r.fw.(dataPortSetter)
	portsChanged := !slices.Equal(r.nc.DataPorts, nc.DataPorts)
	if portsChanged {
		if !canSet {
			pc.stop()
			return fail(errors.New("the firewall cannot change its data ports while running; restart ftpgate"))
		}
		if err := setter.SetDataPorts(ctx, nc.DataPorts); err != nil {
			pc.stop()
			return fail(fmt.Errorf("firewall data ports: %w", err))
		}
	}
	if err := r.srv.Reload(ctx, pc.Config); err != nil { // Reload reports its own outcome
		pc.stop()
		if portsChanged {
			if rerr := setter.SetDataPorts(ctx, r.nc.DataPorts); rerr != nil {
				r.log.Error("restoring the firewall's data ports after a failed reload", zap.Error(rerr))
			}
		}
		return err
	}
	r.level.SetLevel(lvl)
	// Address sources of the old configuration stop following; sessions
	// that still hold them see the last address they knew.
	r.wired.stop()
	r.wired, r.fc, r.nc.DataPorts = pc, fc, nc.DataPorts
	return nil
}

// firewallUnchanged reports an error when a reload would change firewall
// settings other than the data ports, which only a restart can do.
func firewallUnchanged(running, next nat.Config) error {
	running.DataPorts, next.DataPorts = nil, nil
	if !reflect.DeepEqual(running, next) {
		return errors.New("firewall settings (mode, table, sets, ttl, interception) change only on restart; only the passive ports may change on reload")
	}
	return nil
}

// reloadOnSIGHUP runs r.reload on every SIGHUP until the returned stop func
// is called.
func reloadOnSIGHUP(ctx context.Context, r *reloader) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.reload(ctx)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
		r.wired.stop() // the configuration in force at exit, whichever reload made it
	}
}

// parseLevel parses a log level setting; empty means info.
func parseLevel(level string) (zapcore.Level, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return lvl, fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
	}
	return lvl, nil
}
