//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMPTCPClients: a client whose sockets are Multipath TCP (curl under mptcpize, as on a
// host that runs its programs that way) downloads through ftpgate as the transparent edge
// gateway (redirect and tproxy) and as a reverse proxy, passive and active, over IPv4 and
// IPv6, each file whole. ftpgate's listeners are plain TCP on purpose, so every MP_CAPABLE
// SYN the client sends is answered without MPTCP and the client falls back to TCP: the
// counters of the client's namespace must show as many fallbacks as MPTCP SYNs, and more
// than none. An MPTCP socket has no conntrack original destination (SO_ORIGINAL_DST fails
// with EOPNOTSUPP), so redirect mode could not serve such a client, and an exact pinhole
// admits no second subflow anyway.
func TestMPTCPClients(t *testing.T) {
	t.Parallel()
	for _, shape := range []string{"redirect", "tproxy", "reverse"} {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, needVsftpd, needCurl, needMPTCPize, needFtpgate)
			tp := newTopology(t)
			startServer(t, tp, vsftpd)
			v4, v6, cfg := gateV4(), gateV6(), gateConfig{}
			if shape != "reverse" {
				makeGateway(t, tp)
				v4, v6, cfg = viaGatewayV4(), viaGatewayV6(), gatewayConfig(shape)
			}
			startGate(t, tp, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			before, err := mptcpCounters(ctx, tp.Client)
			if err != nil {
				t.Fatal(err)
			}
			c := curlClient{ns: tp.Client, mptcp: true}
			for _, r := range []struct {
				ep endpoint
				m  dataMode
			}{{v4, modeEPSV}, {v4, modePORT}, {v6, modeEPSV}, {v6, modeEPRT}} {
				local := filepath.Join(t.TempDir(), bigFile)
				if err := c.Get(ctx, r.ep, r.m, bigFile, local); err != nil {
					t.Errorf("%s %s: %v", r.ep.Host, r.m, tp.diagnose(err))
					continue
				}
				if err := sameFile(local, bigFile); err != nil {
					t.Errorf("%s %s: %v", r.ep.Host, r.m, err)
				}
			}
			after, err := mptcpCounters(ctx, tp.Client)
			if err != nil {
				t.Fatal(err)
			}
			syns := after[mibMPCapableSYNTX] - before[mibMPCapableSYNTX]
			fellBack := after[mibMPCapableFallbackSYNACK] - before[mibMPCapableFallbackSYNACK]
			if syns == 0 {
				t.Fatalf("the client sent no MP_CAPABLE SYN (%s %d → %d): curl did not run with MPTCP sockets, so this test checked nothing",
					mibMPCapableSYNTX, before[mibMPCapableSYNTX], after[mibMPCapableSYNTX])
			}
			if fellBack != syns {
				t.Errorf("the client sent %d MP_CAPABLE SYNs and fell back to TCP on %d of them; want every one answered as plain TCP by ftpgate",
					syns, fellBack)
			}
		})
	}
}

// The MPTCP counters of a namespace that TestMPTCPClients reads (/proc/net/netstat, MPTcpExt).
const (
	mibMPCapableSYNTX          = "MPTcpExtMPCapableSYNTX"          // MP_CAPABLE SYNs sent by a connect
	mibMPCapableFallbackSYNACK = "MPTcpExtMPCapableFallbackSYNACK" // a connect fell back: its SYN-ACK had no MP_CAPABLE
)

// mptcpCounters reads the two MPTCP counters of namespace ns with nstat (absolute values,
// without touching nstat's history file).
func mptcpCounters(ctx context.Context, ns string) (map[string]uint64, error) {
	out, stderr, err := runIn(ctx, ns, "nstat", "-asz", mibMPCapableSYNTX, mibMPCapableFallbackSYNACK)
	if err != nil {
		return nil, fmt.Errorf("nstat in %s: %w: %s", ns, err, stderr)
	}
	got := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "MPTcpExt") {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("nstat in %s: %q: %w", ns, line, err)
		}
		got[f[0]] = n
	}
	for _, k := range []string{mibMPCapableSYNTX, mibMPCapableFallbackSYNACK} {
		if _, ok := got[k]; !ok {
			return nil, fmt.Errorf("nstat in %s has no %s:\n%s", ns, k, out)
		}
	}
	return got, nil
}
