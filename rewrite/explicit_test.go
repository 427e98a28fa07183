package rewrite

import (
	"errors"
	"strings"
	"testing"
)

// proxyUserCases are the USER arguments of every explicit-proxy login form
// (see explicit.go for which client sends which).
var proxyUserCases = []struct {
	name string
	arg  string
	want ProxyTarget
	err  bool
}{
	{name: "plain user (proxy login or user after OPEN)", arg: "anonymous", want: ProxyTarget{User: "anonymous"}},
	{name: "user@host", arg: "anonymous@ftp.example.net", want: ProxyTarget{User: "anonymous", Host: "ftp.example.net"}},
	{name: "user@host:port", arg: "bob@198.18.1.2:2121", want: ProxyTarget{User: "bob", Host: "198.18.1.2", Port: 2121}},
	{name: "user@host port", arg: "bob@srv.example 2121", want: ProxyTarget{User: "bob", Host: "srv.example", Port: 2121}},
	{name: "joined-acct user@host proxyuser", arg: "bob@srv.example gwuser", want: ProxyTarget{User: "bob", Host: "srv.example", ProxyUser: "gwuser"}},
	{name: "joined-acct with port", arg: "bob@srv.example:2121 gwuser", want: ProxyTarget{User: "bob", Host: "srv.example", Port: 2121, ProxyUser: "gwuser"}},
	{name: "joined user@proxyuser@host", arg: "bob@gwuser@srv.example:21", want: ProxyTarget{User: "bob@gwuser", Host: "srv.example", Port: 21}},
	{name: "user with @ (last @ wins)", arg: "me@example.com@ftp.example.net", want: ProxyTarget{User: "me@example.com", Host: "ftp.example.net"}},
	{name: "proxy-user@host form", arg: "gwuser@srv.example:990", want: ProxyTarget{User: "gwuser", Host: "srv.example", Port: 990}},
	{name: "user with a space", arg: "John Smith@srv.example", want: ProxyTarget{User: "John Smith", Host: "srv.example"}},
	{name: "user with a space and a port", arg: "John Smith@srv.example 2121", want: ProxyTarget{User: "John Smith", Host: "srv.example", Port: 2121}},
	{name: "proxy user with @", arg: "bob@srv.example gw@corp", want: ProxyTarget{User: "bob", Host: "srv.example", ProxyUser: "gw@corp"}},
	{name: "ipv6 in brackets", arg: "bob@[fd00:0:0:2::2]", want: ProxyTarget{User: "bob", Host: "fd00:0:0:2::2"}},
	{name: "ipv6 in brackets with port", arg: "bob@[fd00::2]:2121", want: ProxyTarget{User: "bob", Host: "fd00::2", Port: 2121}},
	{name: "ipv6 in brackets, space port", arg: "bob@[FD00::2] 2121", want: ProxyTarget{User: "bob", Host: "fd00::2", Port: 2121}},
	{name: "bare ipv6 taken whole", arg: "bob@fd00::2:2121", want: ProxyTarget{User: "bob", Host: "fd00::2:2121"}},
	{name: "host with underscore", arg: "u@my_host.lan", want: ProxyTarget{User: "u", Host: "my_host.lan"}},

	{name: "empty user", arg: "@srv.example", err: true},
	{name: "empty host", arg: "bob@", err: true},
	{name: "empty host with port", arg: "bob@:21", err: true},
	{name: "port 0", arg: "bob@srv:0", err: true},
	{name: "port too big", arg: "bob@srv:65536", err: true},
	{name: "signed port", arg: "bob@srv:+21", err: true},
	{name: "space port 0", arg: "bob@srv 0", err: true},
	{name: "two ports", arg: "bob@srv:21 2121", err: true},
	{name: "trailing space", arg: "bob@srv ", err: true},
	{name: "bad host byte", arg: "bob@srv/x", err: true},
	{name: "host starting with dash", arg: "bob@-srv", err: true},
	{name: "unclosed bracket", arg: "bob@[fd00::2", err: true},
	{name: "ipv4 in brackets", arg: "bob@[198.18.0.1]", err: true},
	{name: "zone", arg: "bob@[fe80::1%eth0]:21", err: true},
	{name: "garbage after bracket", arg: "bob@[fd00::2]x", err: true},
	{name: "bad bare ipv6", arg: "bob@fd00:::2", err: true},
	{name: "CR", arg: "bob@srv\r", err: true},
	{name: "NUL in user", arg: "b\x00b@srv", err: true},
	{name: "long host", arg: "bob@" + strings.Repeat("a", 254), err: true},
}

func TestParseProxyUser(t *testing.T) {
	for _, tt := range proxyUserCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProxyUser(tt.arg)
			if tt.err {
				if err == nil || !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParseProxyUser(%q) = %+v, %v; want an ErrSyntax", tt.arg, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseProxyUser(%q): %v", tt.arg, err)
			}
			if got != tt.want {
				t.Fatalf("ParseProxyUser(%q) = %+v, want %+v", tt.arg, got, tt.want)
			}
			s, err := got.UserArg()
			if err != nil {
				t.Fatalf("UserArg(%+v): %v", got, err)
			}
			if back, err := ParseProxyUser(s); err != nil || back != got {
				t.Fatalf("round trip %q -> %q -> %+v, %v", tt.arg, s, back, err)
			}
		})
	}
}

