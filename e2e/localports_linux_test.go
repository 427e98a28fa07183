//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// TestFewLocalPorts: ftpgate's connections to the server come from a bound address (the server
// leg of every passive transfer from the control connection's own address, so the server sees
// one peer). An upload leaves that leg in TIME_WAIT on ftpgate's side for a minute, since
// ftpgate closes it first. With the port picked at bind time, each such socket holds its port
// against every later bind on that address, whatever the destination: a busy relay of small
// uploads runs out of ephemeral ports (some 28,000 per minute, about 470 uploads a second) and
// its transfers fail with EADDRINUSE. ftpgate binds the address only and lets connect pick the
// port for the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT). Here the gateway's namespace has 8
// ephemeral ports and lftp uploads the 200-file directory in one session, all of which must
// arrive intact, and the transfer records must all say 226. The control connection is bound
// too: ftpgate runs with --upstream-source, a second address of the gateway toward the server,
// which the server must see as its only client (vsftpd refuses a data connection from any
// other address than the control connection's, so the uploads show the data legs used it too).
func TestFewLocalPorts(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needLftp, needFtpgate)
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ports = "45000 45007"
	if out, err := nsrun.Command(ctx, tp.Proxy, "sysctl", "-qw", "net.ipv4.ip_local_port_range="+ports).CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v: %s", tp.Proxy, err, out)
	}
	const source = "198.18.1.10" // on the gateway's link to the server, beside proxyServerV4
	if out, err := nsrun.Command(ctx, tp.Proxy, "ip", "addr", "add", source+"/24", "dev", "s0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add in %s: %v: %s", tp.Proxy, err, out)
	}
	before, err := vsftpdConnects(srv)
	if err != nil {
		t.Fatal(err)
	}
	g := startGate(t, tp, gateConfig{Extra: []string{"--upstream-source", source}})
	dst := "mirror-up-few-ports"
	if err := runLftp(ctx, tp.Client, gateV4(), lftpRun{Passive: true, Transfers: mirrorFiles},
		"mirror -R "+filepath.Join(suite.fixtures, mirrorDir)+" "+dst); err != nil {
		t.Fatal(tp.diagnose(err))
	}
	got, err := treeSums(filepath.Join(srv.Root, dst))
	if err != nil {
		t.Fatalf("uploaded tree: %v", err)
	}
	if err := diffTrees(got, fixtureTree(mirrorDir)); err != nil {
		t.Fatalf("lftp mirror -R with %s as the gateway's ephemeral ports, on the server: %v", ports, err)
	}
	after, err := vsftpdConnects(srv)
	if err != nil {
		t.Fatal(err)
	}
	if from := after[len(before):]; len(from) == 0 || slices.ContainsFunc(from, func(a string) bool { return a != source }) {
		t.Errorf("the server's clients during the uploads: %v; want only --upstream-source %s", from, source)
	}
	recs := g.logs.Records("transfer")
	var bad []string
	for _, r := range recs {
		if code := fmt.Sprint(r["code"]); code != "226" {
			bad = append(bad, fmt.Sprintf("%v %v: %s", r["command"], r["path"], code))
		}
	}
	if len(recs) < mirrorFiles || len(bad) > 0 {
		t.Errorf("%d transfer records, want at least %d, all 226; not 226: %s", len(recs), mirrorFiles, strings.Join(bad, "; "))
	}
}
