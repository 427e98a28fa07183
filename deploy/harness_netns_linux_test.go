package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Harness: throw-away network namespaces and programs started in them.

// testNetns makes a namespace with 198.18.77.1 on its loopback, deleted
// when the test ends.
func testNetns(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "ftpgate-deploy-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", "198.18.77.1/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return ns
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAndWait starts cmd and waits (bounded) until its output contains
// ready. The returned func sends SIGTERM to the process cmd started, or
// with traced to its only child (the program strace runs), and waits for
// the exit; if the test ends first, both are killed. Only these pids are
// ever signalled.
func startAndWait(t *testing.T, cmd *exec.Cmd, out *syncBuffer, ready string, traced bool) func() error {
	t.Helper()
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the output pipe cannot hang Wait
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var result error
	target := func() int {
		if !traced {
			return cmd.Process.Pid
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); err == nil && len(f) == 1 {
			if pid, err := strconv.Atoi(f[0]); err == nil {
				return pid
			}
		}
		return cmd.Process.Pid
	}
	stop := func(sig syscall.Signal) error {
		once.Do(func() {
			if pid := target(); pid != cmd.Process.Pid {
				syscall.Kill(pid, sig)
			} else {
				cmd.Process.Signal(sig)
			}
			select {
			case result = <-exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				result = <-exited
			}
		})
		return result
	}
	t.Cleanup(func() { stop(syscall.SIGKILL) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !strings.Contains(out.String(), ready) {
		select {
		case err := <-exited:
			once.Do(func() { result = err })
			t.Fatalf("%s exited before %q: %v\n%s", cmd.Path, ready, err, out.String())
		case <-ctx.Done():
			t.Fatalf("%s: no %q in time:\n%s", cmd.Path, ready, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return func() error { return stop(syscall.SIGTERM) }
}

// inNetns runs fn on an OS thread inside ns (nsrun.Do): sockets fn opens
// stay in ns, processes it starts are born there.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := nsrun.Do(nsrun.Path(ns), func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}
