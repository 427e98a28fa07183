package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckTouchesNoKernel runs `ftpgate check` under strace on an
// own-table tproxy config (the mode whose run touches the most kernel
// state) and proves that it opened no netlink socket and bound or listened
// on nothing.
func TestCheckTouchesNoKernel(t *testing.T) {
	strace := lookPath(t, "strace", "strace")
	bin := hostBinary(t)
	p := filepath.Join(t.TempDir(), "ftpgate.yaml")
	writeFile(t, p, "mode: tproxy\nfirewall: {mode: own-table}\nadmin_listen: 127.0.0.1:9121\n")
	trace := filepath.Join(t.TempDir(), "trace")
	out, err := exec.Command(strace, "-f", "-qq", "-o", trace, "-e", "trace=socket,bind,listen",
		bin, "check", "--config", p).CombinedOutput()
	if err != nil {
		t.Fatalf("ftpgate check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "is valid") {
		t.Fatalf("ftpgate check did not accept the config:\n%s", out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "AF_NETLINK") || strings.Contains(l, "listen(") || strings.Contains(l, "bind(") {
			t.Errorf("ftpgate check touched the kernel: %s", l)
		}
	}
}
