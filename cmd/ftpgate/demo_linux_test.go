//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// The tests of `ftpgate demo` run the built binary as a user would, as root,
// one at a time (each start removes the leftovers of earlier runs), and
// check what it printed, how it exited, and that it left nothing behind.

// requireDemo skips unless FTPGATE_E2E=1 (or CI) asks for the kernel tests,
// and then fails if they cannot run.
func requireDemo(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t, "the demo tests (network namespaces, nftables)")
	return ftpgateBinary(t)
}

var labName = regexp.MustCompile(`(?m)^ftpgate demo: .*, lab (ftpgate-demo-[0-9a-f]{6})$`)

// runDemo runs `ftpgate demo args...` to its end and returns its output.
func runDemo(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"demo"}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ftpgate demo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("ftpgate demo %s: exit %d after %s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), time.Since(start).Round(time.Millisecond))
	return string(out), cmd.ProcessState.ExitCode()
}

// lab returns the lab name the demo announced on its first line.
func lab(t *testing.T, out string) string {
	t.Helper()
	m := labName.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no lab name in the output:\n%s", out)
	}
	return m[1]
}

// leftBehind lists what remains of lab: namespaces, its state file, and
// live processes running bin.
func leftBehind(lab, bin string) []string {
	var left []string
	for _, role := range []string{"client", "gateway", "server"} {
		if _, err := os.Stat(filepath.Join("/run/netns", lab+"-"+role)); err == nil {
			left = append(left, "namespace "+lab+"-"+role)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/ftpgate-demo", lab+".json")); err == nil {
		left = append(left, "state file of "+lab)
	}
	return append(left, processesOf(bin)...)
}

// processesOf lists the live (not zombie) processes whose executable is bin.
func processesOf(bin string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		exe, err := os.Readlink(filepath.Join(p, "exe"))
		if err != nil || exe != bin {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i > 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		out = append(out, fmt.Sprintf("process %s: %s", filepath.Base(p), strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

func requireClean(t *testing.T, lab, bin string) {
	t.Helper()
	// A killed process can take a moment to leave /proc.
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = leftBehind(lab, bin); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "; "))
	}
}

// requireLines checks that out has a line matching each pattern.
func requireLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)` + p).MatchString(out) {
			t.Errorf("no line matches %q", p)
		}
	}
}

func TestDemo(t *testing.T) {
	bin := requireDemo(t)
	for _, tc := range []struct {
		mode string
		// the passive reply the client gets: the server's own address when
		// the gateway is transparent, the gateway's as a DMZ relay
		clientPASV string
		blocked    []string
	}{
		{"redirect", `227 Entering Passive Mode \(198,18,1,2,`, []string{
			`=> blocked after 3\.\d\d s: RETR demo\.bin: dial tcp 198\.18\.1\.2:\d+: i/o timeout; the gateway's forward policy dropped [1-9]\d* packet`,
		}},
		{"reverse", `227 Entering Passive Mode \(198,18,0,1,`, []string{
			`=> blocked after .*198\.18\.0\.1:21: connect: connection refused`,
			`=> blocked after 3\.\d\d s: .*198\.18\.1\.2:21: i/o timeout; the gateway's forward policy dropped [1-9]\d* packet`,
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			out, code := runDemo(t, bin, "--mode", tc.mode)
			name := lab(t, out)
			defer requireClean(t, name, bin)
			if code != 0 {
				t.Fatalf("exit status %d, want 0:\n%s", code, out)
			}
			requireLines(t, out, append([]string{
				`^1\. passive download \(PASV\)$`,
				`^   ftpgate -> server   EPSV$`,
				`^   server  -> ftpgate  229 Entering Extended Passive Mode \(\|\|\|3\d{4}\|\)$`,
				`^   pinhole open        198\.18\.0\.2 -> 198\.18\.0\.1:40\d\d\d.*  ttl 10s$`,
				`^   ftpgate -> client   ` + tc.clientPASV,
				`^                       \(the client was answered with ftpgate's own data port without waiting$`,
				`^   pinhole closed      198\.18\.0\.2 -> 198\.18\.0\.1:40\d\d\d`,
				`^2\. active download \(PORT\)$`,
				`^   client  -> ftpgate  PORT 198,18,0,2,\d+,\d+$`,
				`^   client accepted     a data connection from 198\.18\.0\.1:\d+$`,
				`^3\. upload \(EPSV\)$`,
				`^   ftpgate -> client   229 Entering Extended Passive Mode \(\|\|\|40\d\d\d\|\)$`,
				`^4\. the same download with ftpgate stopped$`,
				`ftpgate stopped; its table went with it`,
				`^done in \d+\.\d\d s$`,
			}, tc.blocked...)...)
			// Every transfer's checksum is what was served (downloads) or
			// what the server stored (upload).
			served := regexp.MustCompile(`serving demo\.bin, 32\.0 MiB, sha256 ([0-9a-f]{16})`).FindStringSubmatch(out)
			if served == nil {
				t.Fatalf("no served checksum in the output:\n%s", out)
			}
			got := regexp.MustCompile(`=> downloaded 32\.0 MiB in .* sha256 ([0-9a-f]{16})\.\.\. matches the served file`).FindAllStringSubmatch(out, -1)
			if len(got) != 2 {
				t.Errorf("%d matching downloads, want 2 (passive, active):\n%s", len(got), out)
			}
			for _, g := range got {
				if g[1] != served[1] {
					t.Errorf("downloaded sha256 %s..., served %s...", g[1], served[1])
				}
			}
			requireLines(t, out, `=> uploaded 16\.0 MiB in .* sha256 [0-9a-f]{16}\.\.\. matches the file the server stored`)
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// startDemo starts the demo and returns once it printed a line matching
// until. wait reads the rest of the output and waits for the demo's exit.
func startDemo(t *testing.T, bin, until string) (cmd *exec.Cmd, wait func() string) {
	t.Helper()
	cmd = exec.Command(bin, "demo")
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder // written by the reader until it ends
	seen, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(r)
		found := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !found && strings.Contains(sc.Text(), until) {
				found = true
				close(seen)
			}
		}
	}()
	wait = func() string {
		<-ended // all reads done before Wait, as os/exec requires
		_ = cmd.Wait()
		return out.String()
	}
	select {
	case <-seen:
	case <-ended:
		t.Fatalf("the demo ended before %q:\n%s", until, wait())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no %q within 30 s:\n%s", until, wait())
	}
	return cmd, wait
}

