//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/testenv"
)

// The account and PAM service scripts/install-test-deps.sh creates for the test servers.
const (
	e2eUser       = "ftpgate-e2e"
	e2ePassword   = "ftpgate-e2e-secret"
	e2ePAMService = "ftpgate-e2e"
	installHint   = "run scripts/install-test-deps.sh as root"
)

// Where the test programs live.
const (
	vsftpdBin   = "/usr/sbin/vsftpd"
	proftpdBin  = "/opt/ftpgate-e2e/proftpd/usr/sbin/proftpd"
	pureFTPdBin = "/opt/ftpgate-e2e/pure-ftpd/usr/sbin/pure-ftpd"
	purePwBin   = "/opt/ftpgate-e2e/pure-ftpd/usr/bin/pure-pw"
	python3Bin  = "/usr/bin/python3" // Debian's, not a pyenv shim on PATH
	haproxyBin  = "/usr/sbin/haproxy"
	mptcpizeBin = "/usr/bin/mptcpize" // runs a program with its TCP sockets made Multipath TCP

	// proftpdModules is where scripts/install-test-deps.sh unpacked proftpd-mod-crypto (mod_tls).
	proftpdModules = "/opt/ftpgate-e2e/proftpd-tls/usr/lib/proftpd"
)

// Fixture files, generated once per run and linked into every server's directory.
const (
	bigFile     = "big.bin" // 10 MiB
	bigSize     = 10 << 20
	oneFile     = "one.bin" // 1 MiB, for the concurrency test
	oneSize     = 1 << 20
	listDir     = "list"   // a directory listed and compared by name
	mirrorDir   = "mirror" // 200 small files for lftp
	mirrorFiles = 200
	restOffset  = 3<<20 + 17 // where resumed downloads start: not block aligned
)

const (
	hugeFile = "huge.bin" // sparse, served only by the benchmark
	hugeSize = 1 << 30
)

// suite is what TestMain prepares for every test: the package's only shared state.
var suite struct {
	tmp        string // removed after the run
	fixtures   string // generated files, world readable
	ftpgate    string // path of the built binary, "" if it could not be built
	ftpgateErr error  // why not
	race       bool
	sums       map[string]string // fixture path relative to fixtures -> sha256
}

// defaultParallel is -test.parallel unless given: the tests mostly wait on servers, sessions and
// namespaces, not on the CPU, so more of them in flight than GOMAXPROCS shortens the run.
const defaultParallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", defaultParallel)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "ftpgate-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Servers drop privileges to the test user, who must be able to reach served directories.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	suite.tmp = tmp
	suite.race = os.Getenv("FTPGATE_RACE") == "1"

	if os.Geteuid() == 0 {
		start := time.Now()
		suite.fixtures = filepath.Join(tmp, "fixtures")
		suite.sums, err = writeFixtures(suite.fixtures)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: fixtures: %v\n", err)
			return 1
		}
		suite.ftpgate, suite.ftpgateErr = buildFtpgate(tmp, suite.race)
		fmt.Fprintf(os.Stderr, "e2e: fixtures and ftpgate build ready in %s (race=%v, ftpgate err=%v)\n",
			time.Since(start).Round(time.Millisecond), suite.race, suite.ftpgateErr)
	}
	return m.Run()
}

// errNoFtpgateSource marks a tree without cmd/ftpgate (yet).
var errNoFtpgateSource = errors.New("package ./cmd/ftpgate does not exist")

