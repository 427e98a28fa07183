package policy

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/rewrite"
)

// loginWant is what one command of a login must produce: a reply code, or
// Connect with the target, user and password given.
type loginWant struct {
	line    string
	code    int // reply code; 0 means Connect
	failed  bool
	authed  bool // a successful proxy credential check
	target  string
	user    string
	pass    string
	hasPass bool
}

var loginCases = []struct {
	name  string
	auth  bool
	steps []loginWant
}{
	{name: "user@host, auth off (FileZilla, curl, ftplib)", steps: []loginWant{
		{line: "USER bob@srv.example", target: "srv.example:21", user: "bob"},
	}},
	{name: "user@host:port, auth off", steps: []loginWant{
		{line: "USER bob@198.18.1.2:2121", target: "198.18.1.2:2121", user: "bob"},
	}},
	{name: "user@[v6] port, auth off", steps: []loginWant{
		{line: "USER bob@[fd00::2] 2121", target: "[fd00::2]:2121", user: "bob"},
	}},
	{name: "open, auth off (lftp open)", steps: []loginWant{
		{line: "OPEN srv.example:2121", code: 200},
		{line: "USER bob", target: "srv.example:2121", user: "bob"},
	}},
	{name: "site host, auth off", steps: []loginWant{
		{line: "SITE srv.example", code: 200},
		{line: "USER bob", target: "srv.example:21", user: "bob"},
	}},
	{name: "plain user without a server, auth off", steps: []loginWant{
		{line: "USER bob", code: 530},
		{line: "USER bob@srv", target: "srv:21", user: "bob"},
	}},
	{name: "joined-acct, auth off: the proxy credentials never reach the server", steps: []loginWant{
		{line: "USER bob@srv gw", code: 331},
		{line: "PASS bobpass", code: 332},
		{line: "ACCT gwpass", target: "srv:21", user: "bob", pass: "bobpass", hasPass: true},
	}},

	{name: "lftp user / mod_proxy proxyuser,user@host", auth: true, steps: []loginWant{
		{line: "USER gw", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
		{line: "USER bob@srv:2121", target: "srv:2121", user: "bob"},
	}},
	{name: "lftp open with proxy credentials", auth: true, steps: []loginWant{
		{line: "USER gw", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
		{line: "OPEN srv.example:21", code: 200},
		{line: "USER bob", target: "srv.example:21", user: "bob"},
	}},
	{name: "lftp proxy-user@host / mod_proxy proxyuser@host,user", auth: true, steps: []loginWant{
		{line: "USER gw@srv:2121", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
		{line: "USER bob", target: "srv:2121", user: "bob"},
	}},
	{name: "lftp joined", auth: true, steps: []loginWant{
		{line: "USER bob@gw@srv", code: 331},
		{line: "PASS bob@example.com@gwpass", target: "srv:21", user: "bob", pass: "bob@example.com", hasPass: true, authed: true},
	}},
	{name: "lftp joined-acct", auth: true, steps: []loginWant{
		{line: "USER bob@srv:2121 gw", code: 331},
		{line: "PASS bobpass", code: 332},
		{line: "ACCT gwpass", target: "srv:2121", user: "bob", pass: "bobpass", hasPass: true, authed: true},
	}},
	{name: "wrong proxy password, then right", auth: true, steps: []loginWant{
		{line: "USER gw", code: 331},
		{line: "PASS nope", code: 530, failed: true},
		{line: "PASS gwpass", code: 503},
		{line: "USER gw", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
	}},
	{name: "unknown proxy user", auth: true, steps: []loginWant{
		{line: "USER mallory@srv", code: 331},
		{line: "PASS x", code: 530, failed: true},
	}},
	{name: "joined without @ in PASS", auth: true, steps: []loginWant{
		{line: "USER bob@gw@srv", code: 331},
		{line: "PASS gwpass", code: 530, failed: true},
	}},
	{name: "joined-acct with a wrong proxy password", auth: true, steps: []loginWant{
		{line: "USER bob@srv gw", code: 331},
		{line: "PASS bobpass", code: 332},
		{line: "ACCT wrong", code: 530, failed: true},
	}},
	{name: "OPEN before the proxy login", auth: true, steps: []loginWant{
		{line: "OPEN srv", code: 530},
	}},
	{name: "plain USER after proxy login names no server", auth: true, steps: []loginWant{
		{line: "USER gw", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
		{line: "USER bob", code: 530},
		{line: "SITE srv 2121", code: 200},
		{line: "USER bob", target: "srv:2121", user: "bob"},
	}},
	{name: "REIN starts over", auth: true, steps: []loginWant{
		{line: "USER gw", code: 331},
		{line: "PASS gwpass", code: 230, authed: true},
		{line: "REIN", code: 220},
		{line: "USER bob@srv", code: 331},
	}},
	{name: "out of sequence", steps: []loginWant{
		{line: "PASS x", code: 503},
		{line: "ACCT x", code: 503},
		{line: "LIST", code: 530},
		{line: "USER bob@srv:0", code: 501},
		{line: "OPEN srv:x", code: 501},
	}},
}

func TestExplicitLogin(t *testing.T) {
	users, err := ParseUsers([]byte("gw:" + bcryptOf(t, "gwpass") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range loginCases {
		t.Run(tt.name, func(t *testing.T) {
			l := &ExplicitLogin{}
			if tt.auth {
				l.Users = users
			}
			for i, want := range tt.steps {
				got := l.Next(mustCommand(t, want.line))
				if want.code != 0 {
					if got.Connect || got.Code != want.code {
						t.Fatalf("step %d %q: got %+v, want reply %d", i, want.line, got, want.code)
					}
					if _, err := rewrite.NewReply(got.Code, got.Text).Bytes(); err != nil {
						t.Fatalf("step %d: reply %d %q: %v", i, got.Code, got.Text, err)
					}
				} else if !got.Connect || got.Target.HostPort(FTPPort) != want.target || got.User != want.user ||
					got.Pass != want.pass || got.HasPass != want.hasPass || got.Target.User != want.user || got.Target.ProxyUser != "" {
					t.Fatalf("step %d %q: got %+v, want connect to %s as %q (pass %q, %v)", i, want.line, got, want.target, want.user, want.pass, want.hasPass)
				}
				if got.Failed != want.failed {
					t.Fatalf("step %d %q: Failed = %v, want %v", i, want.line, got.Failed, want.failed)
				}
				switch {
				case want.failed && (got.Auth == nil || got.Auth.Allow || got.Auth.Rule != "explicit.auth"):
					t.Fatalf("step %d: failed login without a denying Auth: %+v", i, got.Auth)
				case want.authed && (got.Auth == nil || !got.Auth.Allow):
					t.Fatalf("step %d: accepted proxy login without Auth: %+v", i, got.Auth)
				case !want.failed && !want.authed && got.Auth != nil:
					t.Fatalf("step %d: unexpected Auth %+v", i, got.Auth)
				}
				if got.Auth != nil && (strings.Contains(got.Auth.Reason, "gwpass") || strings.Contains(got.Text, "gwpass")) {
					t.Fatalf("step %d: a password in the reason or reply: %+v", i, got)
				}
			}
		})
	}
}

// FuzzExplicitLogin drives a login with arbitrary commands: no panic, every
// reply writable, and a Connect always names a server and carries no proxy
// user.
func FuzzExplicitLogin(f *testing.F) {
	for _, tt := range loginCases {
		lines := make([]string, len(tt.steps))
		for i, s := range tt.steps {
			lines[i] = s.line
		}
		f.Add(strings.Join(lines, "\n"), tt.auth)
	}
	// A users file with a SHA-512 crypt hash: a cheap check per attempt
	// compared with bcrypt.
	users, err := ParseUsers([]byte("gw:" + shaCryptVector + "\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, script string, auth bool) {
		l := &ExplicitLogin{}
		if auth {
			l.Users = users
		}
		for i, line := range strings.Split(script, "\n") {
			if i == 16 {
				return
			}
			cmd, err := rewrite.ParseCommand(line)
			if err != nil {
				continue
			}
			step := l.Next(cmd)
			if step.Connect {
				if step.Target.Host == "" || step.Target.ProxyUser != "" || step.User != step.Target.User {
					t.Fatalf("Connect %+v", step)
				}
				continue
			}
			if _, err := rewrite.NewReply(step.Code, step.Text).Bytes(); err != nil {
				t.Fatalf("%q: reply %d %q: %v", line, step.Code, step.Text, err)
			}
		}
	})
}