// TestDemoInterrupt sends SIGINT in the middle of a transfer step: the demo
// removes its lab and exits 130.
func TestDemoInterrupt(t *testing.T) {
	bin := requireDemo(t)
	cmd, wait := startDemo(t, bin, "1. passive download")
	if left := processesOf(bin); len(left) < 2 {
		t.Errorf("before SIGINT: %d processes of the lab, want the server and ftpgate at least: %v", len(left), left)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	out := wait()
	name := lab(t, out)
	requireClean(t, name, bin)
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit status %d, want 130:\n%s", code, out)
	}
	requireLines(t, out, `^interrupted: lab `+name+` removed$`)
}

// TestDemoKill9 kills the demo outright midway: its lab stays, and the next
// start removes it before building its own.
func TestDemoKill9(t *testing.T) {
	bin := requireDemo(t)
	cmd, wait := startDemo(t, bin, "1. passive download")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := lab(t, wait())
	if _, err := os.Stat(filepath.Join("/run/netns", killed+"-gateway")); err != nil {
		t.Fatalf("after kill -9 the lab's gateway namespace is gone already (%v): nothing left to test", err)
	}
	next, code := runDemo(t, bin)
	requireClean(t, killed, bin)
	requireClean(t, lab(t, next), bin)
	if code != 0 {
		t.Fatalf("next start: exit status %d, want 0:\n%s", code, next)
	}
	requireLines(t, next, `^\* removed leftovers of `+killed+`: .*namespace `+killed+`-gateway`)
}

// TestDemoKeepThenClean leaves the lab up with --keep (ftpgate and the
// server still running, commands printed) and removes it with --clean.
func TestDemoKeepThenClean(t *testing.T) {
	bin := requireDemo(t)
	out, code := runDemo(t, bin, "--keep")
	name := lab(t, out)
	defer requireClean(t, name, bin)
	if code != 0 {
		t.Fatalf("exit status %d, want 0:\n%s", code, out)
	}
	requireLines(t, out,
		`^The lab stays up \(--keep\)`,
		`^  ip netns exec `+name+`-client curl -s ftp://demo:demo@198\.18\.1\.2/demo\.bin`,
		`^Remove the lab: ftpgate demo --clean`)
	if procs := processesOf(bin); len(procs) != 2 {
		t.Errorf("with --keep: %d processes running, want 2 (ftpgate, server): %v", len(procs), procs)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name+"-gateway")); err != nil {
		t.Errorf("with --keep the gateway namespace is gone: %v", err)
	}
	// --clean removes a kept lab (a plain start leaves it alone).
	clean, code := runDemo(t, bin, "--clean")
	if code != 0 {
		t.Fatalf("--clean: exit status %d:\n%s", code, clean)
	}
	requireLines(t, clean, `^\* removed leftovers of `+name+`: process \d+ \(server\), process \d+ \(ftpgate\), namespace `)
}
