//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Explicit (forward) proxy mode: clients configure ftpgate as their FTP proxy and name the
// server at login. Forwarding is off in the proxy namespace once the servers are up, so a
// client that ignored its proxy setting could not reach a server at all.
//
//	vsftpd 198.18.1.2:21    plain, IPv4 and IPv6
//	vsftpd 198.18.1.2:2121  plain
//	vsftpd 198.18.1.2:2021  FTPS required (AUTH TLS, PROT P, session reuse)
//	trap   198.18.2.2:21    a listener in the host namespace that no connection may reach
//
// ftpgate's namespace has its own /etc/hosts (/etc/netns/NAME/hosts, bind-mounted by
// `ip netns exec`): files.test is the server, trap.test the trap, mixed.test both.

const (
	explicitProxyUser = "proxy-alice"
	explicitProxyPass = "proxy-alice-pw"
	explicitAuthPort  = 2100 // the second ftpgate, with proxy authentication
)

func TestExplicitProxy(t *testing.T) {
	t.Parallel()
	requirePrereqs(t, needVsftpd, needCurl, needPython, needLftp, needFtpgate)
	tp := newTopology(t)
	pki := newFTPSPKI(t)
	srv := startVsftpd(t, tp.Server, vsftpdOptions{ReadyFrom: tp.Client, PassiveLo: 30000, PassiveHi: 30099})
	startVsftpd(t, tp.Server, vsftpdOptions{Port: 2121, ReadyFrom: tp.Client, PassiveLo: 30100, PassiveHi: 30199})
	startVsftpd(t, tp.Server, vsftpdOptions{Port: 2021, TLS: pki.Server, ReadyFrom: tp.Client, PassiveLo: 30200, PassiveHi: 30299})
	trap := startTrap(t, tp.Host, hostPort(hostV4, 21))
	netnsHosts(t, tp.Proxy, serverV4+" files.test mixed.test\n"+hostV4+" trap.test mixed.test\n")
	for _, s := range []struct{ key, val string }{{"net/ipv4/ip_forward", "0"}, {"net/ipv6/conf/all/forwarding", "0"}} {
		if err := sysctl(tp.Proxy, s.key, s.val); err != nil {
			t.Fatal(err)
		}
	}

	audit := filepath.Join(t.TempDir(), "audit.log")
	g := startGate(t, tp, explicitGate(pki, "", 21, "40000-40099", "127.0.0.1:9121", "--audit-log", audit))
	proxyURL := "ftp://" + proxyClientV4

	t.Run("lftp", func(t *testing.T) {
		for _, passive := range []bool{true, false} {
			t.Run(map[bool]string{true: "passive", false: "active"}[passive], func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				local := filepath.Join(t.TempDir(), bigFile)
				remote := fmt.Sprintf("up-lftp-%v.bin", passive)
				err := lftpViaProxy(ctx, tp.Client, proxyURL, "user", directV4(), lftpRun{Passive: passive, Transfers: 2},
					"get "+bigFile+" -o "+local, "put "+filepath.Join(suite.fixtures, bigFile)+" -o "+remote)
				if err != nil {
					t.Fatal(tp.diagnose(err))
				}
				if err := sameFile(local, bigFile); err != nil {
					t.Fatalf("download: %v", err)
				}
				if err := sameFile(filepath.Join(srv.Root, remote), bigFile); err != nil {
					t.Fatalf("upload, on the server: %v", err)
				}
				checkTransferLog(t, g, "STOR", remote, bigSize)
				checkTransferServer(t, g, remote, hostPort(serverV4, 21))
			})
		}
	})

	t.Run("lftp-ftps", func(t *testing.T) {
		for _, passive := range []bool{true, false} {
			t.Run(map[bool]string{true: "passive", false: "active"}[passive], func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				local := filepath.Join(t.TempDir(), bigFile)
				remote := fmt.Sprintf("up-lftp-ftps-%v.bin", passive)
				server := endpoint{"direct", serverV4, 2021, serverV4}
				err := lftpViaProxy(ctx, tp.Client, proxyURL, "open", server, lftpRun{Passive: passive, CA: pki.GateCA, Transfers: 2},
					"get "+bigFile+" -o "+local, "put "+filepath.Join(suite.fixtures, bigFile)+" -o "+remote)
				if err != nil {
					t.Fatal(tp.diagnose(err))
				}
				if err := sameFile(local, bigFile); err != nil {
					t.Fatalf("download: %v", err)
				}
				checkTransferTLS(t, g, remote, true, true)
				checkTransferServer(t, g, remote, hostPort(serverV4, 2021))
			})
		}
	})

	t.Run("curl", func(t *testing.T) {
		ctx, cancel := withTimeout(context.Background())
		defer cancel()
		local := filepath.Join(t.TempDir(), bigFile)
		// ftp://user%40SERVER:pass@GATEWAY/file
		u := fmt.Sprintf("ftp://%s%%40%s:%s@%s/%s", e2eUser, serverV4, url.PathEscape(e2ePassword), proxyClientV4, bigFile)
		_, verbose, err := runIn(ctx, tp.Client, "curl", "-sS", "-v", "-g", "--max-time", "60", "--ftp-pasv", "-o", local, u)
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Replace(u, url.PathEscape(e2ePassword), "****", 1), err, tail(verbose, 25))
		}
		if !bytes.Contains(verbose, []byte("> USER "+e2eUser+"@"+serverV4)) {
			t.Fatalf("curl did not send USER user@host:\n%s", tail(verbose, 25))
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Fatalf("download: %v", err)
		}
	})

	t.Run("ftplib", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, server string
			m                  dataMode
		}{
			{"user@host", e2eUser + "@" + serverV4, hostPort(serverV4, 21), modeEPSV},
			{"user@host:port", e2eUser + "@" + serverV4 + ":2121", hostPort(serverV4, 2121), modePASV},
			{"user@host port", e2eUser + "@" + serverV4 + " 2121", hostPort(serverV4, 2121), modePORT},
			{"user@[ipv6]", e2eUser + "@[" + serverV6 + "]", hostPort(serverV6, 21), modeEPRT},
			{"user@name from the namespace's hosts file", e2eUser + "@files.test", hostPort(serverV4, 21), modeEPSV},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				local := filepath.Join(t.TempDir(), bigFile)
				if _, err := ftplibExplicit(ctx, tp.Client, gateV4(), tc.user, e2ePassword, tc.m, "get", bigFile, local); err != nil {
					t.Fatal(tp.diagnose(err))
				}
				if err := sameFile(local, bigFile); err != nil {
					t.Fatalf("download: %v", err)
				}
				rec, err := g.logs.Wait(ctx, "login", func(r logRecord) bool { return r.str("server") == tc.server })
				if err != nil || rec.str("user") != e2eUser {
					t.Fatalf("no login record for %s as %s: %v %v", tc.server, e2eUser, err, rec)
				}
			})
		}
	})

	t.Run("denied", func(t *testing.T) {
		for _, tc := range []struct{ name, user, rule, reason string }{
			{"denied network", "u@" + hostV4, "deny_destinations", hostV4},
			{"name resolving to a denied address", "u@trap.test", "deny_destinations", `"trap.test" resolved to ` + hostV4},
			{"name with one denied address of two", "u@mixed.test", "deny_destinations", `"mixed.test" resolved to ` + hostV4},
			{"port not allowed", "u@" + serverV4 + ":22", "destination_ports", "port 22"},
			{"the gateway itself", "u@" + proxyClientV4, "explicit.self", proxyClientV4},
			{"loopback", "u@127.0.0.1", "explicit.special_address", "127.0.0.1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := withTimeout(context.Background())
				defer cancel()
				ctl, greeting, err := dialCtl(ctx, tp.Client, hostPort(proxyClientV4, 21))
				if err != nil || greeting.Code != 220 {
					t.Fatalf("greeting %v: %v", greeting, err)
				}
				defer ctl.Close()
				if _, err := ctl.expect("USER "+tc.user, 530); err != nil {
					t.Fatalf("%v\n%s", err, ctl.Transcript())
				}
				if err := ctl.quit(); err != nil {
					t.Fatal(err)
				}
				if _, err := waitAudit(ctx, audit, 1, func(r map[string]any) bool {
					return r["type"] == "denial" && r["rule"] == tc.rule && r["verb"] == "USER" && r["user"] == "u" &&
						strings.Contains(fmt.Sprint(r["reason"]), tc.reason)
				}); err != nil {
					t.Fatalf("no audit record of the denial by %s: %v", tc.rule, err)
				}
			})
		}
		if n := trap.accepted.Load(); n != 0 {
			t.Fatalf("the trap at %s accepted %d connections: a refused destination was dialed", hostV4, n)
		}
	})

	t.Run("proxy-auth", func(t *testing.T) {
		users := filepath.Join(t.TempDir(), "proxy-users")
		hash, err := bcrypt.GenerateFromPassword([]byte(explicitProxyPass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(users, []byte(explicitProxyUser+":"+string(hash)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ga := startGate(t, tp, explicitGate(pki, users, explicitAuthPort, "40100-40199", "127.0.0.1:9122", "--audit-log", audit))
		ctx, cancel := withTimeout(context.Background())
		defer cancel()

		// lftp's default ftp:proxy-auth-type "user": USER proxyuser, PASS proxypass, then
		// USER user@host, PASS pass.
		local := filepath.Join(t.TempDir(), bigFile)
		authURL := fmt.Sprintf("ftp://%s:%s@%s", explicitProxyUser, explicitProxyPass, hostPort(proxyClientV4, explicitAuthPort))
		if err := lftpViaProxy(ctx, tp.Client, authURL, "user", directV4(), lftpRun{Passive: true}, "get "+bigFile+" -o "+local); err != nil {
			t.Fatal(tp.diagnose(err))
		}
		if err := sameFile(local, bigFile); err != nil {
			t.Fatalf("download: %v", err)
		}
		// lftp's "joined" form, from ftplib: USER user@proxyuser@host, PASS pass@proxypass.
		if _, err := ftplibExplicit(ctx, tp.Client, endpoint{"ftpgate", proxyClientV4, explicitAuthPort, proxyClientV4},
			e2eUser+"@"+explicitProxyUser+"@"+serverV4, e2ePassword+"@"+explicitProxyPass, modeEPSV, "get", bigFile, local); err != nil {
			t.Fatal(err)
		}

		// Failures: a wrong proxy password, and a server login without the proxy login.
		ctl, _, err := dialCtl(ctx, tp.Client, hostPort(proxyClientV4, explicitAuthPort))
		if err != nil {
			t.Fatal(err)
		}
		defer ctl.Close()
		for _, step := range []struct {
			line string
			code int
		}{
			{"USER " + explicitProxyUser, 331}, {"PASS not-the-password", 530},
			{"USER " + e2eUser + "@" + explicitProxyUser + "@" + serverV4, 331}, {"PASS " + e2ePassword + "@guess", 530},
		} {
			if _, err := ctl.expect(step.line, step.code); err != nil {
				t.Fatalf("%v\n%s", err, ctl.Transcript())
			}
		}
		if err := ctl.quit(); err != nil {
			t.Fatal(err)
		}
		n, err := waitAudit(ctx, audit, 2, func(r map[string]any) bool {
			return r["type"] == "denial" && r["rule"] == "explicit.auth" && r["verb"] == "PASS" && r["code"] == float64(530)
		})
		if err != nil || n != 2 {
			t.Fatalf("%d audit records of failed proxy logins, want 2: %v", n, err)
		}
		if err := waitRecords(ctx, ga, "proxy login failed", 2); err != nil {
			t.Fatal(err)
		}
		if recs := ga.logs.Records("proxy login failed"); len(recs) != 2 {
			t.Fatalf("%d proxy login failures logged, want 2", len(recs))
		}
	})
}

// explicitGate is the command line of an explicit-mode ftpgate on port (IPv4 and IPv6) with
// TLS toward clients, the three servers' ports allowed, the host namespace's network denied,
// and, when users is set, proxy authentication.
func explicitGate(pki *ftpsPKI, users string, port int, passive, admin string, extra ...string) gateConfig {
	flags := pki.gateFlags(
		"--mode", "explicit",
		"--upstream", "", // gateConfig fills in a reverse proxy's upstream; explicit mode has none
		"--destination-ports", "21,2121,2021",
		"--deny-destinations", "198.18.2.0/24",
	)
	if users != "" {
		flags = append(flags, "--explicit-auth", users)
	}
	return gateConfig{
		Listen:       []string{hostPort(proxyClientV4, port), hostPort(proxyClientV6, port)},
		PassivePorts: passive,
		AdminListen:  admin,
		Firewall:     "none", // two ftpgates share the namespace; with forwarding off nothing passes it anyway
		Extra:        append(flags, extra...),
	}
}

// lftpViaProxy runs lftp in ns with ftp:proxy set to proxyURL and ftp:proxy-auth-type to
// authType, logged in to server as the test user, with r's settings. Like runLftp it checks
// r's data command and, for FTPS, AUTH TLS and PROT P in the debug output, and also how lftp
// named the server: USER user@host[:port], or OPEN host[:port] for the "open" type. Through an
// FTP proxy lftp uses PASV, not EPSV, and sends AUTH TLS only with the "open" and
// "proxy-user@host" types, once the server is named (lftp src/ftpclass.cc, CONNECTED_STATE).
func lftpViaProxy(ctx context.Context, ns, proxyURL, authType string, server endpoint, r lftpRun, commands ...string) error {
	open := "open -u " + e2eUser + "," + e2ePassword + " ftp://" + urlHost(server.Host, server.Port)
	set := []string{"set ftp:proxy " + proxyURL, "set ftp:proxy-auth-type " + authType}
	script := strings.Join(append(append(append(set, r.settings()...), open), append(commands, "bye")...), "; ")
	out, debug, err := runIn(ctx, ns, "lftp", "-d", "-e", script)
	if err != nil {
		return fmt.Errorf("lftp via proxy %s %q: %w\n%s\n%s", proxyURL, commands, err, out, tail(debug, 40))
	}
	named := server.Host
	if server.Port != 21 {
		named += fmt.Sprintf(":%d", server.Port)
	}
	must := []string{"---> USER " + e2eUser + "@" + named}
	if authType == "open" {
		must = []string{"---> OPEN " + named, "---> USER " + e2eUser + "\n"}
	}
	if r.CA != "" {
		must = append(must, "---> AUTH TLS", "---> PROT P")
	}
	for _, m := range must {
		if !bytes.Contains(debug, []byte(m)) {
			return fmt.Errorf("lftp via proxy %q: debug output has no %q\n%s", commands, m, tail(debug, 40))
		}
	}
	data := "---> PASV"
	if !r.Passive {
		data = "---> PORT"
	}
	if n := bytes.Count(debug, []byte(data)); n < max(1, r.Transfers) {
		return fmt.Errorf("lftp via proxy %q: %d %q in its debug output, want %d\n%s", commands, n, data, max(1, r.Transfers), tail(debug, 40))
	}
	return nil
}

// ftplibExplicit runs ftpclient.py against ep with the given USER and PASS arguments.
func ftplibExplicit(ctx context.Context, ns string, ep endpoint, user, pass string, m dataMode, command string, args ...string) (ftplibResult, error) {
	a := ftplibArgs(ep, m, command, args...)
	a[indexOf(a, "--user")+1] = user
	a[indexOf(a, "--password")+1] = pass
	var res ftplibResult
	out, transcript, err := runIn(ctx, ns, python3Bin, a...)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil && err == nil {
		err = fmt.Errorf("result %q: %w", out, jerr)
	}
	if err == nil && res.Error != "" {
		err = fmt.Errorf("%s", res.Error)
	}
	if err != nil {
		return res, fmt.Errorf("ftplib %s USER %s %s: %w\ntranscript:\n%s", m, user, command, err, tail(transcript, 25))
	}
	return res, nil
}

// checkTransferServer checks that ftpgate's transfer record of name names server.
func checkTransferServer(t *testing.T, g *gate, name, server string) {
	t.Helper()
	for _, r := range g.logs.Records("transfer") {
		if strings.HasSuffix(r.str("path"), name) {
			if got := r.str("server"); got != server {
				t.Errorf("transfer record of %s: server %q, want %s\n%s", name, got, server, r)
			}
			return
		}
	}
	t.Errorf("no transfer record of %s", name)
}

// trap is a listener that counts the connections it accepts (and closes them).
type trap struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startTrap(t *testing.T, ns, addr string) *trap {
	t.Helper()
	ln, err := listenIn(ns, "tcp", addr)
	if err != nil {
		t.Fatalf("trap listener %s in %s: %v", addr, ns, err)
	}
	tr := &trap{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return tr
}

// netnsHosts writes /etc/netns/NS/hosts, which `ip netns exec NS` bind-mounts over /etc/hosts
// for the programs it starts, and removes it when the test ends.
func netnsHosts(t *testing.T, ns, hosts string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	_, err := os.Stat("/etc/netns")
	created := os.IsNotExist(err)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
		}
		if created {
			_ = os.Remove("/etc/netns") // only if empty: another test may be using it
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 localhost\n"+hosts), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitAudit waits (up to 10 s) for at least want audit records matching match in the audit log
// at path and returns how many there are.
func waitAudit(ctx context.Context, path string, want int, match func(map[string]any) bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n := 0
		if b, err := os.ReadFile(path); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				var r map[string]any
				if json.Unmarshal(sc.Bytes(), &r) == nil && match(r) {
					n++
				}
			}
		}
		if n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("%d matching records in %s, want %d", n, path, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
