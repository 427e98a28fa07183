//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers of TestBenchmarkKernelPath (benchmark_kernelpath_linux_test.go): download rates,
// CPU and syscall counts of ftpgate. The 1 GiB splice throughput, CPU per GiB and splice
// check through ftpgate are the benchmark's (go run ./bench), which fails a column whose
// data is copied in user space.

// speeds is a set of download rates in MB/s (10^6 bytes per second).
type speeds struct {
	mbps []float64
}

func (s speeds) median() float64 {
	v := slices.Clone(s.mbps)
	slices.Sort(v)
	return v[len(v)/2]
}

func (s speeds) String() string {
	return fmt.Sprintf("%.0f [%.0f..%.0f]", s.median(), slices.Min(s.mbps), slices.Max(s.mbps))
}

// curlDownloadRate downloads the huge file via ep to /dev/null and returns MB/s.
func curlDownloadRate(tp *topology, ep endpoint) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, errb, err := runIn(ctx, tp.Client, "curl", "-sS", "--max-time", "170",
		"--user", e2eUser+":"+e2ePassword, "-o", "/dev/null",
		"-w", "%{size_download} %{time_total}", ep.url(hugeFile))
	if err != nil {
		return 0, fmt.Errorf("curl 1 GiB via %s: %w: %s", ep.Name, err, errb)
	}
	var size int64
	var secs float64
	if _, err := fmt.Sscan(string(out), &size, &secs); err != nil {
		return 0, fmt.Errorf("curl -w output %q: %w", out, err)
	}
	if size != hugeSize {
		return 0, fmt.Errorf("downloaded %d bytes via %s, want %d", size, ep.Name, hugeSize)
	}
	return float64(size) / secs / 1e6, nil
}

// procCPU returns a process's user+system CPU seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesized command; utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// syscallSummary is strace -c's table.
type syscallSummary struct {
	text  string
	calls map[string]int64
}

// straceDownload attaches strace -f -c to ftpgate, runs one 1 GiB download through it, detaches
// and returns the summary and the rate.
func straceDownload(t *testing.T, tp *topology, g *gate) (syscallSummary, float64, error) {
	var sum syscallSummary
	out := filepath.Join(t.TempDir(), "strace.txt")
	cmd := exec.Command("strace", "-f", "-c", "-e", "trace=splice,read,write,sendfile", "-o", out, "-p", strconv.Itoa(g.proc.Pid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, w, err := os.Pipe()
	if err != nil {
		return sum, 0, err
	}
	defer stderr.Close()
	cmd.Stderr = w
	st := startProcess(t, "strace", cmd)
	w.Close()
	// strace reports "Process N attached with M threads" once it holds every thread.
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(10*time.Second, func() { _ = st.cmd.Process.Signal(syscall.SIGINT) })
	attached := false
	for !attached && lines.Scan() {
		attached = strings.Contains(lines.Text(), "attached")
	}
	if !deadline.Stop() || !attached {
		return sum, 0, fmt.Errorf("strace did not attach to ftpgate (pid %d) within 10s", g.proc.Pid())
	}
	go func() { // keep draining so strace never blocks on stderr
		for lines.Scan() {
		}
	}()
	rate, err := curlDownloadRate(tp, gateV4())
	if err != nil {
		return sum, 0, err
	}
	_ = st.cmd.Process.Signal(syscall.SIGINT) // strace detaches and writes the summary
	select {
	case <-st.done:
	case <-time.After(15 * time.Second):
		return sum, 0, fmt.Errorf("strace did not exit after SIGINT")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return sum, 0, err
	}
	sum.text = string(b)
	sum.calls = map[string]int64{}
	for _, line := range strings.Split(sum.text, "\n") {
		f := strings.Fields(line)
		// % time, seconds, usecs/call, calls, [errors], syscall
		if len(f) < 5 || strings.HasPrefix(line, "%") || strings.HasPrefix(line, "-") {
			continue
		}
		name := f[len(f)-1]
		if n, err := strconv.ParseInt(f[3], 10, 64); err == nil && name != "total" {
			sum.calls[name] = n
		}
	}
	return sum, rate, nil
}
