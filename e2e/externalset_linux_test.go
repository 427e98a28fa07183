//go:build linux

package e2e

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The operator's table of TestExternalSet: default-drop input that admits FTP control
// connections and, on the data port range, only the elements of the two pinhole sets ftpgate
// is given (as deploy/firewall/dmz-host.nft does).
const (
	operatorTable = "operator"
	operatorSet4  = "pin4"
	operatorSet6  = "pin6"
)

var operatorPinholeSets = pinholeSets{operatorTable, operatorSet4, operatorSet6}

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
		return readPinholes(ctx, t, tp.Proxy, operatorPinholeSets)
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
			ctl := mustLogin(ctx, t, tp.Client, hostPort(tc.ep.Host, tc.ep.Port))
			var err error
			set := operatorPinholeSets.forFamily(tc.ep.v6())
			passive := tc.verb == "EPSV" || tc.verb == "PASV"
			var target netip.AddrPort
			var ln net.Listener
			if passive {
				// The client will connect to ftpgate: its pinhole is (client, ftpgate, port).
				target = ctl.mustPassive(t, tc.verb)
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
	c := curlClient{ns: tp.Client}
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
	ctl := mustLogin(ctx, t, tp.Client, hostPort(proxyClientV4, 21))
	ctl.mustPassive(t, "EPSV")
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
