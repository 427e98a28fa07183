//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// TestAdvertiseFollowsInterface: reverse mode with --advertise interface:c0, c0 being the proxy
// namespace's interface toward the client. While ftpgate runs, c0 gets a new address (next to
// the old one, PASV keeps the old), then loses the old one; the next PASV carries the new
// address, and a transfer to the address in the 227 reply succeeds.
func TestAdvertiseFollowsInterface(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	// Deleting the primary address must keep the new one, a secondary in the same subnet.
	if err := sysctl(tp.Proxy, "net/ipv4/conf/"+lanIf+"/promote_secondaries", "1"); err != nil {
		t.Fatal(err)
	}
	startGate(t, tp, gateConfig{Listen: []string{"0.0.0.0:21"}, Advertise: "interface:" + lanIf})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const newV4 = "198.18.0.11"

	// pasvVia opens a session to addr, sends PASV and returns the 227 address; with transfer it
	// then downloads from that address.
	pasvVia := func(addr string, transfer bool) (netip.AddrPort, error) {
		ctl, err := dialLogin(ctx, tp.Client, hostPort(addr, 21))
		if err != nil {
			return netip.AddrPort{}, err
		}
		defer ctl.Close()
		target, err := ctl.passive("PASV")
		if err != nil {
			return target, fmt.Errorf("%w\n%s", err, ctl.Transcript())
		}
		if transfer {
			if err := retrieve(ctx, ctl, tp.Client, target, bigFile, nil); err != nil {
				return target, err
			}
		}
		return target, ctl.quit()
	}
	ip := func(ns string, args ...string) {
		t.Helper()
		if err := runIP(ctx, append([]string{"-n", ns}, args...)...); err != nil {
			t.Fatal(err)
		}
	}

	if got, err := pasvVia(proxyClientV4, true); err != nil || got.Addr().String() != proxyClientV4 {
		t.Fatalf("before the change: PASV address %s (%v), want %s", got, err, proxyClientV4)
	}
	ip(tp.Proxy, "addr", "add", newV4+"/24", "dev", lanIf)
	if got, err := pasvVia(proxyClientV4, false); err != nil || got.Addr().String() != proxyClientV4 {
		t.Errorf("with the new address next to the old: PASV address %s (%v), want still %s", got, err, proxyClientV4)
	}
	ip(tp.Client, "route", "replace", "default", "via", newV4)
	ip(tp.Proxy, "addr", "del", proxyClientV4+"/24", "dev", lanIf)

	// ftpgate learns of the change from a netlink notification: allow it a moment (bounded).
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := pasvVia(newV4, true)
		if err == nil && got.Addr().String() == newV4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the change: PASV address %s (%v), want %s", got, err, newV4)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A real client that connects to the address in the 227 reply.
	local := filepath.Join(t.TempDir(), bigFile)
	if err := (curlClient{ns: tp.Client}).Get(ctx, endpoint{"ftpgate", newV4, 21, newV4}, modePASVIP, bigFile, local); err != nil {
		t.Fatal(err)
	}
	if err := sameFile(local, bigFile); err != nil {
		t.Error(err)
	}
}
