//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Server kinds.
const (
	vsftpd   = "vsftpd"
	proftpd  = "proftpd"
	pureFTPd = "pure-ftpd"
)

// serverKinds is every server the interoperability tests run against.
var serverKinds = []string{vsftpd, proftpd, pureFTPd}

// ftpsServerKinds are the servers the FTPS tests configure (see serverTLS).
var ftpsServerKinds = []string{vsftpd, proftpd}

// Servers' own passive port range. pure-ftpd caps its client count at half the range's size,
// so it is wide enough for the 50-session test.
const serverPassiveLo, serverPassiveHi = 30000, 30499

// serverModes are ftpgate's --server-mode values the matrix covers.
var serverModes = []string{"passive", "active"}

func serverNeed(kind string) string {
	switch kind {
	case proftpd:
		return needProftpd
	case pureFTPd:
		return needPureFTPd
	default:
		return needVsftpd
	}
}

// ftpServer is an FTP server the test started, with the test user logged into Root.
type ftpServer struct {
	Kind string
	Root string // served directory on disk; "/" for the FTP user
	proc *process
	dir  string // its configuration and output
	log  string // where its own log goes
}

// startServer configures and starts a server of the given kind in tp's server namespace, fills
// its directory with the fixtures, and waits until it answers on IPv4 and IPv6.
func startServer(t testing.TB, tp *topology, kind string) *ftpServer {
	t.Helper()
	return startServerTLS(t, tp, kind, nil)
}

// startServerTLS is startServer with FTPS configured as tc says (nil: none; see serverTLS). The
// server listens on every address of tp's server namespace, on port 21 (990 for implicit
// FTPS), and is ready once it answers at serverV4 and serverV6 from the client namespace.
func startServerTLS(t testing.TB, tp *topology, kind string, tc *serverTLS) *ftpServer {
	t.Helper()
	if kind == vsftpd {
		return startVsftpd(t, tp.Server, vsftpdOptions{TLS: tc, ReadyFrom: tp.Client})
	}
	s := newFTPServer(t, kind)
	port := tc.port()
	var bin string
	var args []string
	switch kind {
	case proftpd:
		bin = proftpdBin
		cfg := filepath.Join(s.dir, "proftpd.conf")
		writeFile(t, cfg, tc.proftpd(proftpdConfig(s.Root, s.dir, s.log, port), s.dir))
		args = []string{"-n", "-q", "-c", cfg}
	case pureFTPd:
		if tc != nil {
			t.Fatal("the FTPS tests configure vsftpd and proftpd, not pure-ftpd")
		}
		bin = pureFTPdBin // pureFTPdArgs writes its PureDB, with a password hash from openssl
		args = pureFTPdArgs(t, s.Root, s.dir)
	default:
		t.Fatalf("unknown server %q", kind)
	}
	s.run(t, tp.Server, bin, args, tp.Client, tc.banner(), hostPort(serverV4, port), hostPort(serverV6, port))
	return s
}

// vsftpdOptions are what differs between the tests' vsftpd servers. The zero value is the
// server of startServer: every IPv4 and IPv6 address on port 21, the servers' passive port
// range, active-mode connections from port 20, no TLS, checked ready from its own namespace.
type vsftpdOptions struct {
	// Listen is the one IPv4 "address:port" to listen on (an inbound sidecar's server, on the
	// pod's loopback). Empty: every IPv4 and IPv6 address on Port, ready once it answers at
	// serverV4 and serverV6 (the addresses of a topology's server namespace).
	Listen string
	// Port is the control port when Listen is empty: zero means 21, or 990 for implicit FTPS.
	Port int
	// PassiveLo and PassiveHi are the passive port range; zero: serverPassiveLo-serverPassiveHi.
	PassiveLo, PassiveHi int
	// Unpinned configures neither a passive port range nor active-mode connections from port
	// 20, as a server behind an inbound sidecar is: vsftpd picks its data ports itself.
	Unpinned bool
	// TLS is FTPS as serverTLS says; nil: none.
	TLS *serverTLS
	// ReadyFrom is the namespace the readiness check connects from; empty: vsftpd's own.
	ReadyFrom string
	// MaxPerIP is vsftpd's max_per_ip, its cap on sessions from one client address; zero: none.
	MaxPerIP int
}

