//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue #4's acceptance tests: ftpgate's pinholes in the real kernel. That a third host's SYN
// to a pending pinhole's port is dropped by the kernel, and that ftpgate never hears of it, is
// TestDataConnectionTheft's firewall-own-table case (security_linux_test.go).

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
			ctl, err := dialLogin(ctx, tp.Client, hostPort(tc.ep.Host, tc.ep.Port))
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			target, err := ctl.passive(tc.verb)
			if err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			if target.Addr().String() != tc.ep.DataPeer {
				t.Errorf("%s: data address %s, want ftpgate's %s", tc.verb, target, tc.ep.DataPeer)
			}
			set := ownPinholes4
			if tc.ep.v6() {
				set = ownPinholes6
			}
			want := nftElement{Set: set, Key: pinholeKey(tc.ep.clientAddr(), tc.ep.DataPeer, int(target.Port()))}
			els, err := nftSetElements(ctx, tp.Proxy, "inet", ownTable, ownPinholes4, ownPinholes6)
			if err != nil {
				t.Fatal(err)
			}
			if len(els) != 1 || !els[0].is(want.Set, want.Key, nil) {
				t.Fatalf("while the %s transfer is pending, table inet ftpgate holds %v; want exactly %s", tc.verb, els, want)
			}
			if e := els[0]; e.Timeout != 60 || e.Expires <= 0 || e.Expires > 60 {
				t.Errorf("pinhole %s: want timeout 60s (--pinhole-ttl) and a running expiry", e)
			}

			data, err := dialIn(ctx, tp.Client, "tcp", target.String())
			if err != nil {
				t.Fatalf("the client's data connection to %s: %v", target, err)
			}
			defer data.Close()
			if _, err := ctl.startTransfer("RETR " + bigFile); err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			// ftpgate relays the first byte only after it accepted the client's connection, and it
			// deletes the pinhole before it relays anything.
			err = readDownload(data, bigFile, func() {
				if els, err := nftSetElements(ctx, tp.Proxy, "inet", ownTable, ownPinholes4, ownPinholes6); err != nil {
					t.Error(err)
				} else if len(els) != 0 {
					t.Errorf("once the client's data connection is up, table inet ftpgate still holds %v; want none", els)
				}
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
				t.Errorf("RETR final reply %q (%v), want 226\n%s", r, err, ctl.Transcript())
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
	ctl, err := dialLogin(ctx, tp.Client, hostPort(proxyClientV4, 21))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	sent := time.Now()
	target, err := ctl.passive("PASV")
	if err != nil {
		t.Fatalf("%v\n%s", err, ctl.Transcript())
	}
	want := pinholeKey(clientV4, proxyClientV4, int(target.Port()))
	els, err := nftSetElements(ctx, tp.Proxy, "inet", ownTable, ownPinholes4, ownPinholes6)
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 1 || !els[0].is(ownPinholes4, want, nil) || els[0].Timeout != ttl.Seconds() {
		t.Fatalf("after PASV table inet ftpgate holds %v; want exactly %s with timeout %s", els, strings.Join(want, " . "), ttl)
	}

	// The kernel expires the element; poll until it is gone (bounded).
	var gone time.Duration
	for {
		els, err := nftSetElements(ctx, tp.Proxy, "inet", ownTable, ownPinholes4, ownPinholes6)
		if err != nil {
			t.Fatal(err)
		}
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
	if err := retrieve(ctx, ctl, tp.Client, target, bigFile); err != nil {
		t.Fatalf("transfer after the 425: %v", err)
	}
	if err := ctl.quit(); err != nil {
		t.Error(err)
	}
	if v, err := g.Vars(ctx); err != nil || v.Pinholes != 0 {
		t.Errorf("ftpgate reports %d pinholes (err %v) after the session", v.Pinholes, err)
	}
}

// retrieve connects to a passive data address from ns, downloads a fixture with RETR and
// checks its checksum and the final reply.
func retrieve(ctx context.Context, ctl *ftpCtl, ns string, target netip.AddrPort, fixture string) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	data, err := dialIn(dctx, ns, "tcp", target.String())
	cancel()
	if err != nil {
		return fmt.Errorf("data connection to %s: %w", target, err)
	}
	defer data.Close()
	if _, err := ctl.startTransfer("RETR " + fixture); err != nil {
		return fmt.Errorf("%w\n%s", err, ctl.Transcript())
	}
	sum, n, err := dataSum(data, 60*time.Second)
	if err != nil {
		return fmt.Errorf("download of %s: %w after %d bytes", fixture, err, n)
	}
	if sum != suite.sums[fixture] {
		return fmt.Errorf("download of %s: %d bytes with sha256 %s, want %s", fixture, n, sum, suite.sums[fixture])
	}
	if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
		return fmt.Errorf("RETR %s: final reply %q (%v), want 226\n%s", fixture, r, err, ctl.Transcript())
	}
	return nil
}

