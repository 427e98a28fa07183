//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// dataMode is how the client sets up data connections.
type dataMode string

const (
	modeEPSV   dataMode = "EPSV"
	modePASV   dataMode = "PASV"    // the client connects to the control peer, ignoring the 227 address
	modePASVIP dataMode = "PASV-IP" // the client connects to the address in the 227 reply
	modeEPRT   dataMode = "EPRT"
	modePORT   dataMode = "PORT"
)

// modesV4 and modesV6 are the modes a client can use over each family.
var (
	modesV4 = []dataMode{modeEPSV, modePASV, modePASVIP, modeEPRT, modePORT}
	modesV6 = []dataMode{modeEPSV, modeEPRT}
)

// endpoint is where a client connects: a server directly, or ftpgate.
type endpoint struct {
	Name string // "direct" or "ftpgate"
	Host string // IP literal
	Port int
	// DataPeer is the address at the other end of every data connection the client sees:
	// the server when direct, ftpgate's client-side address through ftpgate.
	DataPeer string
}

func (e endpoint) v6() bool { return strings.Contains(e.Host, ":") }

func (e endpoint) url(p string) string {
	return "ftp://" + urlHost(e.Host, e.Port) + "/" + strings.TrimPrefix(p, "/")
}

// clientAddr is the client namespace's address in e's family.
func (e endpoint) clientAddr() string {
	if e.v6() {
		return clientV6
	}
	return clientV4
}

func directV4() endpoint { return endpoint{"direct", serverV4, 21, serverV4} }

func directV6() endpoint { return endpoint{"direct", serverV6, 21, serverV6} }

func gateV4() endpoint { return endpoint{"ftpgate", proxyClientV4, 21, proxyClientV4} }

func gateV6() endpoint { return endpoint{"ftpgate", proxyClientV6, 21, proxyClientV6} }

// ftpClient is one client program, run in the client namespace.
type ftpClient interface {
	Name() string
	// Get downloads remote to local.
	Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error
	// Put uploads local as remote.
	Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error
	// List returns the names in dir, without "." and "..", sorted.
	List(ctx context.Context, ep endpoint, m dataMode, dir string) ([]string, error)
	// Resume keeps local's bytes, restarts the download at len(local) and appends the rest.
	Resume(ctx context.Context, ep endpoint, m dataMode, remote, local string, offset int64) error
}

// getPutter is a client that downloads and uploads.
type getPutter interface {
	Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error
	Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error
}

