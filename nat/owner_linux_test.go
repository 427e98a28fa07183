package nat

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// TestTableDiesWithProcess: a process that created table inet ftpgate is
// killed with SIGKILL; the kernel must delete the table within a second.
func TestTableDiesWithProcess(t *testing.T) {
	ns := newNS(t)
	cmd, _, line := startHelper(t, "own-table", "/run/netns/"+ns.name)
	if line != "ready" {
		t.Fatalf("helper: %s", line)
	}
	if _, owned := ownTableOwner(t, ns); !owned {
		t.Fatalf("helper's table has no owner flag:\n%s", listOwnTable(t, ns))
	}
	// While it lives, nobody else can take the table over or clean it up.
	if _, err := New(t.Context(), Config{NetNS: ns.fd()}, testLogger(t)); err == nil ||
		!strings.Contains(err.Error(), "owned by another running process") {
		t.Errorf("New next to a live owner = %v, want an owned-by-another-process error", err)
	}
	if out, err := ns.nftErr("delete", "table", "inet", "ftpgate"); err == nil {
		t.Errorf("nft delete table succeeded against a live owner: %s", out)
	}

	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	took, gone := waitFor(time.Second, func() bool { return listOwnTable(t, ns) == "" })
	if !gone {
		t.Fatalf("table inet ftpgate still there %s after kill -9:\n%s", time.Since(killed), listOwnTable(t, ns))
	}
	t.Logf("table gone %s after kill -9 (wait %s)", time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
}

// TestNoCapNetAdmin: without CAP_NET_ADMIN, New fails with an error that
// says what to do, and IsPermission recognises it.
func TestNoCapNetAdmin(t *testing.T) {
	ns := newNS(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Prereq(t, "setpriv (util-linux) is needed to drop CAP_NET_ADMIN: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Inside the namespace, exec the test binary as root without
	// CAP_NET_ADMIN in its bounding set, so it never gets it.
	cmd := exec.Command("ip", "netns", "exec", ns.name, setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin",
		"--", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=new", helperNetNS+"=")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	var res struct {
		Err        string `json:"err"`
		Permission bool   `json:"permission"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	if res.Err == "" {
		t.Fatal("New without CAP_NET_ADMIN succeeded")
	}
	t.Logf("error without CAP_NET_ADMIN: %s", res.Err)
	for _, want := range []string{"operation not permitted", "CAP_NET_ADMIN", "firewall mode none"} {
		if !strings.Contains(res.Err, want) {
			t.Errorf("error %q does not mention %q", res.Err, want)
		}
	}
	if !res.Permission {
		t.Error("IsPermission(err) = false")
	}
	if got := listOwnTable(t, ns); got != "" {
		t.Errorf("a table appeared anyway:\n%s", got)
	}
}
