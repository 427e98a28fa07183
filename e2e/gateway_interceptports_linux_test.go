//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestGatewayInterceptPorts: an FTP server on port 2121 behind the gateway. With
// --intercept-ports 21,2121 ftpgate intercepts its control connections and transfers work;
// with the default (port 21 only) nothing intercepts them, the operator's default-drop forward
// chain drops them (the connection times out), and ftpgate sees no session.
func TestGatewayInterceptPorts(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needFtpgate)
	tp := newTopology(t)
	const port = 2121
	// Its own passive port range, and ready once it answers in its own namespace: the gateway's
	// rules do not matter.
	srv := startVsftpd(t, tp.Server, vsftpdOptions{Port: port, PassiveLo: 30500, PassiveHi: 30599})
	makeGateway(t, tp)
	eps := []endpoint{{"gateway", serverV4, port, serverV4}, {"gateway", serverV6, port, serverV6}}
	c := curlClient{ns: tp.Client}

	t.Run("intercepted", func(t *testing.T) {
		g := startGate(t, tp, gatewayConfig("redirect", "--intercept-ports", "21,2121"))
		for _, ep := range eps {
			ctx, cancel := withTimeout(context.Background())
			defer cancel()
			local := filepath.Join(t.TempDir(), bigFile)
			if err := c.Get(ctx, ep, modeEPSV, bigFile, local); err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Errorf("download: %v", err)
			}
			active := modePORT
			if ep.v6() {
				active = modeEPRT
			}
			remote := fmt.Sprintf("up-%d-%s.bin", port, strings.ToLower(string(active)))
			if err := c.Put(ctx, ep, active, local, remote); err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
				t.Errorf("upload, on the server: %v", err)
			}
			checkTransferLog(t, g, "STOR", remote, bigSize)
		}
		ends := g.logs.Records("session end")
		for _, ep := range eps {
			want := hostPort(ep.Host, port)
			if !slices.ContainsFunc(ends, func(r logRecord) bool { return r.str("server") == want }) {
				t.Errorf("ftpgate logged no session with server %s:\n%s", want, excerpt(ends, 5))
			}
		}
	})

	t.Run("not-intercepted", func(t *testing.T) {
		g := startGate(t, tp, gatewayConfig("redirect"))
		var wg sync.WaitGroup
		errs := make([]error, len(eps))
		for i, ep := range eps {
			wg.Go(func() {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				local := filepath.Join(t.TempDir(), fmt.Sprintf("%d-%s", i, bigFile))
				_, err := c.run(ctx, ep, modeEPSV, "--connect-timeout", "3", "--max-time", "10", "-o", local, ep.url(bigFile))
				var exit *exec.ExitError
				switch {
				case err == nil:
					errs[i] = fmt.Errorf("curl to %s:%d succeeded without interception of port %d", ep.Host, port, port)
				case !errors.As(err, &exit) || exit.ExitCode() != 28:
					errs[i] = fmt.Errorf("curl to %s:%d: %v; want a connect timeout (exit status 28)", ep.Host, port, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Error(err)
		}
		if recs := g.logs.Records("session start"); len(recs) != 0 {
			t.Errorf("ftpgate saw sessions although port %d is not intercepted:\n%s", port, excerpt(recs, 5))
		}
	})
}
