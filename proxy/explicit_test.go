package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/policy"
	"golang.org/x/crypto/bcrypt"
)

// Explicit mode on loopback: the servers are lineServers (which record what
// they were sent) or the fake FTP server, named by the client at login.
// Loopback is a "special" destination, so every test allows 127.0.0.0/8 by
// name, as an operator would have to.

// explicitHarness runs ftpgate in explicit mode; servers on port are allowed.
func explicitHarness(t *testing.T, rec *recorder, ports []uint16, tweak func(*Config)) *harness {
	return newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Mode = ModeExplicit
		c.Upstream = ""
		c.Observer = rec
		c.Policy.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Policy.DestinationPorts = append(ports, fakeAddr(f).Port())
		c.Explicit.Resolve = staticResolver(map[string][]string{
			"ftp.test":   {"127.0.0.1"},
			"mixed.test": {"127.0.0.1", "127.0.0.2"},
		})
		if tweak != nil {
			tweak(c)
		}
	})
}

// proxyUsers is a users file with proxy:proxypw.
func proxyUsers(t *testing.T) *policy.Users {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("proxypw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u, err := policy.ParseUsers([]byte("proxy:" + string(h) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// step is one command of a transcript and the reply code it must get.
type step struct {
	code int
	line string
}

// TestExplicitUserForms logs in with every USER form clients send, with
// proxy authentication off and on, and checks what the server saw: USER
// with the user name alone, PASS with the server password, and nothing of
// the proxy's credentials.
func TestExplicitUserForms(t *testing.T) {
	tests := []struct {
		name   string
		auth   bool
		script []step // %s is the server's host:port, %h its host, %p its port
	}{
		{name: "user@host:port", script: []step{{331, "USER u@%s"}, {230, "PASS pw"}}},
		{name: "user@host port", script: []step{{331, "USER u@%h %p"}, {230, "PASS pw"}}},
		{name: "user@name:port", script: []step{{331, "USER u@ftp.test:%p"}, {230, "PASS pw"}}},
		{name: "user holding @", script: []step{{331, "USER u@x.example@%s"}, {230, "PASS pw"}}},
		{name: "OPEN host:port", script: []step{{200, "OPEN %s"}, {331, "USER u"}, {230, "PASS pw"}}},
		{name: "SITE host port", script: []step{{200, "SITE %h %p"}, {331, "USER u"}, {230, "PASS pw"}}},
		{name: "joined-acct, auth off: proxy credentials dropped",
			script: []step{{331, "USER u@%s proxy"}, {332, "PASS pw"}, {230, "ACCT proxypw"}}},
		{name: "feat and syst first", script: []step{{211, "FEAT"}, {215, "SYST"}, {331, "USER u@%s"}, {230, "PASS pw"}}},
		{name: "proxy login, then user@host", auth: true,
			script: []step{{331, "USER proxy"}, {230, "PASS proxypw"}, {331, "USER u@%s"}, {230, "PASS pw"}}},
		{name: "joined", auth: true, script: []step{{331, "USER u@proxy@%s"}, {230, "PASS pw@proxypw"}}},
		{name: "joined-acct", auth: true, script: []step{{331, "USER u@%s proxy"}, {332, "PASS pw"}, {230, "ACCT proxypw"}}},
		{name: "proxy-user@host", auth: true,
			script: []step{{331, "USER proxy@%s"}, {230, "PASS proxypw"}, {331, "USER u"}, {230, "PASS pw"}}},
		{name: "proxy login, then OPEN", auth: true,
			script: []step{{331, "USER proxy"}, {230, "PASS proxypw"}, {200, "OPEN %s"}, {331, "USER u"}, {230, "PASS pw"}}},
		{name: "REIN restarts the proxy login", auth: true,
			script: []step{{331, "USER proxy"}, {220, "REIN"}, {503, "PASS proxypw"}, {331, "USER u@proxy@%s"}, {230, "PASS pw@proxypw"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := newLineServer(t)
			rec := &recorder{}
			h := explicitHarness(t, rec, []uint16{ls.addr().Port()}, func(c *Config) {
				if tt.auth {
					c.Explicit.Users = proxyUsers(t)
				}
			})
			cl := h.dialGreeted()
			r := strings.NewReplacer("%s", ls.addr().String(), "%h", ls.addr().Addr().String(),
				"%p", fmt.Sprint(ls.addr().Port()))
			for _, s := range tt.script {
				cl.cmd(s.code, "%s", r.Replace(s.line))
			}
			cl.cmd(221, "QUIT")
			conns, lines := ls.seen()
			if conns != 1 || len(lines) < 2 || lines[0] != "USER u" && lines[0] != "USER u@x.example" || lines[1] != "PASS pw" {
				t.Fatalf("server saw %d connections and %q, want one with USER u, PASS pw", conns, lines)
			}
			for _, l := range lines {
				if strings.Contains(l, "proxy") || strings.Contains(l, "@127.") {
					t.Fatalf("the server was sent %q: proxy credentials or the destination leaked", l)
				}
			}
			for _, d := range rec.denials() {
				t.Errorf("unexpected denial %+v", d)
			}
		})
	}
}

// TestExplicitProxyAuthFailure: a wrong proxy password, an unknown proxy
// user and a joined login with a wrong proxy password and a
// proxy-user@host login with the wrong proxy password each get 530 and a
// login-failure denial, and no server is ever dialed; the four count toward
// the client's failed-login limit, so its next session is refused.
func TestExplicitProxyAuthFailure(t *testing.T) {
	ls := newLineServer(t)
	rec := &recorder{}
	h := explicitHarness(t, rec, []uint16{ls.addr().Port()}, func(c *Config) {
		c.Explicit.Users = proxyUsers(t)
		c.Limits.MaxLoginFailures = 4
	})
	cl := h.dialGreeted()
	cl.cmd(331, "USER proxy")
	cl.cmd(530, "PASS guess1")
	cl.cmd(331, "USER mallory")
	cl.cmd(530, "PASS proxypw")
	cl.cmd(331, "USER u@proxy@%s", ls.addr())
	cl.cmd(530, "PASS pw@guess2")
	cl.cmd(331, "USER u@%s", ls.addr()) // proxy-user@host: "u" is taken for the proxy user
	cl.cmd(530, "PASS pw")
	cl.cmd(221, "QUIT")
	if conns, _ := ls.seen(); conns != 0 {
		t.Fatalf("the server got %d connections, want none", conns)
	}
	ds := rec.denials()
	if len(ds) != 4 {
		t.Fatalf("%d denials, want 4: %+v", len(ds), ds)
	}
	for _, d := range ds {
		if d.Rule != ruleProxyAuth || d.Kind != "policy" || d.Verb != "PASS" || d.Code != 530 || d.Reason == "" {
			t.Errorf("denial %+v: want a policy login failure of PASS with 530 and a reason", d)
		}
		if strings.Contains(d.Reason, "guess") || strings.Contains(d.Reason, "proxypw") {
			t.Errorf("denial reason %q shows a password", d.Reason)
		}
	}
	if n := rec.count()["upstream-connect"]; n != 0 {
		t.Fatalf("%d upstream connections attempted, want none", n)
	}
	if msg := h.dialOnly("").expect(421); !strings.Contains(msg, "failed logins") {
		t.Fatalf("after four failed proxy logins: 421 %q, want the failed-login cool-down", msg)
	}
}

// TestExplicitDestinationRefused: destinations the policy refuses get 530
// and a denial naming the rule, and the trap server is never dialed; the
// session goes on, and an allowed destination then works.
func TestExplicitDestinationRefused(t *testing.T) {
	trap := newLineServer(t)
	port := trap.addr().Port()
	tests := []struct {
		name  string
		user  string
		tweak func(*Config)
		rule  string
	}{
		{name: "port not allowed", user: "u@127.0.0.1:2121", rule: "destination_ports"},
		{name: "default port not allowed", user: "u@127.0.0.1", rule: "destination_ports"},
		{name: "denied network", user: fmt.Sprintf("u@127.0.0.1:%d", port), rule: "deny_destinations",
			tweak: func(c *Config) { c.Policy.DenyDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }},
		{name: "name resolving to a denied address", user: fmt.Sprintf("u@mixed.test:%d", port), rule: "deny_destinations",
			tweak: func(c *Config) { c.Policy.DenyDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")} }},
		{name: "loopback without an explicit allow", user: fmt.Sprintf("u@ftp.test:%d", port), rule: "explicit.special_address",
			tweak: func(c *Config) { c.Policy.AllowDestinations = nil }},
		{name: "unknown name", user: fmt.Sprintf("u@nowhere.test:%d", port), rule: "explicit.resolve"},
		{name: "ftpgate itself", user: "u@%gate", rule: "explicit.self"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			h := explicitHarness(t, rec, []uint16{port}, func(c *Config) {
				if tt.tweak != nil {
					tt.tweak(c)
				}
			})
			user := tt.user
			if user == "u@%gate" {
				user = "u@" + h.addr
			}
			cl := h.dialGreeted()
			text := cl.cmd(530, "USER %s", user)
			if !strings.Contains(text, "Unable to connect") {
				t.Errorf("530 %q: want the reason the client can act on", text)
			}
			cl.cmd(221, "QUIT")
			if conns, _ := trap.seen(); conns != 0 {
				t.Fatalf("the trap server got %d connections, want none", conns)
			}
			if n := rec.count()["upstream-connect"]; n != 0 {
				t.Fatalf("%d upstream connections attempted, want none", n)
			}
			ds := rec.denials()
			if len(ds) != 1 || ds[0].Rule != tt.rule || ds[0].Kind != "policy" || ds[0].Verb != "USER" || ds[0].Code != 530 || ds[0].User != "u" {
				t.Fatalf("denials %+v, want one by rule %s for USER u with 530", ds, tt.rule)
			}
		})
	}
}

// TestExplicitBeforeServer: FEAT, HELP, SYST, NOOP and commands that need a
// login are answered by ftpgate while no server is connected; the server
// sees nothing of them.
func TestExplicitBeforeServer(t *testing.T) {
	ls := newLineServer(t)
	rec := &recorder{}
	ts := newTLSSetup(t)
	h := explicitHarness(t, rec, []uint16{ls.addr().Port()}, func(c *Config) { ts.gateTLS(c, ServerTLSOff) })
	cl := h.dialGreeted()
	if feat := cl.cmd(211, "FEAT"); !strings.Contains(feat, "AUTH TLS") || !strings.Contains(feat, "PROT") {
		t.Fatalf("FEAT before USER: %q, want ftpgate's own TLS features", feat)
	}
	if help := cl.cmd(214, "HELP"); !strings.Contains(help, "USER user@host") {
		t.Fatalf("HELP before USER: %q, want the login forms", help)
	}
	cl.cmd(215, "SYST")
	cl.cmd(200, "NOOP")
	cl.cmd(200, "OPTS UTF8 ON")
	cl.cmd(530, "OPTS MLST type;size;")
	cl.cmd(530, "PWD")
	cl.cmd(503, "PASS pw")
	cl.cmd(501, "USER u@bad host name!")
	if conns, _ := ls.seen(); conns != 0 {
		t.Fatalf("the server got %d connections before USER, want none", conns)
	}
	cl.cmd(331, "USER u@%s", ls.addr())
	cl.cmd(230, "PASS pw")
	cl.cmd(200, "NOOP")
	cl.cmd(221, "QUIT")
	if _, lines := ls.seen(); !slices.Equal(lines, []string{"USER u", "PASS pw", "NOOP", "QUIT"}) {
		t.Fatalf("server saw %q, want only the login, NOOP and QUIT", lines)
	}
}

// TestExplicitTransfer: after the login the session is that of the other
// modes; the transfer record names the destination.
func TestExplicitTransfer(t *testing.T) {
	rec := &recorder{}
	h := explicitHarness(t, rec, nil, nil)
	want := payload(100 << 10)
	h.ftp.files["f"] = want
	cl := h.dialGreeted()
	cl.cmd(331, "USER u@%s", h.ftp.addr())
	cl.cmd(230, "PASS pw")
	for _, mode := range []string{"EPSV", "PASV", "EPRT", "PORT"} {
		if got := cl.transfer(mode, "RETR f", nil); !bytes.Equal(got, want) {
			t.Fatalf("%s download: got %d bytes, want %d identical", mode, len(got), len(want))
		}
	}
	cl.cmd(221, "QUIT")
	waitFor(t, func() bool { return rec.count()["session-end"] == 1 })
	tr := rec.transfers()
	if len(tr) != 4 {
		t.Fatalf("%d transfer records, want 4", len(tr))
	}
	for _, e := range tr {
		if e.Server != fakeAddr(h.ftp) || e.User != "u" || e.Result != "ok" {
			t.Errorf("transfer record %+v: want server %s, user u, ok", e, fakeAddr(h.ftp))
		}
	}
}

// TestExplicitAuthTLSBeforeUser: a client that secures the control
// connection before naming the server (lftp ftp:ssl-force) gets ftpgate's
// TLS first; the server's leg follows (mirror) once it is connected, and
// protected transfers work.
func TestExplicitAuthTLSBeforeUser(t *testing.T) {
	ts := newTLSSetup(t)
	rec := &recorder{}
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		ts.fakeTLS(t, f)
		ts.gateTLS(c, ServerTLSMirror)
		c.Mode, c.Upstream, c.Observer = ModeExplicit, "", rec
		c.Policy.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Policy.DestinationPorts = []uint16{fakeAddr(f).Port()}
	})
	want := payload(64 << 10)
	h.ftp.files["f"] = want
	cl := h.dialGreeted()
	cfg := ts.clientConfig()
	cl.cmd(234, "AUTH TLS")
	cl.startTLS(cfg)
	cl.cmd(200, "PBSZ 0")
	cl.cmd(200, "PROT P")
	cl.cmd(331, "USER u@%s", h.ftp.addr())
	cl.cmd(230, "PASS pw")
	if got := cl.xfer("EPSV", "RETR f", nil, cfg, 226); !bytes.Equal(got, want) {
		t.Fatalf("protected download: got %d bytes, want %d identical", len(got), len(want))
	}
	cl.cmd(221, "QUIT")
	h.ftp.mu.Lock()
	secure, data := slices.Clone(h.ftp.secureCmds), slices.Clone(h.ftp.dataTLS)
	h.ftp.mu.Unlock()
	if !slices.Contains(secure, "USER") || !slices.Contains(secure, "PASS") || !slices.Contains(secure, "PROT") {
		t.Fatalf("server commands over TLS %v: want the login and PROT", secure)
	}
	if len(data) != 1 {
		t.Fatalf("server data TLS %v: want one protected data connection", data)
	}
}

// TestExplicitRequireClientTLS: with require_client_tls, USER before AUTH
// TLS is refused before any server is chosen.
func TestExplicitRequireClientTLS(t *testing.T) {
	ls := newLineServer(t)
	rec := &recorder{}
	h := explicitHarness(t, rec, []uint16{ls.addr().Port()}, func(c *Config) { c.Policy.RequireClientTLS = true })
	cl := h.dialGreeted()
	cl.cmd(530, "USER u@%s", ls.addr())
	cl.cmd(221, "QUIT")
	if conns, _ := ls.seen(); conns != 0 {
		t.Fatalf("the server got %d connections, want none", conns)
	}
	if ds := rec.denials(); len(ds) != 1 || ds[0].Verb != "USER" || ds[0].Rule != "require_client_tls" {
		t.Fatalf("denials %+v, want USER refused by require_client_tls", ds)
	}
}

// TestExplicitServerRefusesLogin: the server's own refusal reaches the
// client, whichever form carried the password.
func TestExplicitServerRefusesLogin(t *testing.T) {
	ls := newLineServer(t)
	h := explicitHarness(t, &recorder{}, []uint16{ls.addr().Port()}, func(c *Config) { c.Explicit.Users = proxyUsers(t) })
	cl := h.dialGreeted()
	cl.cmd(331, "USER u@proxy@%s", ls.addr())
	cl.cmd(530, "PASS bad@proxypw") // the server's 530
	cl.cmd(221, "QUIT")
	cl2 := h.dialGreeted()
	cl2.cmd(331, "USER nopass@proxy@%s", ls.addr())
	cl2.cmd(230, "PASS x@proxypw") // the server wanted no password: its 230 answers PASS
	cl2.cmd(221, "QUIT")
	if _, lines := ls.seen(); !slices.Contains(lines, "PASS bad") || !slices.Contains(lines, "USER nopass") || slices.Contains(lines, "PASS x") {
		t.Fatalf("server saw %q", lines)
	}
}

func TestExplicitConfigValidate(t *testing.T) {
	base := Config{Listen: []string{"127.0.0.1:0"}, Mode: ModeExplicit}
	if err := base.Validate(); err != nil {
		t.Fatalf("explicit mode without upstream: %v", err)
	}
	c := base
	c.Upstream = "198.18.0.2:21"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "explicit") {
		t.Fatalf("explicit mode with an upstream: %v, want an error", err)
	}
	c = Config{Listen: []string{"127.0.0.1:0"}, Upstream: "198.18.0.2:21", Explicit: ExplicitConfig{Users: proxyUsers(t)}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "explicit.auth") {
		t.Fatalf("proxy users in reverse mode: %v, want an error", err)
	}
}

// TestExplicitResolvesOnce: a name is resolved once per session, and its
// addresses are dialed in order until one answers.
func TestExplicitResolvesOnce(t *testing.T) {
	ls := newLineServer(t)
	var lookups atomic.Int32
	table := staticResolver(map[string][]string{"two.test": {"127.0.0.3", "127.0.0.1"}}) // nothing listens on 127.0.0.3
	rec := &recorder{}
	h := explicitHarness(t, rec, []uint16{ls.addr().Port()}, func(c *Config) {
		c.Explicit.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			lookups.Add(1)
			return table(ctx, host)
		}
	})
	cl := h.dialGreeted()
	cl.cmd(331, "USER u@two.test:%d", ls.addr().Port())
	cl.cmd(230, "PASS pw")
	cl.cmd(200, "NOOP")
	cl.cmd(221, "QUIT")
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d lookups, want 1", n)
	}
	if conns, _ := ls.seen(); conns != 1 {
		t.Fatalf("the server got %d connections, want 1", conns)
	}
	if n := rec.count()["upstream-connect"]; n != 2 {
		t.Fatalf("%d dials, want 2: the refused first address, then the server", n)
	}
}

// TestExplicitLoginTimeout: a client that never names a server is closed
// at the login timeout, and no server hears of it.
func TestExplicitLoginTimeout(t *testing.T) {
	ls := newLineServer(t)
	h := explicitHarness(t, &recorder{}, []uint16{ls.addr().Port()}, func(c *Config) { c.LoginTimeout = 200 * time.Millisecond })
	cl := h.dialGreeted()
	cl.cmd(211, "FEAT")
	if text := cl.expect(421); !strings.Contains(text, "Login timeout") {
		t.Fatalf("421 %q, want the login timeout", text)
	}
	if conns, _ := ls.seen(); conns != 0 {
		t.Fatalf("the server got %d connections, want none", conns)
	}
}
