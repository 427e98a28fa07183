package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	openwrtInit       = "openwrt/ftpgate.init"
	openwrtCaps       = "openwrt/ftpgate.capabilities.json"
	openwrtTablePost  = "openwrt/fw4-table-post.nft"
	openwrtChainInput = "openwrt/fw4-chain-pre-input.nft"
	openwrtConfig     = "config/openwrt-gateway.yaml"
)

// fw4Scaffold is the part of fw4's generated ruleset the snippets go into:
// fw4 includes table-post/*.nft inside table inet fw4 and
// chain-pre/input/*.nft at the top of its input chain, whose policy (with
// the WAN zone's reject) refuses everything else.
const fw4Scaffold = `table inet fw4
delete table inet fw4
table inet fw4 {
	include "TABLE_POST"
	chain input {
		type filter hook input priority filter; policy drop;
		include "CHAIN_PRE_INPUT"
		ct state established,related accept
		iifname "lo" accept
	}
}
`

// TestOpenWrtFirewallInclude checks the fw4 snippets with nft -c inside the
// scaffold of fw4's table, in a throw-away network namespace, then loads
// them there and starts ftpgate in external-set mode against fw4's sets,
// which it checks at startup (key types, timeout flag).
func TestOpenWrtFirewallInclude(t *testing.T) {
	requireRoot(t, "nft in a network namespace")
	nft := lookPath(t, "nft", "nftables")
	lookPath(t, "ip", "iproute2")
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	scaffold := filepath.Join(t.TempDir(), "fw4.nft")
	writeFile(t, scaffold, strings.NewReplacer("TABLE_POST", abs(openwrtTablePost), "CHAIN_PRE_INPUT", abs(openwrtChainInput)).Replace(fw4Scaffold))
	ns := testNetns(t)
	for _, args := range [][]string{{"-c", "-f", scaffold}, {"-f", scaffold}} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, nft}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, nft, "list", "chain", "inet", "fw4", "input").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "@ftpgate_pinholes4") || !strings.Contains(string(out), "@ftpgate_pinholes6") {
		t.Fatalf("fw4 input chain lacks the pinhole rules: %v\n%s", err, out)
	}

	// ftpgate accepts fw4's sets: external-set mode, the example's firewall
	// settings, listening in the namespace.
	bin := hostBinary(t)
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "--log-format", "console",
		"--listen", "198.18.77.1:2121", "--upstream", "198.18.77.2:21",
		"--firewall", "external-set", "--firewall-table", "fw4")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	stop := startAndWait(t, cmd, &log, "ftpgate started", false)
	if err := stop(); err != nil {
		t.Errorf("ftpgate after SIGTERM: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "external-set") {
		t.Errorf("ftpgate did not report external-set mode:\n%s", log.String())
	}
}

// TestOpenWrtInitScript parses the procd init script with sh -n, then runs
// its start_service and reload_service with procd's functions stubbed, and
// the real ftpgate checking the example config.
func TestOpenWrtInitScript(t *testing.T) {
	sh := lookPath(t, "sh", "dash")
	if out, err := exec.Command(sh, "-n", openwrtInit).CombinedOutput(); err != nil {
		t.Fatalf("sh -n %s: %v\n%s", openwrtInit, err, out)
	}
	b, err := os.ReadFile(openwrtInit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#!/bin/sh /etc/rc.common\n", "\nUSE_PROCD=1\n", "\nreload_service() {"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", openwrtInit, want)
		}
	}
	bin := hostBinary(t)
	stubs := `
procd_open_instance() { echo "open $*"; }
procd_set_param() { echo "param $*"; }
procd_close_instance() { echo "close"; }
procd_send_signal() { echo "signal $*"; }
logger() { echo "logger $*"; }
. "$1"
PROG="$2"
CONF="$3"
CAPS="$4"
"$5"
`
	run := func(conf, fn string) (string, error) {
		out, err := exec.Command(sh, "-c", stubs, "sh", openwrtInit, bin, conf, openwrtCaps, fn).CombinedOutput()
		return string(out), err
	}
	out, err := run(openwrtConfig, "start_service")
	if err != nil {
		t.Fatalf("start_service: %v\n%s", err, out)
	}
	for _, want := range []string{"open ftpgate\n", "param command " + bin + " run --config " + openwrtConfig + "\n",
		"param capabilities " + openwrtCaps + "\n", "param no_new_privs 1\n", "close\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("start_service did not %q:\n%s", want, out)
		}
	}
	out, err = run(openwrtConfig, "reload_service")
	if err != nil || !strings.Contains(out, "signal ftpgate ftpgate HUP\n") {
		t.Errorf("reload_service: %v, want it to send HUP:\n%s", err, out)
	}
	// A broken file: neither starts nor reloads, and says where.
	bad := filepath.Join(t.TempDir(), "ftpgate.yaml")
	writeFile(t, bad, "mode: redirect\nfirewal: {mode: none}\n")
	for _, fn := range []string{"start_service", "reload_service"} {
		out, err := run(bad, fn)
		if err == nil || strings.Contains(out, "open ") || strings.Contains(out, "signal ") || !strings.Contains(out, bad+":2: unknown setting firewal") {
			t.Errorf("%s with a broken config: %v\n%s", fn, err, out)
		}
	}

	var caps map[string][]string
	cb, err := os.ReadFile(openwrtCaps)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cb, &caps); err != nil {
		t.Fatalf("%s: %v", openwrtCaps, err)
	}
	for _, set := range []string{"bounding", "effective", "ambient", "permitted", "inheritable"} {
		if !slices.Equal(caps[set], []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}) {
			t.Errorf("%s %s: %q, want exactly CAP_NET_ADMIN and CAP_NET_BIND_SERVICE", openwrtCaps, set, caps[set])
		}
	}
}
