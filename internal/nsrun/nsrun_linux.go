// Package nsrun runs code and programs inside named network namespaces:
// the demo's lab, the benchmark and the kernel test suites share it.
package nsrun

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Dir holds the named namespaces, as `ip netns` makes them.
const Dir = "/var/run/netns"

// Path is the file of the named namespace name.
func Path(name string) string { return filepath.Join(Dir, name) }

// OnThread runs fn on a fresh OS thread and then puts that thread back
// into the network namespace it started in. If fn ends in another one and
// restoring fails, or fn never returns (runtime.Goexit, as t.Fatal does),
// the thread is never unlocked, so the runtime discards it instead of
// reusing it.
func OnThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("own network namespace: %w", err)
			return // stays locked: discarded
		}
		defer orig.Close()
		returned := false
		defer func() {
			if !returned {
				errc <- errors.New("the function run in a network namespace did not return")
			}
		}()
		ferr := fn()
		returned = true
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn with its OS thread inside the namespace at path. Sockets fn
// opens belong to that namespace and may be used from any goroutine
// afterwards; processes it starts are born there.
func Do(path string, fn func() error) error {
	return OnThread(func() error {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter %s: %w", path, err)
		}
		return fn()
	})
}

// Command is name run in the named namespace ns in a process group of its
// own (`ip netns exec` execs it, so the pid is the program's); a cancelled
// ctx kills the group.
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return KillGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// KillGroup signals the process group of pid (a process Command started).
func KillGroup(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("refusing to signal pid %d", pid)
	}
	return syscall.Kill(-pid, sig)
}
