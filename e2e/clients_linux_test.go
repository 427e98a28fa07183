//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
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
func gateV4() endpoint   { return endpoint{"ftpgate", proxyClientV4, 21, proxyClientV4} }
func gateV6() endpoint   { return endpoint{"ftpgate", proxyClientV6, 21, proxyClientV6} }

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

// runIn runs a client program in namespace ns and returns stdout and stderr.
func runIn(ctx context.Context, ns, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := nsCommand(ctx, ns, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return o.Bytes(), e.Bytes(), err
}

// curlClient drives curl; its -v output proves which data commands went over the wire.
type curlClient struct{ ns string }

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
	base := []string{"-sS", "-v", "-g", "--max-time", "60", "--connect-timeout", "10", "--user", e2eUser + ":" + e2ePassword}
	switch m {
	case modeEPSV:
		base = append(base, "--ftp-pasv")
	case modePASV:
		base = append(base, "--disable-epsv")
	case modePASVIP:
		base = append(base, "--disable-epsv", "--no-ftp-skip-pasv-ip")
	case modeEPRT:
		base = append(base, "--ftp-port", urlHost(ep.clientAddr(), 21))
	case modePORT:
		base = append(base, "--ftp-port", ep.clientAddr(), "--disable-eprt")
	default:
		return nil, nil, fmt.Errorf("curl: unknown mode %s", m)
	}
	out, verbose, err := runIn(ctx, c.ns, "curl", append(base, args...)...)
	verbose = bytes.ReplaceAll(verbose, []byte("\r\n"), []byte("\n"))
	if err == nil {
		err = curlCheck(verbose, ep, m)
	}
	if err != nil {
		return out, verbose, fmt.Errorf("curl %s via %s %s: %w\n%s", m, ep.Name, strings.Join(args, " "), err, tail(verbose, 25))
	}
	return out, verbose, nil
}

// curlCheck verifies from curl's -v output that the mode's data command was sent (and not its
// fallback), and that every connection curl opened went to the endpoint.
func curlCheck(verbose []byte, ep endpoint, m dataMode) error {
	sent := func(cmd string) bool {
		return bytes.Contains(verbose, []byte("\n> "+cmd+" ")) || bytes.Contains(verbose, []byte("\n> "+cmd+"\n"))
	}
	// The command the mode must send, and the fallback curl must not have used.
	pairs := map[dataMode][2]string{
		modeEPSV:   {"EPSV", "PASV"},
		modePASV:   {"PASV", "EPSV"},
		modePASVIP: {"PASV", "EPSV"},
		modeEPRT:   {"EPRT", "PORT"},
		modePORT:   {"PORT", "EPRT"},
	}
	want, not := pairs[m][0], pairs[m][1]
	if !sent(want) {
		return fmt.Errorf("curl never sent %s", want)
	}
	if sent(not) {
		return fmt.Errorf("curl fell back from %s to %s", want, not)
	}
	for _, line := range strings.Split(string(verbose), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "*   Trying ")
		if !ok {
			rest, ok = strings.CutPrefix(strings.TrimSpace(line), "* Trying ")
		}
		if !ok {
			continue
		}
		host, _, err := net.SplitHostPort(strings.TrimSuffix(rest, "..."))
		if err != nil {
			continue
		}
		if host != ep.DataPeer {
			return fmt.Errorf("curl connected to %s, want every connection to go to %s", rest, ep.DataPeer)
		}
	}
	return nil
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

// lftpMirror runs one lftp mirror in the client namespace: reverse uploads local src to remote
// dst, otherwise it downloads remote src to local dst. It checks from lftp's debug output that
// the data command of the chosen mode was used.
func lftpMirror(ctx context.Context, ns string, ep endpoint, passive, reverse bool, src, dst string) error {
	settings := []string{
		"set cmd:fail-exit yes",
		"set ftp:ssl-allow no",
		"set net:max-retries 2",
		"set net:reconnect-interval-base 1",
		"set net:timeout 20",
		"set xfer:clobber on",
		"set ftp:passive-mode " + map[bool]string{true: "on", false: "off"}[passive],
		"set ftp:prefer-epsv " + map[bool]string{true: "yes", false: "no"}[passive],
	}
	mirror := "mirror --parallel=4 " + src + " " + dst
	if reverse {
		mirror = "mirror -R --parallel=4 " + src + " " + dst
	}
	script := strings.Join(append(settings, mirror, "bye"), "; ")
	out, debug, err := runIn(ctx, ns, "lftp", "-d", "-u", e2eUser+","+e2ePassword, "-e", script, "ftp://"+urlHost(ep.Host, ep.Port))
	if err != nil {
		return fmt.Errorf("lftp %q via %s: %w\n%s\n%s", mirror, ep.Name, err, out, tail(debug, 30))
	}
	var want string
	switch {
	case passive:
		want = "---> EPSV"
	case ep.v6():
		want = "---> EPRT"
	default:
		want = "---> PORT"
	}
	if !bytes.Contains(debug, []byte(want)) {
		return fmt.Errorf("lftp %q via %s: debug output has no %q\n%s", mirror, ep.Name, want, tail(debug, 30))
	}
	return nil
}

// withTimeout is context.WithTimeout with the test's usual bound for one client run.
func withTimeout(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, 90*time.Second)
}