func TestParseOpenHost(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		want ProxyTarget
		err  bool
	}{
		{name: "OPEN host", arg: "srv.example", want: ProxyTarget{Host: "srv.example"}},
		{name: "OPEN host:port (lftp)", arg: "srv.example:2121", want: ProxyTarget{Host: "srv.example", Port: 2121}},
		{name: "SITE host port", arg: "198.18.1.2 2121", want: ProxyTarget{Host: "198.18.1.2", Port: 2121}},
		{name: "ipv6", arg: "[fd00::2]:21", want: ProxyTarget{Host: "fd00::2", Port: 21}},
		{name: "empty", arg: "", err: true},
		{name: "two ports", arg: "srv:21 21", err: true},
		{name: "bad port", arg: "srv x", err: true},
		{name: "user given", arg: "bob@srv", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOpenHost(tt.arg)
			if tt.err {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParseOpenHost(%q) = %+v, %v; want an ErrSyntax", tt.arg, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseOpenHost(%q) = %+v, %v; want %+v", tt.arg, got, err, tt.want)
			}
		})
	}
}

func TestSplitJoined(t *testing.T) {
	tests := []struct {
		name, in, first, second string
		ok                      bool
	}{
		{name: "user@proxyuser", in: "bob@gw", first: "bob", second: "gw", ok: true},
		{name: "e-mail password", in: "guest@example.com@gwpass", first: "guest@example.com", second: "gwpass", ok: true},
		{name: "no @", in: "secret", first: "secret"},
		{name: "empty second", in: "secret@", first: "secret@"},
		{name: "empty first", in: "@gw", first: "@gw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, ok := SplitJoined(tt.in)
			if a != tt.first || b != tt.second || ok != tt.ok {
				t.Fatalf("SplitJoined(%q) = %q, %q, %v; want %q, %q, %v", tt.in, a, b, ok, tt.first, tt.second, tt.ok)
			}
		})
	}
}

func TestProxyTargetFormat(t *testing.T) {
	tests := []struct {
		name string
		t    ProxyTarget
		host string // HostPort(21)
		err  bool   // UserArg fails
	}{
		{name: "name", t: ProxyTarget{User: "u", Host: "srv"}, host: "srv:21"},
		{name: "ipv6 port", t: ProxyTarget{User: "u", Host: "fd00::2", Port: 2121}, host: "[fd00::2]:2121"},
		{name: "user only", t: ProxyTarget{User: "u"}, host: ":21"},
		{name: "numeric proxy user", t: ProxyTarget{User: "u", Host: "srv", ProxyUser: "123"}, host: "srv:21", err: true},
		{name: "space in host", t: ProxyTarget{User: "u", Host: "a b"}, host: "a b:21", err: true},
		{name: "ambiguous user", t: ProxyTarget{User: "x@y z", Host: "h"}, host: "h:21", err: true},
		{name: "non-canonical ipv6", t: ProxyTarget{User: "u", Host: "FD00::2"}, host: "[FD00::2]:21", err: true},
		{name: "port without host", t: ProxyTarget{User: "u", Port: 21}, host: ":21", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.HostPort(21); got != tt.host {
				t.Fatalf("HostPort = %q, want %q", got, tt.host)
			}
			s, err := tt.t.UserArg()
			if (err != nil) != tt.err {
				t.Fatalf("UserArg(%+v) = %q, %v; want error %v", tt.t, s, err, tt.err)
			}
		})
	}
	if a, ok := (ProxyTarget{Host: "fd00::2"}).Addr(); !ok || !a.Is6() {
		t.Fatal("Addr of an IPv6 host")
	}
	if _, ok := (ProxyTarget{Host: "srv"}).Addr(); ok {
		t.Fatal("Addr of a name")
	}
}

// FuzzParseProxyUser checks, for any USER argument, that parsing never
// panics, that what it returns holds no CR, LF or NUL and a host that is a
// name or an IP literal, and that a target that formats parses back to
// itself.
func FuzzParseProxyUser(f *testing.F) {
	for _, tt := range proxyUserCases {
		f.Add(tt.arg)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		got, err := ParseProxyUser(arg)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("ParseProxyUser(%q): error %v does not wrap ErrSyntax", arg, err)
			}
			return
		}
		for _, s := range []string{got.User, got.Host, got.ProxyUser} {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("ParseProxyUser(%q) = %+v: CR, LF or NUL in a field", arg, got)
			}
		}
		if strings.ContainsAny(got.Host, " @/[]") {
			t.Fatalf("ParseProxyUser(%q): host %q", arg, got.Host)
		}
		if got.Host == "" && got.User != arg {
			t.Fatalf("ParseProxyUser(%q) = %+v: no host but the user is not the whole argument", arg, got)
		}
		s, err := got.UserArg()
		if err != nil {
			return // a legal but ambiguous combination (e.g. a space in the user before an @)
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("UserArg = %q has CR, LF or NUL", s)
		}
		if back, err := ParseProxyUser(s); err != nil || back != got {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", arg, got, s, back, err)
		}
		if _, err := ParseOpenHost(got.HostPort(21)); got.Host != "" && err != nil {
			t.Fatalf("ParseOpenHost(HostPort) of %+v: %v", got, err)
		}
	})
}

// FuzzParseOpenHost checks that the OPEN/SITE host parser never panics,
// returns no user, and that what it returns renders and parses back.
func FuzzParseOpenHost(f *testing.F) {
	for _, s := range []string{"srv.example", "srv.example:2121", "198.18.1.2 2121", "[fd00::2]:21", "fd00::2", "", "a b c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		got, err := ParseOpenHost(arg)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("ParseOpenHost(%q): error %v does not wrap ErrSyntax", arg, err)
			}
			return
		}
		if got.User != "" || got.ProxyUser != "" || got.Host == "" {
			t.Fatalf("ParseOpenHost(%q) = %+v", arg, got)
		}
		back, err := ParseOpenHost(got.HostPort(21))
		if err != nil || back.Host != got.Host || (got.Port != 0 && back.Port != got.Port) {
			t.Fatalf("ParseOpenHost(HostPort(%+v)) = %+v, %v", got, back, err)
		}
	})
}
