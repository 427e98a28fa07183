//go:build linux

package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue #4's acceptance tests: ftpgate's pinholes in the real kernel. That a third host's SYN
// to a pending pinhole's port is dropped by the kernel, and that ftpgate never hears of it, is
// TestDataConnectionTheft's firewall-own-table case (datatheft_linux_test.go); what happens to
// the pinholes when ftpgate is killed is TestKillNine (killnine_linux_test.go), and the
// operator's own sets are TestExternalSet (externalset_linux_test.go).

// TestOwnTablePinholes: with the own table, the data port range is closed while no transfer is
// pending (SYNs from the client time out, and the table's drop counter counts them, while a
// port outside the range is refused); while a passive transfer is pending, table inet ftpgate
// holds exactly one element, (client, proxy, port), with a timeout; once the client has
// connected it holds none; and the transfer succeeds.
func TestOwnTablePinholes(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	// A long lifetime: a pinhole gone a moment after the client connected was deleted, not expired.
	g := startGate(t, tp, gateConfig{Extra: []string{"--pinhole-ttl", "60s"}})

	t.Run("closed-without-transfer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		before, err := nftCounterPackets(ctx, tp.Proxy, "inet", ownTable, ownInput)
		if err != nil {
			t.Fatal(err)
		}
		var targets []string
		for _, host := range []string{proxyClientV4, proxyClientV6} {
			for _, port := range []int{40000, 40042, 40099} { // both ends and the middle of 40000-40099
				targets = append(targets, hostPort(host, port))
			}
		}
		errs := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, addr := range targets {
			wg.Go(func() { errs[i] = expectDropped(ctx, tp.Client, addr, 2*time.Second) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Error(err)
		}
		after, err := nftCounterPackets(ctx, tp.Proxy, "inet", ownTable, ownInput)
		if err != nil {
			t.Fatal(err)
		}
		if after-before < uint64(len(targets)) {
			t.Errorf("the drop counter of table inet ftpgate went from %d to %d packets for %d dropped connection attempts",
				before, after, len(targets))
		}
		// Outside the range nothing listens and nothing drops: the kernel refuses.
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		c, err := dialIn(dctx, tp.Client, "tcp", hostPort(proxyClientV4, 39999))
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("port 39999, outside the data port range: %v, want connection refused", err)
		}
		if v, err := g.Vars(ctx); err != nil || v.Pinholes != 0 {
			t.Errorf("ftpgate reports %d pinholes (err %v) with no session", v.Pinholes, err)
		}
	})

	cases := []struct {
		name string
		ep   endpoint
		verb string
	}{
		{"pending-ipv4-EPSV", gateV4(), "EPSV"},
		{"pending-ipv4-PASV", gateV4(), "PASV"},
		{"pending-ipv6-EPSV", gateV6(), "EPSV"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ctl := mustLogin(ctx, t, tp.Client, hostPort(tc.ep.Host, tc.ep.Port))
			target := ctl.mustPassive(t, tc.verb)
			if target.Addr().String() != tc.ep.DataPeer {
				t.Errorf("%s: data address %s, want ftpgate's %s", tc.verb, target, tc.ep.DataPeer)
			}
			want := nftElement{Set: ownPinholeSets.forFamily(tc.ep.v6()), Key: pinholeKey(tc.ep.clientAddr(), tc.ep.DataPeer, int(target.Port()))}
			els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets)
			if !isOnly(els, want.Set, want.Key) {
				t.Fatalf("while the %s transfer is pending, table inet ftpgate holds %v; want exactly %s", tc.verb, els, want)
			}
			if e := els[0]; e.Timeout != 60 || e.Expires <= 0 || e.Expires > 60 {
				t.Errorf("pinhole %s: want timeout 60s (--pinhole-ttl) and a running expiry", e)
			}

			// ftpgate relays the first byte only after it accepted the client's connection, and it
			// deletes the pinhole before it relays anything.
			err := retrieve(ctx, ctl, tp.Client, target, bigFile, func() {
				if els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets); len(els) != 0 {
					t.Errorf("once the client's data connection is up, table inet ftpgate still holds %v; want none", els)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ctl.quit(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestPinholeExpiry: a client sends PASV and never connects. The pinhole expires in the kernel
// after --pinhole-ttl (2s) although ftpgate still listens, so a late connection attempt is
// dropped; the next transfer command gets 425 after --data-timeout; and the session goes on: a
// following transfer works.
func TestPinholeExpiry(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	const ttl = 2 * time.Second
	g := startGate(t, tp, gateConfig{Extra: []string{"--pinhole-ttl", ttl.String(), "--data-timeout", "2s"}})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ctl := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	sent := time.Now()
	target := ctl.mustPassive(t, "PASV")
	want := pinholeKey(clientV4, proxyClientV4, int(target.Port()))
	if els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets); !isOnly(els, ownPinholes4, want) || els[0].Timeout != ttl.Seconds() {
		t.Fatalf("after PASV table inet ftpgate holds %v; want exactly %s with timeout %s", els, strings.Join(want, " . "), ttl)
	}

	// The kernel expires the element; poll until it is gone (bounded).
	var gone time.Duration
	for {
		els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets)
		if len(els) == 0 {
			gone = time.Since(sent)
			break
		}
		if time.Since(sent) > ttl+5*time.Second {
			t.Fatalf("the pinhole is still there %s after PASV (ttl %s): %v", time.Since(sent).Round(time.Millisecond), ttl, els)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the pinhole was gone %s after PASV was sent (ttl %s)", gone.Round(time.Millisecond), ttl)
	if gone < ttl-200*time.Millisecond {
		t.Errorf("the pinhole was gone %s after PASV, before its ttl of %s: deleted, not expired", gone, ttl)
	}
	if !listening(ctx, t, tp.Proxy, target) {
		t.Errorf("ftpgate no longer listens on %s: the expiry test wants the kernel, not ftpgate, to close the port", target)
	}
	if err := expectDropped(ctx, tp.Client, target.String(), 1500*time.Millisecond); err != nil {
		t.Errorf("after the pinhole expired: %v", err)
	}

	// The transfer command that would use it: 425 once the data timeout is over.
	if err := ctl.send("RETR " + bigFile); err != nil {
		t.Fatal(err)
	}
	r, err := ctl.finalReply(30 * time.Second)
	if err != nil || r.Code != 425 {
		t.Fatalf("RETR after the pinhole expired: reply %q (%v), want 425\n%s", r, err, ctl.Transcript())
	}

	// The session goes on.
	target, err = ctl.passive("EPSV")
	if err != nil {
		t.Fatalf("EPSV after the 425: %v\n%s", err, ctl.Transcript())
	}
	if err := retrieve(ctx, ctl, tp.Client, target, bigFile, nil); err != nil {
		t.Fatalf("transfer after the 425: %v", err)
	}
	if err := ctl.quit(); err != nil {
		t.Error(err)
	}
	if v, err := g.Vars(ctx); err != nil || v.Pinholes != 0 {
		t.Errorf("ftpgate reports %d pinholes (err %v) after the session", v.Pinholes, err)
	}
}
