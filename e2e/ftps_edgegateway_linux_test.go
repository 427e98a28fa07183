//go:build linux

package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ftpsEdgeRuleset is the operator's own firewall on the edge gateway (the proxy namespace): nothing
// is forwarded but established flows, and locally only ftpgate's intercepted control port and
// its data port range are open. No kernel FTP helper is loaded: it could not read FTPS anyway.
// ftpgate's own table keeps the data range closed except for its exact pinholes, and diverts
// each expected data connection to its listener.
const ftpsEdgeRuleset = `table inet edge_operator {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif lo accept
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport 8021 accept
		tcp dport 40000-40099 accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
	}
}
`

// TestFTPSEdgeGateway: ftpgate as a transparent edge gateway (--mode redirect) in front of a
// default-drop firewall, with FTPS interception enabled for the test server only
// (--tls-intercept). Explicit-FTPS clients addressing the server itself transfer in passive and
// active modes (checksums), while the operator's forward chain still drops everything new: the
// data flows exist only as ftpgate's diverted, pinholed connections.
func TestFTPSEdgeGateway(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needLftp, needPython, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	srv := startServerTLS(t, tp, vsftpd, pki.Server)

	// One bound for the whole test: the checks after the transfers use ctx too.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := nftLoad(ctx, tp.Proxy, ftpsEdgeRuleset); err != nil {
		t.Fatalf("operator ruleset: %v", err)
	}
	g := startGate(t, tp, gateConfig{
		Mode:   "redirect",
		Listen: []string{"0.0.0.0:8021"},
		Extra:  pki.gateFlags("--tls-intercept", serverV4+"/32"),
	})

	// The client addresses the server; ftpgate answers with the operator's certificate for it.
	ep := endpoint{Name: "edge", Host: serverV4, Port: 21, DataPeer: serverV4}
	curl := ftpsCurl{ns: tp.Client, ca: pki.GateCA}
	py := ftpsPy{ns: tp.Client, ca: pki.GateCA}
	for _, tc := range []struct {
		name string
		c    getPutter
		m    dataMode
	}{{"curl", curl, modeEPSV}, {"curl", curl, modePASV}, {"ftplib", py, modePORT}, {"ftplib", py, modeEPSV}} {
		t.Run(tc.name+"/"+string(tc.m), func(t *testing.T) {
			ftpsGetPut(t, tp, srv, g, tc.c, ep, tc.m, strings.ToLower("edge-"+tc.name+"-"+string(tc.m)), true)
		})
	}
	t.Run("lftp/active", func(t *testing.T) {
		ctx, cancel := withTimeout(context.Background())
		defer cancel()
		local := filepath.Join(t.TempDir(), bigFile)
		if err := runLftp(ctx, tp.Client, ep, lftpRun{CA: pki.GateCA}, "get "+bigFile+" -o "+local); err != nil {
			t.Fatal(tp.diagnose(err))
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Fatal(err)
		}
	})

	// The server's own certificate never reached the client: ftpgate intercepted.
	if _, err := g.logs.Wait(ctx, "tls", func(r logRecord) bool { return r.str("leg") == "client" }); err != nil {
		t.Errorf("no client-leg TLS record: %v", err)
	}

	// The default drop is intact: the operator's forward chain still drops, and a new connection
	// from the client to a listening port of the server (not intercepted) goes nowhere, while the
	// gateway itself reaches it.
	out, _, err := runIn(ctx, tp.Proxy, "nft", "list", "chain", "inet", "edge_operator", "forward")
	if err != nil || !strings.Contains(string(out), "policy drop;") {
		t.Errorf("operator forward chain changed: %v\n%s", err, out)
	}
	probeAddr := hostPort(serverV4, 2121)
	startCountingServer(t, tp.Server, probeAddr)
	if c, err := dialIn(ctx, tp.Proxy, "tcp", probeAddr); err != nil {
		t.Fatalf("the gateway cannot reach %s itself: %v", probeAddr, err)
	} else {
		c.Close()
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if c, err := dialIn(dctx, tp.Client, "tcp", probeAddr); err == nil {
		c.Close()
		t.Errorf("a new connection from the client to %s passed the edge gateway", probeAddr)
	}
	if els := readPinholes(ctx, t, tp.Proxy, ownPinholeSets); len(els) != 0 {
		t.Errorf("pinholes left after the transfers: %v", els)
	}
}
