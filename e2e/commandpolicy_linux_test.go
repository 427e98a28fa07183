//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCommandPolicyReadOnly: a read-only DMZ relay (--commands-preset read-only) in front of a
// writable vsftpd. curl and Python's ftplib are refused STOR, DELE and RNFR with a 5xx reply and
// the server's files stay as they were; RETR is served (checksum). The audit log holds one
// denial record per refused command, naming the client, the user, the verb and the rule.
func TestCommandPolicyReadOnly(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needPython, needFtpgate)
	tp := newTopology(t)
	srv := startServer(t, tp, vsftpd)
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	startGate(t, tp, gateConfig{Extra: []string{"--commands-preset", "read-only", "--audit-log", audit}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	curl := curlClient{ns: tp.Client}
	py := ftplibClient{tp.Client}
	ep := gateV4()

	refused := map[string]int{} // verb -> attempts the relay must have refused
	t.Run("curl/STOR", func(t *testing.T) {
		refused["STOR"]++
		base, _ := curlArgs(ep, modeEPSV)
		_, verbose, err := runIn(ctx, tp.Client, "curl", append(base, "-T", filepath.Join(suite.fixtures, oneFile), ep.url("uploaded-curl.bin"))...)
		checkCurlRefused(t, err, verbose, "STOR uploaded-curl.bin")
	})
	t.Run("ftplib/STOR", func(t *testing.T) {
		refused["STOR"]++
		res, err := py.run(ctx, ep, modeEPSV, "put", filepath.Join(suite.fixtures, oneFile), "uploaded-ftplib.bin")
		if err == nil || !refusal.MatchString(res.Error) {
			t.Errorf("ftplib STOR through the read-only relay: %q (%v); want a 5xx refusal", res.Error, err)
		}
	})
	t.Run("curl/DELE", func(t *testing.T) {
		refused["DELE"]++
		base, _ := curlArgs(ep, modeEPSV)
		_, verbose, err := runIn(ctx, tp.Client, "curl", append(base, "-Q", "DELE "+oneFile, ep.url(listDir)+"/")...)
		checkCurlRefused(t, err, verbose, "DELE "+oneFile)
	})
	t.Run("curl/RNFR", func(t *testing.T) {
		refused["RNFR"]++
		base, _ := curlArgs(ep, modeEPSV)
		_, verbose, err := runIn(ctx, tp.Client, "curl", append(base, "-Q", "RNFR "+oneFile, "-Q", "RNTO renamed.bin", ep.url(listDir)+"/")...)
		checkCurlRefused(t, err, verbose, "RNFR "+oneFile)
		if bytes.Contains(verbose, []byte("\n> RNTO")) {
			t.Errorf("curl sent RNTO after the refused RNFR")
		}
	})
	t.Run("ftplib/DELE+RNFR", func(t *testing.T) {
		refused["DELE"]++
		refused["RNFR"]++
		out, transcript, err := runIn(ctx, tp.Client, python3Bin, ftplibArgs(ep, modeEPSV, "raw", "DELE "+bigFile, "RNFR "+bigFile)...)
		if err != nil {
			t.Fatalf("ftplib raw: %v\n%s\n%s", err, out, transcript)
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r ftplibResult
			if json.Unmarshal([]byte(line), &r) == nil && r.Command != "" {
				got[r.Command] = r.Reply
			}
		}
		for _, verb := range []string{"DELE", "RNFR"} {
			if !strings.HasPrefix(got[verb], "5") {
				t.Errorf("ftplib %s through the read-only relay: reply %q, want 5xx", verb, got[verb])
			}
		}
	})
	for _, c := range []ftpClient{curl, py} {
		t.Run(c.Name()+"/RETR", func(t *testing.T) {
			local := filepath.Join(t.TempDir(), bigFile)
			if err := c.Get(ctx, ep, modeEPSV, bigFile, local); err != nil {
				t.Fatal(tp.diagnose(err))
			}
			if err := sameFile(local, bigFile); err != nil {
				t.Error(err)
			}
		})
	}

	// The server's files are as they were.
	for _, name := range []string{"uploaded-curl.bin", "uploaded-ftplib.bin", "renamed.bin"} {
		if _, err := os.Stat(filepath.Join(srv.Root, name)); err == nil {
			t.Errorf("%s exists on the server behind a read-only relay", name)
		}
	}
	for _, name := range []string{oneFile, bigFile} {
		if err := sameFile(filepath.Join(srv.Root, name), name); err != nil {
			t.Errorf("on the server: %v", err)
		}
	}

	for verb, n := range refused {
		recs := waitAuditRecords(ctx, t, audit, n, func(r logRecord) bool {
			return r.str("type") == "denial" && r.str("verb") == verb
		})
		if len(recs) != n {
			t.Errorf("%d denial records for %s, want %d (one per refusal):\n%s", len(recs), verb, n, excerpt(recs, 5))
		}
		for _, r := range recs {
			code, _ := r.num("code")
			if r.str("kind") != "policy" || !strings.Contains(r.str("rule"), "read-only") || r.str("user") != e2eUser ||
				recordHost(r, "client") != clientV4 || code < 500 || code > 599 {
				t.Errorf("denial record for %s: want kind policy, a read-only rule, user %s, client %s, a 5xx code: %s", verb, e2eUser, clientV4, r)
			}
		}
	}
}

// refusal is a 5xx reply line.
var refusal = regexp.MustCompile(`^5\d\d `)

// checkCurlRefused checks that curl failed because the relay answered the command with 5xx.
func checkCurlRefused(t *testing.T, err error, verbose []byte, command string) {
	t.Helper()
	verbose = bytes.ReplaceAll(verbose, []byte("\r\n"), []byte("\n"))
	if err == nil {
		t.Fatalf("curl %s through the read-only relay succeeded\n%s", command, tail(verbose, 20))
	}
	_, after, ok := bytes.Cut(verbose, []byte("\n> "+command+"\n"))
	if !ok {
		t.Fatalf("curl never sent %q\n%s", command, tail(verbose, 20))
	}
	for _, line := range strings.Split(string(after), "\n") {
		if reply, ok := strings.CutPrefix(line, "< "); ok { // curl's own "* " notes may come first
			if !refusal.MatchString(reply) {
				t.Errorf("curl %s: reply %q, want 5xx\n%s", command, reply, tail(verbose, 20))
			}
			return
		}
	}
	t.Errorf("curl %s: no reply in its output\n%s", command, tail(verbose, 20))
}
