package nat

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// Kernel tests build their own network namespaces, named nsPrefix + random,
// with "ip netns add", and only ever use 198.18.0.0/15 and fd00::/8 inside
// them. Nothing here touches the root namespace's firewall or routes: every
// Firewall gets Config.NetNS, every nft runs under "ip netns exec".
const nsPrefix = "ftpgate-nat-"

// requireKernel checks what every kernel test needs: root, ip and nft.
func requireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Prereq(t, "kernel tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN for network namespaces)")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Prereq(t, "kernel tests need the %s binary (apt-get install -y iproute2 nftables): %v", bin, err)
		}
	}
}

// testNS is a network namespace that exists for one test.
type testNS struct {
	name string
	file *os.File // /run/netns/<name>, open for Config.NetNS
}

// fd is the namespace's file descriptor, for Config.NetNS.
func (ns *testNS) fd() int { return int(ns.file.Fd()) }

// newNS creates a namespace with loopback up and deletes it when the test
// ends, passed or failed.
func newNS(t testing.TB) *testNS {
	t.Helper()
	requireKernel(t)
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := nsPrefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testenv.Prereq(t, "ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	ns := &testNS{name: name, file: f}
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs "ip -n <ns> args..." and fails the test if it fails.
func (ns *testNS) ip(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
}

// nft runs nft inside the namespace and returns its standard output; it
// fails the test if nft fails.
func (ns *testNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.nftErr(args...)
	if err != nil {
		t.Fatalf("nft %s in %s: %v", strings.Join(args, " "), ns.name, err)
	}
	return out
}

// nftErr runs nft inside the namespace; the error includes its stderr.
func (ns *testNS) nftErr(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, "nft"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// do runs fn on a locked OS thread that is inside the namespace, and moves
// the thread back before unlocking it. Sockets fn creates stay in the
// namespace. If the thread cannot move back, it stays locked and the
// runtime ends it with the goroutine.
func (ns *testNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(ns.fd(), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newFirewall starts a Firewall inside ns and shuts it down at the end.
func newFirewall(t testing.TB, ns *testNS, cfg Config) Firewall {
	t.Helper()
	cfg.NetNS = ns.fd()
	fw, err := New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := fw.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return fw
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

// nftElement is one set element as "nft -j" prints it.
type nftElement struct {
	Key     string // "198.18.0.2 . 198.18.1.1 . 40001"
	Timeout int    // seconds, 0 if none
	Expires int    // seconds left
}

// setElements lists a set's elements with "nft -j list set", sorted by key.
func (ns *testNS) setElements(t testing.TB, family, table, set string) []nftElement {
	t.Helper()
	out := ns.nft(t, "-j", "list", "set", family, table, set)
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list set %s %s %s: %v\n%s", family, table, set, err, out)
	}
	var elems []nftElement
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			// An element with a timeout is {"elem": {"val": {"concat": [...]},
			// "timeout": s, "expires": s}}; one without is {"concat": [...]}.
			var e struct {
				Elem struct {
					Val struct {
						Concat []any `json:"concat"`
					} `json:"val"`
					Timeout int `json:"timeout"`
					Expires int `json:"expires"`
				} `json:"elem"`
				Concat []any `json:"concat"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("nft -j: element %s: %v", raw, err)
			}
			concat := e.Elem.Val.Concat
			if concat == nil {
				concat = e.Concat
			}
			if len(concat) == 0 {
				t.Fatalf("nft -j: element %s is not a concatenation", raw)
			}
			parts := make([]string, len(concat))
			for i, v := range concat {
				parts[i] = fmt.Sprint(v)
			}
			elems = append(elems, nftElement{Key: strings.Join(parts, " . "), Timeout: e.Elem.Timeout, Expires: e.Elem.Expires})
		}
	}
	slices.SortFunc(elems, func(a, b nftElement) int { return strings.Compare(a.Key, b.Key) })
	return elems
}

// waitFor polls cond every 20ms until it holds or the limit passes, and
// reports how long it took.
func waitFor(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Helper processes: the test binary re-executes itself with helperEnv set
// to run one of these instead of the tests (see TestMain).
const (
	helperEnv   = "FTPGATE_NAT_HELPER"
	helperNetNS = "FTPGATE_NAT_HELPER_NETNS" // path of the namespace to use, empty for the current one
)

// runHelper runs the helper named by helperEnv and returns the exit code.
//
//	own-table: create table inet ftpgate, print "ready <portid>", wait for
//	           stdin to close (or to be killed)
//	new:       try New in own-table mode, print {"err": text, "permission":
//	           IsPermission(err)} as one line of JSON
func runHelper(name string) int {
	cfg := Config{DataPorts: []PortRange{{40000, 40100}}}
	if p := os.Getenv(helperNetNS); p != "" {
		f, err := os.Open(p)
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	ctx := context.Background()
	fw, err := New(ctx, cfg, nil)
	switch name {
	case "own-table":
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = fw.Shutdown(ctx)
		return 0
	case "new":
		out := struct {
			Err        string `json:"err"`
			Permission bool   `json:"permission"`
		}{Permission: IsPermission(err)}
		if err != nil {
			out.Err = err.Error()
		} else {
			_ = fw.Shutdown(ctx)
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
		return 0
	}
	fmt.Println("error: unknown helper", name)
	return 2
}

// startHelper starts the test binary as helper name with the given command
// prefix (e.g. "ip netns exec X"), waits for its first line and returns it.
// The helper is killed (by pid) at the end of the test if still running.
func startHelper(t *testing.T, name, netnsPath string, prefix ...string) (*exec.Cmd, io.WriteCloser, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(prefix), exe, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name, helperNetNS+"="+netnsPath)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", name, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		return cmd, stdin, line
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %s printed nothing within 10s", name)
	}
	return nil, nil, ""
}
