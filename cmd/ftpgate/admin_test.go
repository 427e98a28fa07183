package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestReadyz(t *testing.T) {
	ready := &readiness{}
	srv := httptest.NewServer(newAdminHandler(adminConfig{Ready: ready}))
	defer srv.Close()
	for _, step := range []struct {
		name     string
		do       func()
		code     int
		contains string
	}{
		{"at start", func() {}, 503, "firewall not installed"},
		{"firewall installed", func() { ready.setFirewallInstalled(true) }, 503, "listeners not up"},
		{"listening", func() { ready.setListening(true) }, 200, "ready"},
		{"draining", ready.drain, 503, "draining"},
		{"listeners still up while draining", func() { ready.setListening(true) }, 503, "draining"},
	} {
		step.do()
		code, body := get(t, srv.URL+"/readyz")
		if code != step.code || !strings.Contains(body, step.contains) {
			t.Errorf("%s: /readyz %d %q, want %d containing %q", step.name, code, body, step.code, step.contains)
		}
	}
}

func TestHealthz(t *testing.T) {
	var fwErr error
	srv := httptest.NewServer(newAdminHandler(adminConfig{Ready: &readiness{},
		Health: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("health check without a deadline")
			}
			return fwErr
		}}))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthy: /healthz %d %q", code, body)
	}
	fwErr = errors.New("netlink: connection refused")
	if code, body := get(t, srv.URL+"/healthz"); code != 503 || !strings.Contains(body, "netlink: connection refused") {
		t.Fatalf("firewall down: /healthz %d %q, want 503 naming the error", code, body)
	}
	// Not ready does not mean unhealthy: a draining process is alive.
	if code, _ := get(t, srv.URL+"/readyz"); code != 503 {
		t.Fatalf("/readyz %d before anything is up", code)
	}
}

// pingFirewall is a firewall with the Ping method /healthz uses.
type pingFirewall struct {
	nat.Firewall
	err error
}

func (p pingFirewall) Ping(context.Context) error { return p.err }

func TestFirewallHealth(t *testing.T) {
	fake := nat.NewFake()
	h := firewallHealth(fake)
	if h == nil || h(t.Context()) != nil {
		t.Fatal("nat's firewall is not asked, or unhealthy while running")
	}
	fake.Shutdown(t.Context())
	if h(t.Context()) == nil {
		t.Fatal("a shut-down firewall answers as healthy")
	}
	want := errors.New("no answer")
	h = firewallHealth(pingFirewall{nat.NewFake(), want})
	if h == nil || !errors.Is(h(t.Context()), want) {
		t.Fatal("a firewall with Ping is not asked")
	}
}

func TestDebugVarsWithoutCommandLine(t *testing.T) {
	srv := httptest.NewServer(newAdminHandler(adminConfig{Ready: &readiness{},
		Vars: func() map[string]int64 { return map[string]int64{"sessions": 4} }}))
	defer srv.Close()
	code, body := get(t, srv.URL+"/debug/vars")
	if code != 200 {
		t.Fatalf("/debug/vars %d", code)
	}
	var vars struct {
		Ftpgate  map[string]int64                  `json:"ftpgate"`
		Memstats struct{ NumGC, HeapAlloc uint64 } `json:"memstats"`
		Cmdline  any                               `json:"cmdline"`
	}
	if err := json.Unmarshal([]byte(body), &vars); err != nil {
		t.Fatalf("/debug/vars: %v", err)
	}
	if vars.Ftpgate["sessions"] != 4 || vars.Memstats.HeapAlloc == 0 {
		t.Fatalf("/debug/vars lacks the counters or memstats: %.300s", body)
	}
	if vars.Cmdline != nil || strings.Contains(body, os.Args[0]) {
		t.Fatalf("/debug/vars serves the command line: %.300s", body)
	}
	if code, _ := get(t, srv.URL+"/metrics"); code != 404 {
		t.Fatalf("/metrics without metrics: %d, want 404", code)
	}
}

// TestSIGTERMFlipsReadinessBeforeDrain sends the test process SIGTERM (the
// handler catches it): readiness must be off by the time the drain starts,
// that is when cancel is called.
func TestSIGTERMFlipsReadinessBeforeDrain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ready := &readiness{}
	ready.setFirewallInstalled(true)
	ready.setListening(true)
	readyAtCancel := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	stop := shutdownOnSignal(func() { readyAtCancel <- ready.check(); cancel() }, ready, 0, zap.NewNop())
	defer stop()
	if err := ready.check(); err != nil {
		t.Fatalf("not ready before the signal: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not start the drain within 10s")
	}
	if err := <-readyAtCancel; err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("readiness when the drain started: %v, want draining", err)
	}
}

// TestShutdownDelay: with a shutdown delay, SIGTERM makes readiness fail at
// once while the drain waits; a second SIGTERM starts it without waiting for
// the delay.
func TestShutdownDelay(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ready := &readiness{}
	ready.setFirewallInstalled(true)
	ready.setListening(true)
	ctx, cancel := context.WithCancel(t.Context())
	stop := shutdownOnSignal(cancel, ready, time.Hour, zap.NewNop())
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ready.check() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not fail after SIGTERM")
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the drain started at once despite the shutdown delay")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not cut the delay short")
	}
}

// freePort returns a loopback address with a port free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunWiresAdminEndpoint runs `ftpgate run` in this process (reverse
// mode, firewall none, so no kernel state) and checks what cmdRun wires:
// /readyz, /healthz, /metrics with the live gauges, the audit log file, and
// SIGTERM ending the run.
func TestRunWiresAdminEndpoint(t *testing.T) {
	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go func() {
		for {
			c, err := upstream.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 test server\r\n"))
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	admin := freePort(t)
	listen := freePort(t)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	exit := make(chan int, 1)
	go func() {
		exit <- realMain([]string{"run", "--listen", listen, "--upstream", upstream.Addr().String(), "--firewall", "none",
			"--admin-listen", admin, "--audit-log", auditPath, "--log-level", "error"})
	}()
	waitFor(t, "/readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if code, body := get(t, "http://"+admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d %q", code, body)
	}
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	greeting := make([]byte, 64)
	if _, err := c.Read(greeting); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ftpgate_sessions_active 1", func() bool {
		_, body := get(t, "http://"+admin+"/metrics")
		return strings.Contains(body, "\nftpgate_sessions_active 1\n") && strings.Contains(body, "\nftpgate_ready 1\n")
	})
	if _, err := os.Stat(auditPath); err != nil {
		t.Fatalf("audit log not opened: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("ftpgate run exited %d after SIGTERM", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ftpgate run did not stop within 30s of SIGTERM")
	}
}