// runIn runs a client program in namespace ns and returns stdout and stderr.
func runIn(ctx context.Context, ns, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := nsrun.Command(ctx, ns, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return o.Bytes(), e.Bytes(), err
}

// curlClient drives curl; its -v output proves which data commands went over the wire. With
// mptcp it runs under mptcpize, so that curl's sockets (control and data) are Multipath TCP.
type curlClient struct {
	ns    string
	mptcp bool
}

func (c curlClient) Name() string { return "curl" }

func (c curlClient) run(ctx context.Context, ep endpoint, m dataMode, args ...string) ([]byte, error) {
	out, _, err := c.runBoth(ctx, ep, m, args...)
	return out, err
}

func (c curlClient) runVerbose(ctx context.Context, ep endpoint, m dataMode, args ...string) ([]byte, error) {
	_, verbose, err := c.runBoth(ctx, ep, m, args...)
	return verbose, err
}

// runBoth runs curl and returns its output and its -v log.
func (c curlClient) runBoth(ctx context.Context, ep endpoint, m dataMode, args ...string) ([]byte, []byte, error) {
	base, err := curlArgs(ep, m)
	if err != nil {
		return nil, nil, err
	}
	name, args := "curl", append(base, args...)
	if c.mptcp {
		name, args = mptcpizeBin, append([]string{"run", "curl"}, args...)
	}
	out, verbose, err := runIn(ctx, c.ns, name, args...)
	verbose = bytes.ReplaceAll(verbose, []byte("\r\n"), []byte("\n"))
	if err == nil {
		err = curlCheck(verbose, ep, m)
	}
	if err != nil {
		return out, verbose, fmt.Errorf("curl %s via %s %s: %w\n%s", m, ep.Name, strings.Join(args, " "), err, tail(verbose, 25))
	}
	return out, verbose, nil
}

// curlArgs returns the options of a curl run in data mode m toward ep: quiet but verbose (-v
// shows the FTP commands), no URL globbing, bounded times, the test user, and the mode.
func curlArgs(ep endpoint, m dataMode) ([]string, error) {
	base := []string{"-sS", "-v", "-g", "--max-time", "60", "--connect-timeout", "10", "--user", e2eUser + ":" + e2ePassword}
	switch m {
	case modeEPSV:
		return append(base, "--ftp-pasv"), nil
	case modePASV:
		return append(base, "--disable-epsv"), nil
	case modePASVIP:
		return append(base, "--disable-epsv", "--no-ftp-skip-pasv-ip"), nil
	case modeEPRT:
		return append(base, "--ftp-port", urlHost(ep.clientAddr(), 21)), nil
	case modePORT:
		return append(base, "--ftp-port", ep.clientAddr(), "--disable-eprt"), nil
	}
	return nil, fmt.Errorf("curl: unknown mode %s", m)
}

// curlDataCommands are, for each mode, the data command curl must send and the fallback it must
// not have used.
var curlDataCommands = map[dataMode][2]string{
	modeEPSV:   {"EPSV", "PASV"},
	modePASV:   {"PASV", "EPSV"},
	modePASVIP: {"PASV", "EPSV"},
	modeEPRT:   {"EPRT", "PORT"},
	modePORT:   {"PORT", "EPRT"},
}

// curlCheck verifies from curl's -v output that the mode's data command was sent (and not its
// fallback), and that every connection curl opened went to the endpoint.
func curlCheck(verbose []byte, ep endpoint, m dataMode) error {
	sent := func(cmd string) bool {
		return bytes.Contains(verbose, []byte("\n> "+cmd+" ")) || bytes.Contains(verbose, []byte("\n> "+cmd+"\n"))
	}
	want, not := curlDataCommands[m][0], curlDataCommands[m][1]
	if !sent(want) {
		return fmt.Errorf("curl never sent %s", want)
	}
	if sent(not) {
		return fmt.Errorf("curl fell back from %s to %s", want, not)
	}
	for _, addr := range curlTried(verbose) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if host != ep.DataPeer {
			return fmt.Errorf("curl connected to %s, want every connection to go to %s", addr, ep.DataPeer)
		}
	}
	return nil
}

// curlTried returns the addresses curl connected to, in order, from its -v output
// ("*   Trying 198.18.0.1:21...").
func curlTried(verbose []byte) []string {
	var out []string
	for _, line := range strings.Split(string(verbose), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimLeft(line, "* "), "Trying "); ok {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(rest), "..."))
		}
	}
	return out
}

func (c curlClient) Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error {
	_, err := c.run(ctx, ep, m, "-o", local, ep.url(remote))
	return err
}

func (c curlClient) Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error {
	_, err := c.run(ctx, ep, m, "-T", local, ep.url(remote))
	return err
}

func (c curlClient) List(ctx context.Context, ep endpoint, m dataMode, dir string) ([]string, error) {
	out, err := c.run(ctx, ep, m, ep.url(dir)+"/")
	if err != nil {
		return nil, err
	}
	// LIST lines in Unix format: the name is everything after the 8th field.
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue // "total N"
		}
		names = append(names, strings.Join(f[8:], " "))
	}
	return cleanNames(names), nil
}

func (c curlClient) Resume(ctx context.Context, ep endpoint, m dataMode, remote, local string, offset int64) error {
	verbose, err := c.runVerbose(ctx, ep, m, "-C", "-", "-o", local, ep.url(remote))
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("\n> REST %d", offset); !bytes.Contains(verbose, []byte(want)) {
		return fmt.Errorf("curl resume: no %q in its output\n%s", strings.TrimSpace(want), tail(verbose, 25))
	}
	return nil
}

