package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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
	if firewallHealth(nat.NewFake()) != nil {
		t.Fatal("a firewall without Ping got a health check")
	}
	want := errors.New("no answer")
	h := firewallHealth(pingFirewall{nat.NewFake(), want})
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
	stop := shutdownOnSignal(func() { readyAtCancel <- ready.check(); cancel() }, ready, zap.NewNop())
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
