package policy

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func addrs(s ...string) (out []netip.Addr) {
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func TestExplicitDestination(t *testing.T) {
	gw := SessionFacts{ListenerAddr: netip.MustParseAddrPort("198.18.0.1:21")}
	tests := []struct {
		name  string
		cfg   Config
		host  string
		addrs []netip.Addr
		port  uint16
		allow bool
		rule  string
	}{
		{name: "literal, default port", host: "198.18.1.2", addrs: addrs("198.18.1.2"), allow: true},
		{name: "port 21 given", host: "198.18.1.2", addrs: addrs("198.18.1.2"), port: 21, allow: true},
		{name: "other port refused by default", host: "198.18.1.2", addrs: addrs("198.18.1.2"), port: 2121, rule: "destination_ports"},
		{name: "other port allowed", cfg: Config{DestinationPorts: []uint16{21, 2121}}, host: "srv", addrs: addrs("198.18.1.2"), port: 2121, allow: true},
		{name: "denied network", cfg: Config{DenyDestinations: pfx("198.18.1.0/24")}, host: "srv", addrs: addrs("198.18.1.2"), rule: "deny_destinations"},
		{name: "outside allowed", cfg: Config{AllowDestinations: pfx("198.18.2.0/24")}, host: "srv", addrs: addrs("198.18.1.2"), rule: "allow_destinations"},
		{name: "one denied address refuses the name", cfg: Config{DenyDestinations: pfx("198.18.9.0/24")}, host: "srv", addrs: addrs("198.18.1.2", "198.18.9.9"), rule: "deny_destinations"},
		{name: "no address", host: "nowhere", rule: "explicit.resolve"},
		{name: "the gateway itself", host: "gw", addrs: addrs("198.18.0.1"), rule: "explicit.self"},
		{name: "gateway address on another port", cfg: Config{DestinationPorts: []uint16{2121}}, host: "gw", addrs: addrs("198.18.0.1"), port: 2121, allow: true},
		{name: "loopback", host: "localhost", addrs: addrs("127.0.0.1"), rule: "explicit.special_address"},
		{name: "ipv6 loopback", host: "::1", addrs: addrs("::1"), rule: "explicit.special_address"},
		{name: "mapped loopback", host: "x", addrs: addrs("::ffff:127.0.0.1"), rule: "explicit.special_address"},
		{name: "link-local", host: "x", addrs: addrs("fe80::1"), rule: "explicit.special_address"},
		{name: "unspecified", host: "x", addrs: addrs("0.0.0.0"), rule: "explicit.special_address"},
		{name: "multicast", host: "x", addrs: addrs("224.0.0.1"), rule: "explicit.special_address"},
		{name: "catch-all allow does not open loopback", cfg: Config{AllowDestinations: pfx("0.0.0.0/0")}, host: "x", addrs: addrs("127.0.0.1"), rule: "explicit.special_address"},
		{name: "explicit allow opens loopback", cfg: Config{AllowDestinations: pfx("127.0.0.0/8")}, host: "x", addrs: addrs("127.0.0.1"), allow: true},
		{name: "ipv6 server", host: "fd00::2", addrs: addrs("fd00::2"), allow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.cfg.ExplicitDestination(gw, tt.host, tt.addrs, tt.port)
			if d.Allow != tt.allow || (!tt.allow && d.Rule != tt.rule) {
				t.Fatalf("ExplicitDestination = %+v, want allow=%v rule=%q", d, tt.allow, tt.rule)
			}
			if !d.Allow && (d.Code != 530 || !strings.Contains(d.Text, tt.host) || d.Reason == "") {
				t.Fatalf("denial %+v: want 530 naming the host and a reason", d)
			}
		})
	}
}

// shaCryptVector is the SHA-512 crypt test vector of Ulrich Drepper's
// specification ("Hello world!", salt "saltstring", 5000 rounds).
const shaCryptVector = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"