// curlDataPort returns the port of the data connection curl opened (the first connection not
// to port 21), from its -v output, or 0.
func curlDataPort(verbose []byte) int {
	for _, addr := range curlTried(verbose) {
		ap, err := netip.ParseAddrPort(addr)
		if err == nil && ap.Port() != 21 {
			return int(ap.Port())
		}
	}
	return 0
}

// ftplibClient drives e2e/testdata/ftpclient.py, which selects the mode explicitly and reports
// the address its data connection went to.
type ftplibClient struct{ ns string }

func (c ftplibClient) Name() string { return "ftplib" }

// ftplibResult is the script's JSON result line.
type ftplibResult struct {
	Op       string   `json:"op"`
	Error    string   `json:"error"`
	Bytes    int64    `json:"bytes"`
	Rest     int64    `json:"rest"`
	Reply    string   `json:"reply"`
	Names    []string `json:"names"`
	DataPeer string   `json:"data_peer"`
	Event    string   `json:"event"`
	Host     string   `json:"host"`
	Port     int      `json:"port"`
	Command  string   `json:"command"`
}

func scriptPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "ftpclient.py")
}

func ftplibArgs(ep endpoint, m dataMode, command string, args ...string) []string {
	a := []string{scriptPath(), "--host", ep.Host, "--port", strconv.Itoa(ep.Port), "--user", e2eUser, "--password", e2ePassword, "--timeout", "30"}
	switch m {
	case modePASVIP:
		a = append(a, "--mode", "pasv", "--trust-pasv-ip")
	default:
		a = append(a, "--mode", strings.ToLower(string(m)))
	}
	return append(append(a, command), args...)
}

func (c ftplibClient) run(ctx context.Context, ep endpoint, m dataMode, command string, args ...string) (ftplibResult, error) {
	var res ftplibResult
	out, transcript, err := runIn(ctx, c.ns, python3Bin, ftplibArgs(ep, m, command, args...)...)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil && err == nil {
		err = fmt.Errorf("result %q: %w", out, jerr)
	}
	if err == nil && res.Error != "" {
		err = fmt.Errorf("%s", res.Error)
	}
	if err == nil && res.DataPeer != "" && res.DataPeer != ep.DataPeer {
		err = fmt.Errorf("data connection was with %s, want %s", res.DataPeer, ep.DataPeer)
	}
	if err != nil {
		return res, fmt.Errorf("ftplib %s via %s %s %s: %w; stdout: %s\ntranscript:\n%s", m, ep.Name, command, strings.Join(args, " "), err, bytes.TrimSpace(out), tail(transcript, 25))
	}
	return res, nil
}

func (c ftplibClient) Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error {
	_, err := c.run(ctx, ep, m, "get", remote, local)
	return err
}

func (c ftplibClient) Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error {
	_, err := c.run(ctx, ep, m, "put", local, remote)
	return err
}

func (c ftplibClient) List(ctx context.Context, ep endpoint, m dataMode, dir string) ([]string, error) {
	res, err := c.run(ctx, ep, m, "list", dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(res.Names))
	for _, n := range res.Names {
		names = append(names, path.Base(n)) // some servers answer NLST dir with dir/name
	}
	return cleanNames(names), nil
}

func (c ftplibClient) Resume(ctx context.Context, ep endpoint, m dataMode, remote, local string, offset int64) error {
	res, err := c.run(ctx, ep, m, "rest-get", remote, local)
	if err != nil {
		return err
	}
	if res.Rest != offset {
		return fmt.Errorf("ftplib resume: sent REST %d, want REST %d", res.Rest, offset)
	}
	return nil
}

