// Package testenv is what the test suites of several packages share about
// their environment: when a missing prerequisite of a kernel or end-to-end
// test fails it instead of skipping it. Only tests import it.
//
// With CI=true or FTPGATE_E2E=1 (scripts/test.sh sets the latter) a
// missing prerequisite is a failure, never a skip; without either, the
// tests that need root, namespaces or installed servers skip and say what
// would run them.
package testenv

import (
	"os"
	"testing"
)

// Strict reports whether a missing prerequisite must fail the test.
func Strict() bool {
	ci, e2e := os.Getenv("CI"), os.Getenv("FTPGATE_E2E")
	return ci == "true" || ci == "1" || e2e == "1" || e2e == "true"
}

// Prereq fails or skips t, as Strict says, for a missing prerequisite.
func Prereq(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("missing prerequisite (CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
	}
	t.Skipf("missing prerequisite (skipping; CI=true or FTPGATE_E2E=1 makes this a failure): "+format, args...)
}

// NeedRoot is the gate of tests that need root (network namespaces,
// nftables, BPF): it skips t unless Strict, and then fails it unless root.
// what names the tests, as in "the kernel data path tests".
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if !Strict() {
		t.Skipf("set FTPGATE_E2E=1 (as root) to run %s", what)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("CI=true or FTPGATE_E2E=1: %s need root", what)
	}
}