// startVsftpd configures and starts vsftpd in namespace ns as o says, fills its directory with
// the fixtures, and waits until it answers.
func startVsftpd(t testing.TB, ns string, o vsftpdOptions) *ftpServer {
	t.Helper()
	requirePrereqs(t, needVsftpd)
	var ready []string
	if o.Listen != "" {
		if ap, err := netip.ParseAddrPort(o.Listen); err != nil || !ap.Addr().Is4() {
			t.Fatalf("vsftpd address %q: want IPv4:PORT", o.Listen)
		}
		ready = []string{o.Listen}
	} else {
		if o.Port == 0 {
			o.Port = o.TLS.port()
		}
		ready = []string{hostPort(serverV4, o.Port), hostPort(serverV6, o.Port)}
	}
	if o.PassiveLo == 0 && o.PassiveHi == 0 {
		o.PassiveLo, o.PassiveHi = serverPassiveLo, serverPassiveHi
	}
	if o.ReadyFrom == "" {
		o.ReadyFrom = ns
	}
	s := newFTPServer(t, vsftpd)
	// vsftpd's secure_chroot_dir: empty, and not writable by the session user.
	empty := filepath.Join(s.dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(s.dir, "vsftpd.conf")
	writeFile(t, cfg, vsftpdConfig(s.Root, empty, s.log, o)+o.TLS.vsftpd())
	s.run(t, ns, vsftpdBin, []string{cfg}, o.ReadyFrom, o.TLS.banner(), ready...)
	return s
}

// vsftpdConfig is vsftpd's configuration for o (with Port and the passive range resolved).
func vsftpdConfig(root, emptyDir, logFile string, o vsftpdOptions) string {
	var b strings.Builder
	b.WriteString("# generated by ftpgate e2e\n")
	if o.Listen != "" {
		host, port, _ := net.SplitHostPort(o.Listen)
		fmt.Fprintf(&b, "listen=YES\nlisten_ipv6=NO\nlisten_address=%s\nlisten_port=%s\n", host, port)
	} else {
		fmt.Fprintf(&b, "listen=NO\nlisten_ipv6=YES\nlisten_port=%d\n", o.Port)
	}
	fmt.Fprintf(&b, `background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=%s
userlist_enable=NO
local_root=%s
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=%s
pasv_enable=YES
port_enable=YES
port_promiscuous=NO
`, e2ePAMService, root, emptyDir)
	if !o.Unpinned {
		fmt.Fprintf(&b, "pasv_min_port=%d\npasv_max_port=%d\nconnect_from_port_20=YES\n", o.PassiveLo, o.PassiveHi)
	}
	fmt.Fprintf(&b, `seccomp_sandbox=NO
max_clients=0
max_per_ip=%d
delay_failed_login=0
xferlog_enable=YES
vsftpd_log_file=%s
`, o.MaxPerIP, logFile)
	return b.String()
}

// newFTPServer prepares a server of kind: a configuration directory, and a served directory
// holding the fixtures, owned by the test user.
func newFTPServer(t testing.TB, kind string) *ftpServer {
	t.Helper()
	uid, gid := testUserIDs(t)
	dir := t.TempDir()
	root := servedDir(t)
	if err := linkFixtures(root); err != nil {
		t.Fatalf("fill served directory: %v", err)
	}
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatalf("chown served directory: %v", err)
	}
	return &ftpServer{Kind: kind, Root: root, dir: dir, log: filepath.Join(dir, kind+".log")}
}