func cleanNames(in []string) []string {
	var out []string
	for _, n := range in {
		if n != "." && n != ".." && n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// ftpsCurl drives curl over FTPS: explicit (AUTH TLS, --ssl-reqd) or implicit (ftps://), always
// verifying the certificate against ca.
type ftpsCurl struct {
	ns, ca   string
	implicit bool // ftps:// to port 990
	extra    []string
}

func (c ftpsCurl) url(ep endpoint, p string) string {
	if c.implicit {
		return "ftps://" + hostPort(ep.Host, 990) + "/" + strings.TrimPrefix(p, "/")
	}
	return ep.url(p)
}

// run runs curl and returns its output and -v log. It checks from the log that the control
// connection used TLS, that data connections were protected (PROT P) and that the mode's data
// command was sent.
func (c ftpsCurl) run(ctx context.Context, ep endpoint, m dataMode, args ...string) ([]byte, []byte, error) {
	base, err := curlArgs(ep, m)
	if err != nil {
		return nil, nil, err
	}
	base = append(base, "--cacert", c.ca)
	if !c.implicit {
		base = append(base, "--ssl-reqd")
	}
	want := curlDataCommands[m][0]
	base = append(base, c.extra...)
	out, verbose, err := runIn(ctx, c.ns, "curl", append(base, args...)...)
	verbose = bytes.ReplaceAll(verbose, []byte("\r\n"), []byte("\n"))
	if err == nil {
		for _, must := range []string{"SSL connection using TLSv1.", "\n> PROT P\n", "\n> " + want} {
			if !bytes.Contains(verbose, []byte(must)) {
				err = fmt.Errorf("no %q in curl's -v output", strings.TrimSpace(must))
				break
			}
		}
	}
	if err != nil {
		return out, verbose, fmt.Errorf("curl FTPS %s via %s %s: %w\n%s", m, ep.Name, strings.Join(args, " "), err, tail(verbose, 30))
	}
	return out, verbose, nil
}

func (c ftpsCurl) Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error {
	_, _, err := c.run(ctx, ep, m, "-o", local, c.url(ep, remote))
	return err
}

func (c ftpsCurl) Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error {
	_, _, err := c.run(ctx, ep, m, "-T", local, c.url(ep, remote))
	return err
}

// ftpsPyResult is e2e/testdata/ftpsclient.py's JSON result.
type ftpsPyResult struct {
	Op          string `json:"op"`
	Error       string `json:"error"`
	DataError   string `json:"data_error"`
	Bytes       int64  `json:"bytes"`
	Reply       string `json:"reply"`
	DataTLS     string `json:"data_tls"`
	DataResumed bool   `json:"data_resumed"`
}

// ftpsPython runs ftpsclient.py (Python's FTP_TLS) once: command get or put. reuse makes its data
// connections resume the control TLS session, which ftplib never does by itself.
func ftpsPython(ctx context.Context, ns, ca string, ep endpoint, m dataMode, reuse bool, command string, args ...string) (ftpsPyResult, string, error) {
	script := filepath.Join(filepath.Dir(scriptPath()), "ftpsclient.py")
	a := []string{script, "--host", ep.Host, "--port", strconv.Itoa(ep.Port), "--user", e2eUser, "--password", e2ePassword,
		"--cafile", ca, "--timeout", "30", "--mode", strings.ToLower(string(m))}
	if reuse {
		a = append(a, "--reuse")
	}
	out, transcript, err := runIn(ctx, ns, python3Bin, append(append(a, command), args...)...)
	var res ftpsPyResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		return res, string(transcript), fmt.Errorf("ftpsclient.py output %q: %w (exit: %v)\ntranscript:\n%s", out, jerr, err, tail(transcript, 25))
	}
	return res, string(transcript), nil
}

// ftpsPy is ftpsClient.py as a getPutter: its data connections resume the control session, and
// it fails unless they did.
type ftpsPy struct{ ns, ca string }

func (c ftpsPy) run(ctx context.Context, ep endpoint, m dataMode, command string, args ...string) error {
	res, transcript, err := ftpsPython(ctx, c.ns, c.ca, ep, m, true, command, args...)
	if err == nil && res.Error != "" {
		err = fmt.Errorf("%s (data: %s)", res.Error, res.DataError)
	}
	if err == nil && !res.DataResumed {
		err = fmt.Errorf("the data connection did not resume the TLS session: %+v", res)
	}
	if err != nil {
		return fmt.Errorf("ftplib FTPS %s via %s %s %s: %w\ntranscript:\n%s", m, ep.Name, command, strings.Join(args, " "), err, tail([]byte(transcript), 25))
	}
	return nil
}

func (c ftpsPy) Get(ctx context.Context, ep endpoint, m dataMode, remote, local string) error {
	return c.run(ctx, ep, m, "get", remote, local)
}

func (c ftpsPy) Put(ctx context.Context, ep endpoint, m dataMode, local, remote string) error {
	return c.run(ctx, ep, m, "put", local, remote)
}

// lftpRun is how one lftp run talks to the server, and what its debug output must show.
type lftpRun struct {
	Passive bool // EPSV; otherwise PORT, or EPRT over IPv6
	// CA makes the run FTPS: TLS forced on control and data connections (ftp:ssl-force,
	// ftp:ssl-protect-data), the certificate verified against CA. Empty: plain FTP, TLS off.
	CA string
	// Transfers is how many times the mode's data command must appear in the debug output at
	// least (one per transfer); zero means once.
	Transfers int
}

// settings returns lftp's `set` commands for r: fail at the first error, bounded retries and
// timeouts, overwrite local files, r's TLS and data mode. Every lftp run of the suite uses them.
func (r lftpRun) settings() []string {
	onOff := map[bool]string{true: "on", false: "off"}
	yesNo := map[bool]string{true: "yes", false: "no"}
	s := []string{"set cmd:fail-exit yes"}
	if r.CA != "" {
		s = append(s,
			"set ssl:ca-file "+r.CA,
			"set ssl:verify-certificate yes",
			"set ftp:ssl-allow yes",
			"set ftp:ssl-force true",
			"set ftp:ssl-protect-data true",
		)
	} else {
		s = append(s, "set ftp:ssl-allow no")
	}
	return append(s,
		"set net:max-retries 2",
		"set net:reconnect-interval-base 1",
		"set net:timeout 20",
		"set xfer:clobber on",
		"set ftp:passive-mode "+onOff[r.Passive],
		"set ftp:prefer-epsv "+yesNo[r.Passive],
	)
}

// runLftp runs lftp commands (get, put, mirror) in namespace ns against ep as the test user,
// with r's settings. It checks from lftp's debug output that the data command of r's mode was
// used (r.Transfers times) and, for FTPS, that AUTH TLS and PROT P were sent.
func runLftp(ctx context.Context, ns string, ep endpoint, r lftpRun, commands ...string) error {
	script := strings.Join(append(append(r.settings(), commands...), "bye"), "; ")
	what := "lftp"
	if r.CA != "" {
		what = "lftp FTPS"
	}
	out, debug, err := runIn(ctx, ns, "lftp", "-d", "-u", e2eUser+","+e2ePassword, "-e", script, "ftp://"+urlHost(ep.Host, ep.Port))
	if err != nil {
		return fmt.Errorf("%s %q via %s: %w\n%s\n%s", what, commands, ep.Name, err, out, tail(debug, 40))
	}
	data := "---> EPSV"
	switch {
	case !r.Passive && ep.v6():
		data = "---> EPRT"
	case !r.Passive:
		data = "---> PORT"
	}
	if n := bytes.Count(debug, []byte(data)); n < max(1, r.Transfers) {
		return fmt.Errorf("%s %q via %s: %d %q in its debug output, want %d (one per transfer)\n%s",
			what, commands, ep.Name, n, data, max(1, r.Transfers), tail(debug, 40))
	}
	if r.CA != "" {
		for _, must := range []string{"---> AUTH TLS", "---> PROT P"} {
			if !bytes.Contains(debug, []byte(must)) {
				return fmt.Errorf("%s %q via %s: debug output has no %q\n%s", what, commands, ep.Name, must, tail(debug, 40))
			}
		}
	}
	return nil
}

// withTimeout is context.WithTimeout with the test's usual bound for one client run.
func withTimeout(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, 90*time.Second)
}
