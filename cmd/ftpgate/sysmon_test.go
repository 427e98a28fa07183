package main

import (
	"strings"
	"testing"
)

// TestSysmonGodebug: poll adds schedtrace to GODEBUG, keeping what is
// there; park, or a GODEBUG that names schedtrace already, leaves it alone.
func TestSysmonGodebug(t *testing.T) {
	for _, tc := range []struct {
		mode, godebug, want string
		exec                bool
	}{
		{"", "", schedtraceForever, true},
		{"poll", "", schedtraceForever, true},
		{"poll", "http2client=0", "http2client=0," + schedtraceForever, true},
		{"park", "", "", false},
		{"park", "http2client=0", "", false},
		{"poll", "schedtrace=1000", "", false}, // the operator's own trace
		{"poll", "gctrace=1,schedtrace=0", "", false},
	} {
		got, exec := sysmonGodebug(tc.mode, tc.godebug)
		if got != tc.want || exec != tc.exec {
			t.Errorf("sysmonGodebug(%q, %q) = %q, %v; want %q, %v", tc.mode, tc.godebug, got, exec, tc.want, tc.exec)
		}
	}
	for godebug, want := range map[string][2]bool{ // named, polls
		"":                             {false, false},
		schedtraceForever:              {true, true},
		"a=1," + schedtraceForever:     {true, true},
		"schedtrace=0":                 {true, false},
		"schedtrace=-5":                {true, false},
		"schedtrace=x":                 {true, false},
		"schedtrace=0,schedtrace=1000": {true, false}, // the runtime takes the first
		"schedtracex=1000":             {false, false},
	} {
		if named, polls := schedtrace(godebug); named != want[0] || polls != want[1] {
			t.Errorf("schedtrace(%q) = %v, %v; want %v, %v", godebug, named, polls, want[0], want[1])
		}
	}
	for _, mode := range []string{"", "poll", "park"} {
		if err := checkSysmon(mode); err != nil {
			t.Errorf("checkSysmon(%q): %v", mode, err)
		}
	}
	if err := checkSysmon("spin"); err == nil || !strings.Contains(err.Error(), "want poll or park") {
		t.Errorf("checkSysmon(spin) = %v, want an error naming poll and park", err)
	}
}