// listening reports whether something in ns listens on addr (ss).
func listening(ctx context.Context, t *testing.T, ns string, addr netip.AddrPort) bool {
	t.Helper()
	out, err := nsCommand(ctx, ns, "ss", "-Hltn").Output()
	if err != nil {
		t.Fatalf("ss -ltn in %s: %v", ns, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			if ap, err := netip.ParseAddrPort(f[3]); err == nil && ap == addr {
				return true
			}
		}
	}
	return false
}

// TestKillNine: kill -9 of ftpgate in the middle of a transfer, with another client's passive
// transfer pending: table inet ftpgate, and every pinhole in it, is gone within a second,
// because the kernel deletes an owned table with its owner. An ftpgate started again works.
func TestKillNine(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	startServer(t, tp, vsftpd)
	cfg := gateConfig{}
	g := startGate(t, tp, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A download the client reads slowly, through a small receive window: it is still running.
	busy, err := dialLogin(ctx, tp.Client, hostPort(proxyClientV4, 21))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	target, err := busy.passive("EPSV")
	if err != nil {
		t.Fatalf("%v\n%s", err, busy.Transcript())
	}
	data, err := dialSmallWindow(ctx, tp.Client, target.String())
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	defer data.Close()
	if _, err := busy.startTransfer("RETR " + bigFile); err != nil {
		t.Fatalf("%v\n%s", err, busy.Transcript())
	}
	_ = data.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(data, make([]byte, 64<<10)); err != nil {
		t.Fatalf("first 64 KiB of the download: %v", err)
	}
	// And a second session with a pinhole pending.
	pending, err := dialLogin(ctx, tp.Client, hostPort(proxyClientV6, 21))
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	pendingTarget, err := pending.passive("EPSV")
	if err != nil {
		t.Fatalf("%v\n%s", err, pending.Transcript())
	}
	els, err := nftSetElements(ctx, tp.Proxy, "inet", ownTable, ownPinholes4, ownPinholes6)
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 1 || !els[0].is(ownPinholes6, pinholeKey(clientV6, proxyClientV6, int(pendingTarget.Port())), nil) {
		t.Fatalf("before the kill table inet ftpgate holds %v; want the pending session's pinhole only", els)
	}
	if recs := g.logs.Records("transfer"); len(recs) != 0 {
		t.Fatalf("the download ended before the kill: %s", excerpt(recs, 3))
	}

	killed := time.Now()
	if err := g.Kill(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for {
		has, err := hasTable(ctx, tp.Proxy, "inet "+ownTable)
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			t.Logf("table inet ftpgate gone %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("table inet ftpgate still exists %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The download was cut short: what ftpgate had read from the server but not yet sent is lost.
	_, n, err := dataSum(data, 10*time.Second)
	t.Logf("the interrupted download ended after %d more bytes (%v)", n, err)
	if n+(64<<10) >= bigSize {
		t.Errorf("the client received all %d bytes: the transfer was over before the kill", n+(64<<10))
	}

	// A restart works: a download through the new ftpgate.
	startGate(t, tp, cfg)
	dir := t.TempDir()
	for _, ep := range []endpoint{gateV4(), gateV6()} {
		local := filepath.Join(dir, ep.Name+"-"+strings.ReplaceAll(ep.Host, ":", "_")+"-"+bigFile)
		if err := (curlClient{tp.Client}).Get(ctx, ep, modeEPSV, bigFile, local); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Errorf("after the restart: %v", err)
		}
	}
}

// The operator's table of TestExternalSet: default-drop input that admits FTP control
// connections and, on the data port range, only the elements of the two pinhole sets ftpgate
// is given (as deploy/firewall/dmz-host.nft does).
const (
	operatorTable = "operator"
	operatorSet4  = "pin4"
	operatorSet6  = "pin6"
)

const operatorReverseRuleset = `
table inet operator {
	set pin4 {
		type ipv4_addr . ipv4_addr . inet_service
		flags timeout
	}
	set pin6 {
		type ipv6_addr . ipv6_addr . inet_service
		flags timeout
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lo" accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
		tcp dport 21 accept
		tcp dport 40000-40099 ip saddr . ip daddr . tcp dport @pin4 accept
		tcp dport 40000-40099 ip6 saddr . ip6 daddr . tcp dport @pin6 accept
		tcp dport 40000-40099 counter comment "data connections without a pinhole"
	}
}
`

// TestExternalSet: --firewall external-set against an operator's default-drop ruleset.
// Passive and active transfers succeed (with --server-mode client, active clients make the
// server connect back to ftpgate, through a pinhole too); each pinhole is an element of the
// operator's set while its transfer is pending and gone once the peer connected; and ftpgate
// touches nothing else: the ruleset, set elements and counters aside, is the same before,
// while and after it runs.
func TestExternalSet(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := nftLoad(ctx, tp.Proxy, operatorReverseRuleset); err != nil {
		t.Fatal(err)
	}
	before, err := nftShape(ctx, tp.Proxy)
	if err != nil || len(before) == 0 {
		t.Fatalf("the operator's ruleset: %q, %v", before, err)
	}
	g := startGate(t, tp, gateConfig{
		Firewall:   "external-set",
		ServerMode: "client",
		Extra: []string{"--firewall-table", operatorTable, "--firewall-set4", operatorSet4, "--firewall-set6", operatorSet6,
			"--pinhole-ttl", "60s"},
	})
	if running, err := nftShape(ctx, tp.Proxy); err != nil {
		t.Fatal(err)
	} else if d := diffShapes(before, running); d != "" {
		t.Errorf("ftpgate in external-set mode changed the ruleset besides set elements:\n%s", d)
	}
	pins := func(t *testing.T) []nftElement {
		t.Helper()
		els, err := nftSetElements(ctx, tp.Proxy, "inet", operatorTable, operatorSet4, operatorSet6)
		if err != nil {
			t.Fatal(err)
		}
		return els
	}

	t.Run("closed-without-pinhole", func(t *testing.T) {
		if err := expectDropped(ctx, tp.Client, hostPort(proxyClientV4, 40000), 2*time.Second); err != nil {
			t.Errorf("the operator's ruleset: %v", err)
		}
	})

	cases := []struct {
		name string
		ep   endpoint
		verb string
	}{
		{"ipv4-EPSV", gateV4(), "EPSV"},
		{"ipv4-PASV", gateV4(), "PASV"},
		{"ipv6-EPSV", gateV6(), "EPSV"},
		{"ipv4-PORT", gateV4(), "PORT"},
		{"ipv4-EPRT", gateV4(), "EPRT"},
		{"ipv6-EPRT", gateV6(), "EPRT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl, err := dialLogin(ctx, tp.Client, hostPort(tc.ep.Host, tc.ep.Port))
			if err != nil {
				t.Fatal(err)
			}
			defer ctl.Close()
			set := operatorSet4
			if tc.ep.v6() {
				set = operatorSet6
			}
			passive := tc.verb == "EPSV" || tc.verb == "PASV"
			var target netip.AddrPort
			var ln net.Listener
			if passive {
				// The client will connect to ftpgate: its pinhole is (client, ftpgate, port).
				if target, err = ctl.passive(tc.verb); err != nil {
					t.Fatalf("%v\n%s", err, ctl.Transcript())
				}
				want := pinholeKey(tc.ep.clientAddr(), tc.ep.DataPeer, int(target.Port()))
				if els := pins(t); len(els) != 1 || !els[0].is(set, want, nil) || els[0].Timeout != 60 {
					t.Fatalf("while the %s transfer is pending the operator's sets hold %v; want exactly %s: %s timeout 60s",
						tc.verb, els, set, strings.Join(want, " . "))
				}
			} else {
				// The server (IPv4, the upstream for clients of both families) will connect to
				// ftpgate, which opened its pinhole once the server accepted ftpgate's EPRT/PORT.
				if ln, err = ctl.active(tc.verb); err != nil {
					t.Fatalf("%v\n%s", err, ctl.Transcript())
				}
				defer ln.Close()
				els := pins(t)
				if len(els) != 1 || els[0].Set != operatorSet4 || els[0].Key[0] != serverV4 || els[0].Key[1] != proxyServerV4 {
					t.Fatalf("while the %s transfer is pending the operator's sets hold %v; want exactly %s: %s . %s . <data port>",
						tc.verb, els, operatorSet4, serverV4, proxyServerV4)
				}
			}
			var data net.Conn
			if passive {
				if data, err = dialIn(ctx, tp.Client, "tcp", target.String()); err != nil {
					t.Fatalf("data connection to %s: %v", target, err)
				}
			}
			if _, err := ctl.startTransfer("RETR " + bigFile); err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			if !passive {
				_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
				if data, err = ln.Accept(); err != nil {
					t.Fatalf("ftpgate's active-mode data connection: %v\n%s", err, ctl.Transcript())
				}
			}
			defer data.Close()
			err = readDownload(data, bigFile, func() {
				if els := pins(t); len(els) != 0 {
					t.Errorf("with both data connections up the operator's sets still hold %v; want none", els)
				}
			})
			if err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
			if r, err := ctl.finalReply(30 * time.Second); err != nil || r.Code != 226 {
				t.Errorf("RETR final reply %q (%v), want 226\n%s", r, err, ctl.Transcript())
			}
			if err := ctl.quit(); err != nil {
				t.Error(err)
			}
		})
	}

	// curl, passive and active, downloads and uploads.
	c := curlClient{tp.Client}
	for _, tc := range []struct {
		ep endpoint
		m  dataMode
	}{{gateV4(), modeEPSV}, {gateV4(), modePORT}, {gateV6(), modeEPSV}, {gateV6(), modeEPRT}} {
		fam := "ipv4"
		if tc.ep.v6() {
			fam = "ipv6"
		}
		t.Run("curl-"+fam+"-"+string(tc.m), func(t *testing.T) {
			local := filepath.Join(t.TempDir(), bigFile)
			if err := c.Get(ctx, tc.ep, tc.m, bigFile, local); err != nil {
				t.Fatal(err)
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Error(err)
			}
			remote := "up-external-" + fam + "-" + strings.ToLower(string(tc.m)) + ".bin"
			if err := c.Put(ctx, tc.ep, tc.m, local, remote); err != nil {
				t.Fatal(err)
			}
			if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
				t.Errorf("upload, on the server: %v", err)
			}
		})
	}

	// Stopped with a transfer pending: ftpgate takes its element out; the ruleset is as before.
	ctl, err := dialLogin(ctx, tp.Client, hostPort(proxyClientV4, 21))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if _, err := ctl.passive("EPSV"); err != nil {
		t.Fatalf("%v\n%s", err, ctl.Transcript())
	}
	if els := pins(t); len(els) != 1 {
		t.Errorf("with a transfer pending the operator's sets hold %v; want its pinhole", els)
	}
	if err := g.proc.Stop(15 * time.Second); err != nil {
		t.Fatalf("ftpgate stop: %v", err)
	}
	if els := pins(t); len(els) != 0 {
		t.Errorf("after ftpgate stopped the operator's sets still hold %v", els)
	}
	if after, err := nftShape(ctx, tp.Proxy); err != nil {
		t.Fatal(err)
	} else if d := diffShapes(before, after); d != "" {
		t.Errorf("after ftpgate in external-set mode ran, the ruleset differs besides set elements:\n%s", d)
	}
}