// buildFtpgate builds cmd/ftpgate into dir (with -race if race is set), or returns FTPGATE_BIN
// when set.
func buildFtpgate(dir string, race bool) (string, error) {
	if bin := os.Getenv("FTPGATE_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("FTPGATE_BIN: %w", err)
		}
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if _, err := os.Stat(filepath.Join(root, "cmd", "ftpgate")); err != nil {
		return "", fmt.Errorf("%w in %s", errNoFtpgateSource, root)
	}
	out := filepath.Join(dir, "ftpgate")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ftpgate")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// Prerequisites a test can ask for.
const (
	needVsftpd     = "vsftpd"
	needProftpd    = "proftpd"
	needProftpdTLS = "proftpd mod_tls"
	needPureFTPd   = "pure-ftpd"
	needCurl       = "curl"
	needLftp       = "lftp"
	needPython     = "python3"
	needStrace     = "strace"
	needFtpgate    = "ftpgate"
	needHAProxy    = "haproxy"
	needMPTCPize   = "mptcpize"
)

// requirePrereqs skips (or, under CI=true / FTPGATE_E2E=1, fails) the test when it cannot run
// here, naming everything that is missing.
func requirePrereqs(t testing.TB, needs ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces)")
	}
	check := func(what string, paths ...string) {
		for _, p := range paths {
			if _, err := exec.LookPath(p); err != nil {
				missing = append(missing, what+" ("+p+")")
			}
		}
	}
	check("iproute2", "ip")
	if _, err := user.Lookup(e2eUser); err != nil {
		missing = append(missing, "user "+e2eUser)
	}
	for _, n := range needs {
		switch n {
		case needVsftpd:
			check("vsftpd", vsftpdBin)
			if _, err := os.Stat("/etc/pam.d/" + e2ePAMService); err != nil {
				missing = append(missing, "PAM service /etc/pam.d/"+e2ePAMService)
			}
		case needProftpd:
			check("proftpd", proftpdBin)
		case needProftpdTLS:
			if _, err := os.Stat(filepath.Join(proftpdModules, "mod_tls.so")); err != nil {
				missing = append(missing, fmt.Sprintf("proftpd mod_tls (%v)", err))
			}
		case needHAProxy:
			check("haproxy", haproxyBin)
		case needMPTCPize:
			check("mptcpize", mptcpizeBin)
		case needPureFTPd:
			check("pure-ftpd", pureFTPdBin, purePwBin)
			check("openssl", "openssl")
		case needCurl:
			check("curl", "curl")
		case needLftp:
			check("lftp", "lftp")
		case needPython:
			check("python3", python3Bin)
		case needStrace:
			check("strace", "strace")
		case needFtpgate:
			if suite.ftpgate == "" {
				why := "not built"
				if suite.ftpgateErr != nil {
					why = suite.ftpgateErr.Error()
				}
				if suite.ftpgateErr != nil && !errors.Is(suite.ftpgateErr, errNoFtpgateSource) && os.Geteuid() == 0 {
					t.Fatalf("ftpgate binary: %s", why) // it exists but does not build: always a failure
				}
				missing = append(missing, "ftpgate binary: "+why)
			}
		default:
			t.Fatalf("unknown prerequisite %q", n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("e2e prerequisites missing: %s; %s", strings.Join(missing, ", "), installHint)
	if testenv.Strict() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// writeFixtures generates the test files (deterministic pseudo-random content) and returns
// their sha256 by relative path.
func writeFixtures(dir string) (map[string]string, error) {
	sums := make(map[string]string)
	rng := rand.New(rand.NewChaCha8([32]byte{'f', 't', 'p', 'g', 'a', 't', 'e'}))
	write := func(rel string, size int) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for left := size; left > 0; {
			n := min(left, len(buf))
			for i := 0; i < n; i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < n; j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			if _, err := io.MultiWriter(f, h).Write(buf[:n]); err != nil {
				f.Close()
				return err
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			return err
		}
		sums[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	if err := write(bigFile, bigSize); err != nil {
		return nil, err
	}
	if err := write(oneFile, oneSize); err != nil {
		return nil, err
	}
	for i := range 24 {
		if err := write(fmt.Sprintf("%s/entry-%02d.txt", listDir, i), 100+i*37); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, listDir, "a-subdirectory"), 0o755); err != nil {
		return nil, err
	}
	for i := range mirrorFiles {
		size := (i * 7919) % 8192 // includes an empty file (i = 0)
		if err := write(fmt.Sprintf("%s/f%03d.dat", mirrorDir, i), size); err != nil {
			return nil, err
		}
	}
	return sums, os.Chmod(dir, 0o755)
}

// linkFixtures hard-links (or copies, across file systems) every fixture into dir.
func linkFixtures(dir string) error {
	return filepath.WalkDir(suite.fixtures, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(suite.fixtures, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.Link(p, dst); err == nil {
			return nil
		}
		return copyFile(p, dst)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fileSHA256 returns the hex sha256 and size of a file.
func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// sameFile compares a file with a fixture and says how they differ.
func sameFile(got, fixture string) error {
	want := suite.sums[fixture]
	sum, n, err := fileSHA256(got)
	if err != nil {
		return fmt.Errorf("read %s: %w", got, err)
	}
	if sum != want {
		st, _ := os.Stat(filepath.Join(suite.fixtures, fixture))
		var wantSize int64
		if st != nil {
			wantSize = st.Size()
		}
		return fmt.Errorf("sha256 mismatch for %s: got %s (%d bytes), want %s (%d bytes)", got, sum, n, want, wantSize)
	}
	return nil
}

// treeSums maps every regular file under dir (relative path) to its sha256.
func treeSums(dir string) (map[string]string, error) {
	sums := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sum, _, err := fileSHA256(p)
		sums[rel] = sum
		return err
	})
	return sums, err
}

// diffTrees says how two trees' checksums differ, or returns nil.
func diffTrees(got, want map[string]string) error {
	var problems []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			problems = append(problems, "missing "+name)
		case g != w:
			problems = append(problems, fmt.Sprintf("%s: sha256 %s, want %s", name, g[:12], w[:12]))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			problems = append(problems, "unexpected "+name)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
	}
	return fmt.Errorf("%d of %d files differ: %s", len(problems), len(want), strings.Join(problems, "; "))
}

// fixtureTree returns the checksums of the fixtures under sub, keyed relative to sub.
func fixtureTree(sub string) map[string]string {
	out := make(map[string]string)
	for rel, sum := range suite.sums {
		if r, ok := strings.CutPrefix(rel, sub+"/"); ok {
			out[r] = sum
		}
	}
	return out
}

// listNames returns the names in a fixture directory, as a server lists them.
func listNames(sub string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(suite.fixtures, sub))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// writePrefix writes the first n bytes of a fixture to p (a partial download to resume).
func writePrefix(p, fixture string, n int64) error {
	in, err := os.Open(filepath.Join(suite.fixtures, fixture))
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(out, in, n); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = append([][]byte{[]byte("[" + strconv.Itoa(len(lines)-n) + " lines omitted]")}, lines[len(lines)-n:]...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// syncBuffer is a bytes.Buffer that exec's copying goroutine may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