// run starts the server's program bin in namespace ns, and waits until it answers at every
// one of addrs from namespace from (with a first line starting with banner, if not empty).
// When the test fails, the cleanup logs the tails of the program's output and its own log.
func (s *ftpServer) run(t testing.TB, ns, bin string, args []string, from, banner string, addrs ...string) {
	t.Helper()
	label := s.Kind + " on " + strings.Join(addrs, ", ")
	out, err := os.Create(filepath.Join(s.dir, s.Kind+".out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd := nsrun.Command(context.Background(), ns, bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	s.proc = startProcess(t, s.Kind, cmd)
	t.Cleanup(func() {
		_ = s.proc.Stop(5 * time.Second) // servers may exit non-zero on SIGTERM; not our subject
		if t.Failed() {
			for _, f := range []string{out.Name(), s.log} {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					t.Logf("%s, %s (tail):\n%s", label, filepath.Base(f), tail(b, 30))
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, addr := range addrs {
		if err := waitPort(ctx, from, addr, banner, s.proc); err != nil {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("%s not ready: %v\noutput:\n%s", label, err, tail(b, 30))
		}
	}
}

// testUserIDs returns the uid and gid of the test account.
func testUserIDs(t testing.TB) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(e2eUser)
	if err != nil {
		t.Fatalf("test user: %v (%s)", err, installHint)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// servedDir is a directory under t.TempDir() that the server's unprivileged user can reach.
func servedDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(d, "srv")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// addSparseFile creates name in the served directory: size bytes that take no disk space, so
// that the server reads zero pages.
func (s *ftpServer) addSparseFile(t testing.TB, name string, size int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(s.Root, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func proftpdConfig(root, dir, logFile string, port int) string {
	return fmt.Sprintf(`# generated by ftpgate e2e
ServerType standalone
ServerName "ftpgate-e2e proftpd"
DefaultServer on
Port %[7]d
UseIPv6 on
User %[1]s
Group %[1]s
PidFile %[2]s/proftpd.pid
ScoreboardFile %[2]s/proftpd.scoreboard
WtmpLog off
UseReverseDNS off
RequireValidShell off
AuthOrder mod_auth_unix.c
<IfModule mod_auth_pam.c>
  AuthPAM off
</IfModule>
<IfModule mod_delay.c>
  DelayEngine off
</IfModule>
DefaultRoot %[3]s
AllowOverwrite on
AllowRetrieveRestart on
AllowStoreRestart on
Umask 022
PassivePorts %[4]d %[5]d
MaxInstances 200
SystemLog %[6]s
TransferLog NONE
`, e2eUser, dir, root, serverPassiveLo, serverPassiveHi, logFile, port)
}

// pureFTPdArgs writes a PureDB with one virtual user (chrooted to root, running as the test
// account) and returns pure-ftpd's command line.
func pureFTPdArgs(t testing.TB, root, dir string) []string {
	t.Helper()
	uid, gid := testUserIDs(t)
	// A SHA-512 crypt hash: pure-pw's default (argon2id) costs seconds per login.
	hash, err := exec.Command("openssl", "passwd", "-6", "-salt", "ftpgatee2e", e2ePassword).Output()
	if err != nil {
		t.Fatalf("hash password (openssl): %v", err)
	}
	passwd := filepath.Join(dir, "pureftpd.passwd")
	pdb := filepath.Join(dir, "pureftpd.pdb")
	line := fmt.Sprintf("%s:%s:%d:%d::%s/./::::::::::::\n", e2eUser, strings.TrimSpace(string(hash)), uid, gid, root)
	writeFile(t, passwd, line)
	if out, err := exec.Command(purePwBin, "mkdb", pdb, "-f", passwd).CombinedOutput(); err != nil {
		t.Fatalf("pure-pw mkdb: %v: %s", err, out)
	}
	return []string{
		"-l", "puredb:" + pdb,
		"-E", // no anonymous logins
		"-H", // no reverse DNS
		"-S", "21",
		"-p", fmt.Sprintf("%d:%d", serverPassiveLo, serverPassiveHi),
		"-c", "200", "-C", "200",
		"-U", "133:022",
		"-g", filepath.Join(dir, "pure-ftpd.pid"),
	}
}

// serverTLS is how a test server speaks FTPS: TLS required for logins and data, and data
// connections that must resume the control connection's TLS session (vsftpd
// require_ssl_reuse=YES; proftpd's default without NoSessionReuseRequired).
type serverTLS struct {
	Cert, Key string // PEM files
	Implicit  bool   // TLS from connect, on port 990 (no AUTH TLS)
}

// vsftpd returns the FTPS settings of a vsftpd configuration ("" for none).
func (tc *serverTLS) vsftpd() string {
	if tc == nil {
		return ""
	}
	return fmt.Sprintf(`ssl_enable=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
implicit_ssl=%s
rsa_cert_file=%s
rsa_private_key_file=%s
ssl_ciphers=HIGH
ssl_request_cert=NO
`, map[bool]string{true: "YES", false: "NO"}[tc.Implicit], tc.Cert, tc.Key)
}

// proftpd adds mod_tls (from proftpd-mod-crypto, unpacked beside proftpd) to a proftpd
// configuration; dir holds its TLS log.
func (tc *serverTLS) proftpd(conf, dir string) string {
	if tc == nil {
		return conf
	}
	opts := ""
	if tc.Implicit {
		opts = "  TLSOptions UseImplicitSSL\n"
	}
	return conf + fmt.Sprintf(`ModulePath %s
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSLog %s
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired on
  TLSECCertificateFile %s
  TLSECCertificateKeyFile %s
  TLSVerifyClient off
  TLSRenegotiate none
%s</IfModule>
`, proftpdModules, filepath.Join(dir, "tls.log"), tc.Cert, tc.Key, opts)
}

// requireServerTLS skips (or in strict mode fails) a test of an FTPS server whose TLS support is
// not installed: proftpd's mod_tls comes from a package of its own.
func requireServerTLS(t testing.TB, kind string) {
	t.Helper()
	if kind == proftpd {
		requirePrereqs(t, needProftpdTLS)
	}
}

// port is the server's control port: an implicit FTPS server listens on 990.
func (tc *serverTLS) port() int {
	if tc != nil && tc.Implicit {
		return 990
	}
	return 21
}

// banner is what the readiness check waits for: an implicit FTPS server says nothing in clear
// text.
func (tc *serverTLS) banner() string {
	if tc != nil && tc.Implicit {
		return ""
	}
	return "220"
}

// serverLogLines returns the lines of a server's own log that contain every one of subs.
func serverLogLines(s *ftpServer, subs ...string) ([]string, error) {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			out = append(out, line)
		}
	}
	return out, nil
}

// vsftpdConnects returns the client address of each CONNECT line in a vsftpd log, in order.
func vsftpdConnects(s *ftpServer) ([]string, error) {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return nil, fmt.Errorf("vsftpd log: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(line, "CONNECT: Client \"")
		if !ok {
			continue
		}
		addr, _, _ := strings.Cut(rest, "\"")
		if a, err := netip.ParseAddr(addr); err == nil {
			addr = a.Unmap().String()
		}
		out = append(out, addr)
	}
	return out, nil
}

// countingServer accepts connections on addr in ns, greets each with a 220 line and closes it,
// and counts them until the test ends.
type countingServer struct {
	mu   sync.Mutex
	from []string
}

func startCountingServer(t testing.TB, ns, addr string) *countingServer {
	t.Helper()
	l, err := listenIn(ns, "tcp", addr)
	if err != nil {
		t.Fatalf("listener on %s: %v", addr, err)
	}
	s := &countingServer{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.from = append(s.from, c.RemoteAddr().String())
			s.mu.Unlock()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write([]byte("220 counting server\r\n"))
			c.Close()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return s
}

// Accepted returns the peers of the connections accepted so far.
func (s *countingServer) Accepted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.from)
}
