//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

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
	base := []string{"-sS", "-v", "-g", "--max-time", "60", "--connect-timeout", "10",
		"--user", e2eUser + ":" + e2ePassword, "--cacert", c.ca}
	if !c.implicit {
		base = append(base, "--ssl-reqd")
	}
	var want string
	switch m {
	case modeEPSV:
		base, want = append(base, "--ftp-pasv"), "EPSV"
	case modePASV:
		base, want = append(base, "--disable-epsv"), "PASV"
	case modeEPRT:
		base, want = append(base, "--ftp-port", urlHost(ep.clientAddr(), 21)), "EPRT"
	case modePORT:
		base, want = append(base, "--ftp-port", ep.clientAddr(), "--disable-eprt"), "PORT"
	default:
		return nil, nil, fmt.Errorf("curl: unknown mode %s", m)
	}
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

// lftpFTPS runs lftp with TLS forced on control and data (ftp:ssl-force, ftp:ssl-protect-data),
// trusting ca, and the given commands (get, put). It checks from lftp's debug output that AUTH
// TLS and PROT P were sent and the data command of the chosen mode was used.
func lftpFTPS(ctx context.Context, ns, ca string, ep endpoint, passive bool, commands ...string) error {
	settings := []string{
		"set cmd:fail-exit yes",
		"set ssl:ca-file " + ca,
		"set ssl:verify-certificate yes",
		"set ftp:ssl-allow yes",
		"set ftp:ssl-force true",
		"set ftp:ssl-protect-data true",
		"set net:max-retries 2",
		"set net:reconnect-interval-base 1",
		"set net:timeout 20",
		"set xfer:clobber on",
		"set ftp:passive-mode " + map[bool]string{true: "on", false: "off"}[passive],
		"set ftp:prefer-epsv " + map[bool]string{true: "yes", false: "no"}[passive],
	}
	script := strings.Join(append(append(settings, commands...), "bye"), "; ")
	out, debug, err := runIn(ctx, ns, "lftp", "-d", "-u", e2eUser+","+e2ePassword, "-e", script, "ftp://"+urlHost(ep.Host, ep.Port))
	if err != nil {
		return fmt.Errorf("lftp FTPS %q via %s: %w\n%s\n%s", commands, ep.Name, err, out, tail(debug, 40))
	}
	data := "---> EPSV"
	switch {
	case !passive && ep.v6():
		data = "---> EPRT"
	case !passive:
		data = "---> PORT"
	}
	for _, must := range []string{"---> AUTH TLS", "---> PROT P", data} {
		if !bytes.Contains(debug, []byte(must)) {
			return fmt.Errorf("lftp FTPS %q via %s: debug output has no %q\n%s", commands, ep.Name, must, tail(debug, 40))
		}
	}
	return nil
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
