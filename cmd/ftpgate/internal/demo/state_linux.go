package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stateDir holds one JSON file per lab that is (or was, before a kill -9)
// up: what the next start needs to remove it.
const stateDir = "/run/ftpgate-demo"

// labState is what a lab left behind: its namespaces, its directory and
// the processes it started.
type labState struct {
	Prefix string     `json:"prefix"`
	Exe    string     `json:"exe"`   // the binary every re-exec runs
	Dir    string     `json:"dir"`   // logs and served files
	Owner  procInfo   `json:"owner"` // the demo process itself
	Kept   bool       `json:"kept"`  // left up on purpose (--keep)
	Procs  []procInfo `json:"procs"`
}

// procInfo identifies one started process beyond its pid: a recycled pid
// has another start time.
type procInfo struct {
	Name  string `json:"name"`
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // /proc/PID/stat field 22, clock ticks since boot
}

func statePath(prefix string) string { return filepath.Join(stateDir, prefix+".json") }

func (s *labState) save() error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := statePath(s.Prefix) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, statePath(s.Prefix)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// record adds a started process to the state and saves it.
func (s *labState) record(name string, pid int) error {
	st, err := procStart(pid)
	if err != nil {
		return err
	}
	s.Procs = append(s.Procs, procInfo{Name: name, Pid: pid, Start: st})
	return s.save()
}

// procStart reads a process's start time from /proc/PID/stat.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: unreadable stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("process %d: short stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// ours reports whether pid is still the process recorded: same start time,
// running our binary as one of the demo's re-execs.
func (p procInfo) ours(exe string) bool {
	st, err := procStart(p.Pid)
	if err != nil || st != p.Start {
		return false
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid))
	if err != nil || strings.TrimSuffix(link, " (deleted)") != strings.TrimSuffix(exe, " (deleted)") {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 1 && slices.Contains([]string{"run", ServerCommand}, args[1])
}

// alive reports whether the process is still the one recorded.
func (p procInfo) alive() bool {
	st, err := procStart(p.Pid)
	return err == nil && p.Pid > 0 && st == p.Start
}

// removeLab removes what a lab left: its processes (only those recorded
// and still ours), namespaces, directory and state file. It returns what
// it removed, for the narration.
func removeLab(s *labState) ([]string, error) {
	var done []string
	var errs []error
	var live []procInfo
	for _, p := range s.Procs {
		if p.ours(s.Exe) {
			if err := syscall.Kill(p.Pid, syscall.SIGKILL); err == nil {
				live = append(live, p)
				done = append(done, fmt.Sprintf("process %d (%s)", p.Pid, p.Name))
			}
		}
	}
	// Wait (bounded) until they are gone, so their namespaces can go too.
	for deadline := time.Now().Add(3 * time.Second); len(live) > 0 && time.Now().Before(deadline); {
		live = slices.DeleteFunc(live, func(p procInfo) bool { return !p.ours(s.Exe) })
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range roles {
		name := nsName(s.Prefix, r)
		if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
			continue
		}
		if err := deleteNamespace(name); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, "namespace "+name)
	}
	if s.Dir != "" && strings.Contains(filepath.Base(s.Dir), namePrefix) {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.Dir, err))
		}
	}
	if err := os.Remove(statePath(s.Prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove state: %w", err))
	}
	return done, errors.Join(errs...)
}

// leftovers finds labs of earlier runs whose demo process is gone: state
// files, and namespaces named with the demo's prefix that have none (their
// processes cannot be told apart, so only the namespace goes). A lab whose
// demo still runs is never touched; a lab left up with --keep only when
// withKept.
func leftovers(withKept bool) ([]*labState, error) {
	var out []*labState
	seen := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(stateDir, namePrefix+"*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", f, err)
		}
		var s labState
		if err := json.Unmarshal(b, &s); err != nil || !strings.HasPrefix(s.Prefix, namePrefix) {
			// Unreadable: still remove the file and the namespaces it names.
			s = labState{Prefix: strings.TrimSuffix(filepath.Base(f), ".json")}
		}
		seen[s.Prefix] = true
		if s.Owner.alive() || (s.Kept && !withKept) {
			continue
		}
		out = append(out, &s)
	}
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) {
			continue
		}
		i := strings.LastIndexByte(name, '-')
		if i < 0 || !slices.Contains(roles, name[i+1:]) || seen[name[:i]] {
			continue
		}
		seen[name[:i]] = true
		out = append(out, &labState{Prefix: name[:i]})
	}
	return out, nil
}

// cleanLeftovers removes the labs leftovers finds and says what went.
func cleanLeftovers(withKept bool, say func(format string, args ...any)) error {
	labs, err := leftovers(withKept)
	if err != nil {
		return err
	}
	if !withKept {
		for _, prefix := range keptLabs() {
			say("lab %s is still up (--keep); 'ftpgate demo --clean' removes it", prefix)
		}
	}
	var errs []error
	for _, s := range labs {
		done, err := removeLab(s)
		if len(done) > 0 {
			say("removed leftovers of %s: %s", s.Prefix, strings.Join(done, ", "))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// keptLabs lists the labs left up with --keep whose demo has exited.
func keptLabs() []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(stateDir, namePrefix+"*.json"))
	for _, f := range files {
		var s labState
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &s) == nil && s.Kept && !s.Owner.alive() {
			out = append(out, s.Prefix)
		}
	}
	return out
}
