//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// The benchmark's topology. Only 198.18.0.0/15 is used; nothing appears in the root namespace.
//
//	client ns ──veth── gateway ns (routes; ftpgate runs here) ──veth── server ns (vsftpd)
const (
	clientV4  = "198.18.0.2"
	gwLANV4   = "198.18.0.1" // the gateway toward the client (ftpgate's reverse listener)
	gwWANV4   = "198.18.1.1"
	serverV4  = "198.18.1.2"
	lanIf     = "c0"
	wanIf     = "s0"
	ftpPort   = 21
	idlePort  = 2100 // the minimal upstream of the idle-sessions test
	adminAddr = "127.0.0.1:9121"
)

// topology is the benchmark's three namespaces.
type topology struct {
	Prefix, Client, Gateway, Server string
}

// newTopology creates the namespaces and links. Call remove even when it fails.
func newTopology(ctx context.Context) (*topology, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("random namespace prefix: %w", err)
	}
	p := "fgb-" + hex.EncodeToString(b[:])
	tp := &topology{Prefix: p, Client: p + "-client", Gateway: p + "-gw", Server: p + "-server"}
	var cmds [][]string
	for _, ns := range tp.all() {
		cmds = append(cmds, []string{"netns", "add", ns}, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	for _, l := range []struct{ ns, ifname, gw, peer string }{
		{tp.Client, lanIf, gwLANV4, clientV4},
		{tp.Server, wanIf, gwWANV4, serverV4},
	} {
		// Created inside the gateway namespace with the peer moved straight into its own.
		cmds = append(cmds,
			[]string{"-n", tp.Gateway, "link", "add", l.ifname, "type", "veth", "peer", "name", "eth0", "netns", l.ns},
			[]string{"-n", tp.Gateway, "addr", "add", l.gw + "/24", "dev", l.ifname},
			[]string{"-n", tp.Gateway, "link", "set", l.ifname, "up"},
			[]string{"-n", l.ns, "addr", "add", l.peer + "/24", "dev", "eth0"},
			[]string{"-n", l.ns, "link", "set", "eth0", "up"},
			[]string{"-n", l.ns, "route", "add", "default", "via", l.gw},
		)
	}
	for _, c := range cmds {
		if err := runIP(ctx, c...); err != nil {
			return tp, fmt.Errorf("build topology %s: %w", p, err)
		}
	}
	for _, s := range []struct{ ns, key, val string }{
		{tp.Gateway, "net.ipv4.ip_forward", "1"},
		// Thousands of short data connections per round: keep the servers' TIME_WAIT from
		// refusing a reused 4-tuple (as the e2e suite does).
		{tp.Server, "net.ipv4.tcp_max_tw_buckets", "0"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", s.ns, "sysctl", "-qw", s.key+"="+s.val).CombinedOutput(); err != nil {
			return tp, fmt.Errorf("sysctl %s in %s: %w: %s", s.key, s.ns, err, bytes.TrimSpace(out))
		}
	}
	return tp, nil
}

func (tp *topology) all() []string { return []string{tp.Client, tp.Gateway, tp.Server} }

// remove kills what still runs in the namespaces (all of it started by the benchmark) and
// deletes them.
func (tp *topology) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range tp.all() {
		for attempt := 0; attempt < 50; attempt++ {
			out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
			pids := strings.Fields(string(out))
			if err != nil || len(pids) == 0 {
				break
			}
			for _, s := range pids {
				if pid, err := strconv.Atoi(s); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := runIP(ctx, "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// runIn runs a command in ns to completion and returns its stdout.
func runIn(ctx context.Context, ns, name string, args ...string) ([]byte, error) {
	cmd := nsrun.Command(ctx, ns, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s in %s: %w: %s", filepath.Base(name), ns, err, tailString(stderr.String(), 5))
	}
	return stdout.Bytes(), nil
}

// process is a long-running program the benchmark started (vsftpd, ftpgate, strace).
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills the process group.
func (p *process) stop(grace time.Duration) {
	p.once.Do(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		_ = nsrun.KillGroup(p.pid(), syscall.SIGKILL)
		<-p.done
	})
}

// procCPU returns a process's user+system CPU seconds from /proc/PID/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of pid %d: %w", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ
}

// procStatus returns a field of /proc/PID/status in KiB (VmRSS, VmHWM) or as a number (Threads).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stealSeconds is the steal time of all CPUs so far, from /proc/stat's "cpu" line (the
// eighth value, in USER_HZ ticks): time a virtual machine's CPUs were ready to run and the
// hypervisor ran something else.
func stealSeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	v, err := strconv.ParseFloat(f[8], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/stat steal: %w", err)
	}
	return v / 100, nil // USER_HZ
}
