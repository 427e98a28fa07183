package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// These tests run the static ftpgate as the unprivileged user nobody
// (setpriv), as the systemd unit and the OpenWrt capabilities file do,
// inside a throw-away network namespace of their own, so that nothing they
// do reaches the root namespace's firewall.

// requireSetpriv checks what running as nobody in a namespace needs.
func requireSetpriv(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Prereq(t, "running ftpgate as another user in a network namespace needs root")
	}
	for _, bin := range []string{"ip", "nft", "setpriv"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Prereq(t, "the %s binary (apt-get install -y iproute2 nftables util-linux): %v", bin, err)
		}
	}
	if _, err := user.Lookup("nobody"); err != nil {
		testenv.Prereq(t, "the user nobody: %v", err)
	}
	if _, err := user.LookupGroup("nogroup"); err != nil {
		testenv.Prereq(t, "the group nogroup: %v", err)
	}
}

// asNobody returns the command that runs ftpgate with args in ns as
// nobody:nogroup with exactly the ambient capabilities caps (setpriv
// spelling, e.g. "+net_admin"), or none.
func asNobody(ctx context.Context, ns, bin string, caps []string, args ...string) *exec.Cmd {
	sp := []string{"netns", "exec", ns, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}
	if len(caps) > 0 {
		c := strings.Join(caps, ",")
		sp = append(sp, "--inh-caps="+c, "--ambient-caps="+c)
	}
	sp = append(sp, "--", bin)
	return exec.CommandContext(ctx, "ip", append(sp, args...)...)
}

// nftTables lists the tables in ns.
func nftTables(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	return string(out)
}

func TestRunAsNobodyWithoutCapabilities(t *testing.T) {
	requireSetpriv(t)
	bin := hostBinary(t)
	ns := testNetns(t)
	tests := []struct {
		name          string
		args          []string
		want, notWant string
	}{
		{"own-table firewall", []string{"--listen", "198.18.77.1:2121"}, "missing capability CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"},
		{"port 21, firewall none", []string{"--listen", "198.18.77.1:21", "--firewall", "none"}, "missing capability CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"},
		{"tproxy, firewall none", []string{"--mode", "tproxy", "--listen", "198.18.77.1:8021", "--firewall", "none"}, "missing capability CAP_NET_ADMIN (mode tproxy", "CAP_NET_RAW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"run", "--log-format", "console"}, tt.args...)
			if !slices.Contains(tt.args, "--mode") {
				args = append(args, "--upstream", "198.18.77.2:21")
			}
			out, err := asNobody(ctx, ns, bin, nil, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("ftpgate run as nobody: %v, want exit status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) || strings.Contains(string(out), tt.notWant) {
				t.Errorf("output does not name %q (or names %q):\n%s", tt.want, tt.notWant, out)
			}
			if tables := nftTables(t, ns); tables != "" {
				t.Errorf("ftpgate left tables behind after refusing to start:\n%s", tables)
			}
		})
	}
}

// TestRunAsNobodyWithAmbientCapabilities starts ftpgate as nobody with
// ambient CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only, as the systemd unit
// does: it listens on port 21, installs its owned table, follows an
// interface's address (advertise interface:lo, as the example gateway
// configs do for their upstream source), and on SIGTERM exits cleanly and
// the table is gone.
func TestRunAsNobodyWithAmbientCapabilities(t *testing.T) {
	requireSetpriv(t)
	bin := hostBinary(t)
	ns := testNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := asNobody(ctx, ns, bin, []string{"+net_admin", "+net_bind_service"},
		"run", "--log-format", "console", "--listen", "198.18.77.1:21", "--upstream", "198.18.77.2:21",
		"--advertise", "interface:lo")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stop := startAndWait(t, cmd, &out, "ftpgate started", false)
	if !strings.Contains(out.String(), `"addr": "198.18.77.1:21"`) {
		t.Errorf("no listener on port 21 in the log:\n%s", out.String())
	}
	if tables := nftTables(t, ns); !strings.Contains(tables, "table inet ftpgate") {
		t.Errorf("the owned table is missing: %q", tables)
	}
	// The table came after ftpgate executed itself again for the runtime's
	// sysmon: the ambient capabilities survived that.
	if !strings.Contains(out.String(), `{"sysmon": "poll"}`) {
		t.Errorf("no sysmon poll line in the log:\n%s", out.String())
	}
	// ip netns exec execs setpriv, which execs ftpgate: cmd's pid is
	// ftpgate's own.
	if err := stop(); err != nil {
		t.Errorf("ftpgate exited with %v after SIGTERM:\n%s", err, out.String())
	}
	if tables := nftTables(t, ns); tables != "" {
		t.Errorf("tables after exit: %q", tables)
	}
}
