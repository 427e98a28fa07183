package main

import "testing"

// TestProcs: --procs wins; without it $GOMAXPROCS is left alone; otherwise
// half of what the runtime chose, at least one; a negative count is refused.
func TestProcs(t *testing.T) {
	for _, tc := range []struct {
		n, current int
		env        string
		want       int
		set, err   bool
	}{
		{0, 2, "", 1, true, false},
		{0, 1, "", 1, true, false},
		{0, 16, "", 8, true, false},
		{0, 3, "3", 3, false, false},
		// The runtime has already applied $GOMAXPROCS: procs keeps the
		// runtime's value and does not read the variable itself.
		{0, 6, "8", 6, false, false},
		{4, 2, "3", 4, true, false},
		{-1, 2, "", 0, false, true},
	} {
		got, set, err := procs(tc.n, tc.current, tc.env)
		if got != tc.want || set != tc.set || (err != nil) != tc.err {
			t.Errorf("procs(%d, %d, %q) = %d, %v, %v; want %d, %v, error %v", tc.n, tc.current, tc.env, got, set, err, tc.want, tc.set, tc.err)
		}
	}
}