func bcryptOf(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestUsers(t *testing.T) {
	b := bcryptOf(t, "s3cret")
	file := strings.Join([]string{
		"# proxy users",
		"",
		"alice:" + b,
		"bob:$2y$" + strings.TrimPrefix(b, "$2a$"),
		"carol:" + shaCryptVector + ":19000:0:99999:7:::",
		"dave:" + shaCryptVector + "\r",
	}, "\n")
	u, err := ParseUsers([]byte(file))
	if err != nil {
		t.Fatalf("ParseUsers: %v", err)
	}
	if u.Len() != 4 {
		t.Fatalf("Len = %d, want 4", u.Len())
	}
	tests := []struct {
		name, user, pass string
		allow            bool
		why              string
	}{
		{name: "bcrypt", user: "alice", pass: "s3cret", allow: true},
		{name: "bcrypt wrong", user: "alice", pass: "s3cret!", why: "wrong password"},
		{name: "bcrypt 2y", user: "bob", pass: "s3cret", allow: true},
		{name: "sha-512 crypt", user: "carol", pass: "Hello world!", allow: true},
		{name: "sha-512 crypt with CRLF line", user: "dave", pass: "Hello world!", allow: true},
		{name: "sha-512 crypt wrong", user: "carol", pass: "Hello world", why: "wrong password"},
		{name: "unknown user", user: "mallory", pass: "s3cret", why: "unknown user"},
		{name: "empty name", user: "", pass: "", why: "unknown user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := u.Verify(tt.user, tt.pass)
			if d.Allow != tt.allow || d.Rule != "explicit.auth" {
				t.Fatalf("Verify(%q) = %+v, want allow=%v", tt.user, d, tt.allow)
			}
			if !tt.allow && (d.Code != 530 || d.Text != "Login incorrect." || !strings.Contains(d.Reason, tt.why)) {
				t.Fatalf("denial %+v: want 530 Login incorrect. and a reason with %q", d, tt.why)
			}
			if strings.Contains(d.Reason, tt.pass) && tt.pass != "" {
				t.Fatalf("the reason %q shows the password", d.Reason)
			}
		})
	}
	var none *Users
	if d := none.Verify("alice", "s3cret"); d.Allow {
		t.Fatal("a nil Users allowed a login")
	}
	if _, err := bcrypt.Cost(dummyHash); err != nil {
		t.Fatalf("dummy hash is not a bcrypt hash: %v", err)
	}
}

var usersFileErrors = []struct {
	name, file, want string
}{
	{name: "no colon", file: "alice", want: "line 1: want name:hash"},
	{name: "empty name", file: ":" + shaCryptVector, want: "line 1: user name"},
	{name: "space in name", file: "al ice:" + shaCryptVector, want: "line 1: user name"},
	{name: "no hash", file: "# x\nalice:", want: `line 2: user "alice": no hash`},
	{name: "md5 crypt", file: "alice:$1$abc$def", want: "unsupported hash"},
	{name: "plain text", file: "alice:secret", want: "unsupported hash"},
	{name: "bad bcrypt", file: "alice:$2b$10$short", want: "bad bcrypt hash"},
	{name: "bad sha-512", file: "alice:$6$", want: "bad SHA-512 crypt hash"},
	{name: "duplicate", file: "a:" + shaCryptVector + "\na:" + shaCryptVector, want: `line 2: user "a" listed twice`},
}

func TestParseUsersErrors(t *testing.T) {
	for _, tt := range usersFileErrors {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUsers([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseUsers = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParseUsers checks that no users file makes the parser panic and that
// every name it accepts is one word of printable characters.
func FuzzParseUsers(f *testing.F) {
	for _, tt := range usersFileErrors {
		f.Add([]byte(tt.file))
	}
	f.Add([]byte("carol:" + shaCryptVector + "\n# c\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUsers(data)
		if err != nil {
			return
		}
		for name := range u.hashes {
			if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Fatalf("accepted user name %q", name)
			}
		}
	})
}
