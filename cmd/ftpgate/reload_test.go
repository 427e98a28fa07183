package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// reloadEvents counts the ReloadEvents a reload reports.
type reloadEvents struct{ ok, failed int }

func (r *reloadEvents) Observe(e proxy.Event) {
	if ev, is := e.(proxy.ReloadEvent); is {
		if ev.Err == nil {
			r.ok++
		} else {
			r.failed++
		}
	}
}

// TestReload: a SIGHUP re-reads the config file. A valid change (listener,
// passive ports, log level, certificate) is applied to the running server
// and the firewall; a file with a typo is refused with its line and nothing
// changes; a firewall change other than the data ports is refused.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "first")
	conf := writeConfig(t, "")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "upstream: 127.0.0.1:21\nfirewall:\n  mode: own-table\ntls:\n  cert: " + cert + "\n  key: " + key + "\n"
	write(base + "listen: [\"127.0.0.1:0\"]\npassive_ports: 41000-41009\nlog_level: info\n")
	args := []string{"--config", conf}

	fc, err := newRunFlags().parse(args)
	if err != nil {
		t.Fatal(err)
	}
	pcfg, nc, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	events := &reloadEvents{}
	pc := &wiredConfig{Config: pcfg}
	pc.Observer = events
	fw := nat.NewFake()
	srv, err := proxy.New(pc.Config, fw, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	defer func() { cancel(); <-served }()

	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(zapcore.InfoLevel)
	r := &reloader{args: args, srv: srv, fw: fw, nc: nc, wired: pc, fc: fc, level: level, log: zap.New(core)}
	stop := reloadOnSIGHUP(ctx, r)
	defer stop()
	hup := func(msg string, n int) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for range 500 {
			if logs.FilterMessage(msg).Len() >= n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no %q log record after SIGHUP; logs: %v", msg, logs.All())
	}

	// A valid change, the certificate renewed in place as an ACME client does.
	c2, k2 := writeCert(t, t.TempDir(), "second")
	for _, mv := range [][2]string{{c2, cert}, {k2, key}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	write(base + "listen: [\"127.0.0.7:0\"]\npassive_ports: 42000-42009\nlog_level: debug\n")
	hup("SIGHUP: configuration reloaded; new sessions use it, running ones finish as they began", 1)
	if a := srv.Addrs(); len(a) != 1 || a[0].Addr().String() != "127.0.0.7" {
		t.Errorf("listeners after reload: %v, want one on 127.0.0.7", a)
	}
	if p := fw.DataPorts(); len(p) != 1 || p[0] != (nat.PortRange{Lo: 42000, Hi: 42009}) {
		t.Errorf("firewall data ports after reload: %v, want 42000-42009", p)
	}
	if level.Level() != zapcore.DebugLevel {
		t.Errorf("log level after reload: %s, want debug", level.Level())
	}
	if cn := pc.TLS.Certificate.Current().Leaf.Subject.CommonName; cn != "second" {
		t.Errorf("certificate after reload: %q, want second", cn)
	}

	// A typo: refused with file and line, nothing changes.
	write(base + "listen: [\"127.0.0.8:0\"]\npassive_portz: 43000-43009\n")
	hup("SIGHUP: configuration reload failed; the running configuration stays", 1)
	failed := logs.FilterMessage("SIGHUP: configuration reload failed; the running configuration stays").All()[0]
	if msg := failed.ContextMap()["error"].(string); !strings.Contains(msg, conf) || !strings.Contains(msg, conf+":8:") {
		t.Errorf("reload error %q: want the file and line 8", msg)
	}
	if a := srv.Addrs(); len(a) != 1 || a[0].Addr().String() != "127.0.0.7" {
		t.Errorf("listeners after a refused reload: %v", a)
	}

	// The firewall mode changes only on restart.
	write(strings.Replace(base, "own-table", "none", 1) + "listen: [\"127.0.0.7:0\"]\npassive_ports: 42000-42009\n")
	hup("SIGHUP: configuration reload failed; the running configuration stays", 2)
	if events.ok != 1 || events.failed != 2 {
		t.Errorf("reload events: %d ok, %d failed; want 1 and 2", events.ok, events.failed)
	}

	// procs and sysmon are taken at start: the reload applies the rest and
	// says that these two wait for a restart.
	write(base + "listen: [\"127.0.0.7:0\"]\npassive_ports: 42000-42009\nprocs: 3\nsysmon: park\n")
	hup("SIGHUP: configuration reloaded; new sessions use it, running ones finish as they began", 2)
	restart := map[string]string{}
	for _, e := range logs.FilterMessage("SIGHUP: this setting changes only on restart").All() {
		m := e.ContextMap()
		restart[m["setting"].(string)] = m["running"].(string) + " -> " + m["file"].(string)
	}
	if restart["procs"] != "0 -> 3" || restart["sysmon"] != " -> park" {
		t.Errorf("restart-only warnings %v, want procs 0 -> 3 and sysmon \"\" -> park", restart)
	}
}
