package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// reexec executes this program again with the same arguments and
// environment but GODEBUG=godebug. It returns only if that fails.
func reexec(args []string, godebug string) error {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GODEBUG="+godebug)
	path := selfPath(args[0])
	if err := syscall.Exec(path, args, env); err != nil {
		return fmt.Errorf("execute %s: %w", path, err)
	}
	return nil // not reached
}

// selfPath names the file this process runs, as it was started where it
// can: the kernel names a process after the file it executes (ps, pgrep,
// top show that name), and /proc/self/exe would name it "exe". The name
// by which it was started (argv[0], through $PATH), or else the file's
// resolved path, is used only while it is still that same file: an
// upgrade may have replaced it since. Otherwise /proc/self/exe, which is
// always this process's own file. Without /proc (a bare chroot), the name
// it was started by, unchecked: at start it is that file but for an
// upgrade in the same instant.
func selfPath(argv0 string) string {
	const self = "/proc/self/exe"
	started, lerr := exec.LookPath(argv0)
	st, err := os.Stat(self)
	if err != nil {
		if lerr == nil {
			return started
		}
		return self
	}
	var candidates []string
	if lerr == nil {
		candidates = append(candidates, started)
	}
	if p, err := os.Executable(); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if pst, err := os.Stat(p); err == nil && os.SameFile(st, pst) {
			return p
		}
	}
	return self
}
