package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSysmonReexec runs the built program: "ftpgate run" executes itself
// again with schedtrace in GODEBUG (same process, same arguments, the rest
// of the environment kept) and logs that sysmon polls; with --sysmon park,
// or with the operator's own schedtrace, it does not.
func TestSysmonReexec(t *testing.T) {
	bin := ftpgateBinary(t)
	for _, tc := range []struct {
		name, godebug string
		args          []string
		wantGodebug   string
		wantLog       string
	}{
		{"default", "", nil, schedtraceForever, `"sysmon":"poll"`},
		{"kept", "gctrace=0", nil, "gctrace=0," + schedtraceForever, `"sysmon":"poll"`},
		{"park", "", []string{"--sysmon", "park"}, "", `"sysmon":"park"`},
		{"operator", "schedtrace=0", nil, "schedtrace=0", `"sysmon":"park"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An upstream nobody dials: ftpgate only starts and is stopped.
			args := append([]string{"run", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--firewall", "none"}, tc.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = []string{"FTPGATE_SYSMON_TEST=kept"}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			if tc.godebug != "" {
				cmd.Env = append(cmd.Env, "GODEBUG="+tc.godebug)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
			}()
			lines := make(chan string, 64)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			// Once it logs, the process runs its last program: read that
			// program's environment and arguments.
			var logged []string
			timeout := time.After(10 * time.Second)
		wait:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("ftpgate ended before its \"go runtime\" line:\n%s", strings.Join(logged, "\n"))
					}
					logged = append(logged, l)
					if strings.Contains(l, `"msg":"go runtime"`) {
						break wait
					}
				case <-timeout:
					t.Fatalf("no \"go runtime\" line within 10s:\n%s", strings.Join(logged, "\n"))
				}
			}
			proc := "/proc/" + strconv.Itoa(cmd.Process.Pid)
			environ, err := os.ReadFile(proc + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			var godebug string
			kept := false
			for kv := range strings.SplitSeq(string(environ), "\x00") {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					godebug = v
				}
				kept = kept || kv == "FTPGATE_SYSMON_TEST=kept"
			}
			if godebug != tc.wantGodebug {
				t.Errorf("GODEBUG = %q, want %q", godebug, tc.wantGodebug)
			}
			if !kept {
				t.Errorf("the environment lost FTPGATE_SYSMON_TEST: %q", environ)
			}
			cmdline, err := os.ReadFile(proc + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), append([]string{bin}, args...); !slices.Equal(got, want) {
				t.Errorf("arguments %q, want %q", got, want)
			}
			// The process keeps its name (ps, pgrep): the file's, not "exe".
			if comm, err := os.ReadFile(proc + "/comm"); err != nil || strings.TrimSpace(string(comm)) != "ftpgate" {
				t.Errorf("process name %q (%v), want ftpgate", comm, err)
			}
			if l := logged[len(logged)-1]; !strings.Contains(l, tc.wantLog) {
				t.Errorf("log line %s, want %s in it", l, tc.wantLog)
			}
		})
	}
}

// TestSelfPath: the name a process was started by, while it is still the
// running file; else the file's resolved path.
func TestSelfPath(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := selfPath(os.Args[0]); got != os.Args[0] {
		t.Errorf("selfPath(%q) = %q, want the name it was started by", os.Args[0], got)
	}
	// Another file by that name: not this program.
	other := filepath.Join(t.TempDir(), "ftpgate")
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := selfPath(other); got != exe {
		t.Errorf("selfPath(%q) = %q, want the running file %q", other, got, exe)
	}
}
