package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// readProcStatusCapEff reads CapEff from /proc/self/status, the kernel's
// own word on the effective set, to check capget against.
func readProcStatusCapEff() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}

// TestEffectiveCapabilitiesOfThisProcess reads the real set: the test runs
// as root with CAP_NET_ADMIN (kernel tests need it) or as a user without.
func TestEffectiveCapabilitiesOfThisProcess(t *testing.T) {
	have, err := effectiveCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	status, err := readProcStatusCapEff()
	if err != nil {
		t.Fatal(err)
	}
	if have != status {
		t.Errorf("capget says %#x, /proc/self/status CapEff %#x", have, status)
	}
}
