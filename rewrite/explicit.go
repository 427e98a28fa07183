package rewrite

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Explicit (forward) proxy logins: the client connects to the proxy and
// names the server in its login. These are the wire forms clients send; the
// session decides which of them a USER is (it knows whether proxy
// authentication is configured and what came before), this file only
// parses and formats them.
//
// Sequences (P = what the proxy receives; user/pass are for the server,
// proxyuser/proxypass for the proxy):
//
//	user@host (no proxy auth): FileZilla and WinSCP "USER@HOST", curl with
//	  user%40host, Python ftplib, lftp ftp:proxy-auth-type "user" without
//	  proxy credentials, ProFTPD mod_proxy ProxyForwardMethod "user@host":
//	    USER user@host[:port]   PASS pass
//	lftp "user" with proxy credentials, mod_proxy "proxyuser,user@host"
//	  (the comma names two logins in turn, not a comma on the wire):
//	    USER proxyuser   PASS proxypass   USER user@host[:port]   PASS pass
//	lftp "joined":
//	    USER user@proxyuser@host[:port]   PASS pass@proxypass
//	lftp "joined-acct":
//	    USER user@host[:port] proxyuser   PASS pass   ACCT proxypass
//	lftp "proxy-user@host", mod_proxy "proxyuser@host,user":
//	    USER proxyuser@host[:port]   PASS proxypass   USER user   PASS pass
//	lftp "open" (and the "SITE host" firewall style of ncftp and WinSCP):
//	    [USER proxyuser   PASS proxypass]   OPEN host[:port]   USER user   PASS pass
//	    [USER proxyuser   PASS proxypass]   SITE host          USER user   PASS pass
//	space-separated port (some clients and gateways):
//	    USER user@host port   PASS pass
//
// Sources: lftp src/ftpclass.cc, Ftp::Do in CONNECTED_STATE and
// USER_RESP_WAITING_STATE, which builds these strings per
// ftp:proxy-auth-type (the port is appended as ":port" to the host name as
// lftp stores it, so an IPv6 server needs brackets in the URL); ProFTPD
// mod_proxy lib/proxy/forward.c, forward_cmd_parse_dst (the host is after
// the last '@', the port after the last ':') and
// proxy_forward_get_method for the ProxyForwardMethod names.

// ProxyTarget is the server a client named in an explicit-proxy login.
type ProxyTarget struct {
	// User is the name for the server: everything before the last "@host".
	// For lftp's "joined" form it still holds "user@proxyuser" (see
	// SplitJoined); the session knows whether that form is in use.
	User string
	// Host is a host name, an IPv4 address or an IPv6 address (without
	// brackets); "" when the argument named no server.
	Host string
	// Port is the server port; 0 when none was given (the caller's
	// default, normally 21).
	Port uint16
	// ProxyUser is the word after a space that is not a port: lftp's
	// "joined-acct" form "user@host proxyuser".
	ProxyUser string
}

// Addr returns the host as an address when it is an IP literal.
func (t ProxyTarget) Addr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(t.Host)
	return a, err == nil
}

// ParseProxyUser parses the argument of USER in an explicit-proxy login:
//
//	user                      no server: ProxyTarget{User: "user"}
//	user@host                 user@host:port        user@[v6]  user@[v6]:port
//	user@host port            user@host proxyuser   user@fd00::1 (no port)
//	a@b@host                  User "a@b": the user is the part before the last @
//
// The host after the last '@' ends at the first space; the word after it
// is a port if it is all digits, otherwise ProxyUser. A bare IPv6 literal
// is taken whole (its last group is not a port); use brackets to give a
// port. Errors wrap ErrSyntax: an empty user or host, a bad port, a host
// that is not a name or an IP literal, CR, LF or NUL anywhere.
func ParseProxyUser(arg string) (ProxyTarget, error) {
	if i, what := badLineByte(arg); i >= 0 {
		return ProxyTarget{}, fmt.Errorf("USER argument: %s: %w", what, ErrSyntax)
	}
	head, tail := arg, ""
	if sp := strings.LastIndexByte(arg, ' '); sp >= 0 {
		if at := strings.LastIndexByte(arg[:sp], '@'); at >= 0 && !strings.Contains(arg[at+1:sp], " ") {
			head, tail = arg[:sp], arg[sp+1:]
		}
	}
	at := strings.LastIndexByte(head, '@')
	if at < 0 {
		return ProxyTarget{User: arg}, nil
	}
	t := ProxyTarget{User: head[:at]}
	if t.User == "" {
		return ProxyTarget{}, fmt.Errorf("USER argument %s: no user name before @: %w", logQuote(arg), ErrSyntax)
	}
	var err error
	if t.Host, t.Port, err = parseServerAddr(head[at+1:]); err != nil {
		return ProxyTarget{}, fmt.Errorf("USER argument %s: %w", logQuote(arg), err)
	}
	switch {
	case tail == "" && head != arg:
		return ProxyTarget{}, fmt.Errorf("USER argument %s: trailing space: %w", logQuote(arg), ErrSyntax)
	case tail == "":
	case isDigits(tail):
		if t.Port != 0 {
			return ProxyTarget{}, fmt.Errorf("USER argument %s: two ports: %w", logQuote(arg), ErrSyntax)
		}
		if t.Port, err = parsePort(tail); err != nil {
			return ProxyTarget{}, fmt.Errorf("USER argument %s: %w", logQuote(arg), err)
		}
	default:
		t.ProxyUser = tail
	}
	return t, nil
}

// ParseOpenHost parses the argument of OPEN or SITE in the "open" login
// style, before a server is chosen: "host", "host:port", "[v6]:port",
// "host port". The result has no User.
func ParseOpenHost(arg string) (ProxyTarget, error) {
	if i, what := badLineByte(arg); i >= 0 {
		return ProxyTarget{}, fmt.Errorf("OPEN argument: %s: %w", what, ErrSyntax)
	}
	hp, port, sp := strings.Cut(strings.TrimSpace(arg), " ")
	host, p, err := parseServerAddr(hp)
	if err != nil {
		return ProxyTarget{}, fmt.Errorf("OPEN argument %s: %w", logQuote(arg), err)
	}
	if sp {
		if p != 0 {
			return ProxyTarget{}, fmt.Errorf("OPEN argument %s: two ports: %w", logQuote(arg), ErrSyntax)
		}
		if p, err = parsePort(port); err != nil {
			return ProxyTarget{}, fmt.Errorf("OPEN argument %s: %w", logQuote(arg), err)
		}
	}
	return ProxyTarget{Host: host, Port: p}, nil
}

// SplitJoined splits lftp's "joined" forms at the last '@': USER
// "user@proxyuser" into user and proxy user, PASS "pass@proxypass" into
// password and proxy password. The first part may hold '@' (an e-mail
// address as anonymous password); the second may not. ok is false when
// there is no '@' or either side is empty.
func SplitJoined(s string) (first, second string, ok bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// UserArg formats t as a USER argument: "user@host[:port][ proxyuser]",
// an IPv6 host in brackets. ParseProxyUser(t.UserArg()) returns t. It is
// an error if a field holds CR, LF, NUL or a character that the parser
// would read differently (a space in Host or ProxyUser, '@' in Host).
func (t ProxyTarget) UserArg() (string, error) {
	if t.Host == "" {
		if strings.Contains(t.User, "@") || t.ProxyUser != "" || t.Port != 0 {
			return "", fmt.Errorf("format USER argument: no host: %w", ErrSyntax)
		}
		if i, _ := badLineByte(t.User); i >= 0 || t.User == "" {
			return "", fmt.Errorf("format USER argument: bad user: %w", ErrSyntax)
		}
		return t.User, nil
	}
	hp, err := formatServerAddr(t.Host, t.Port)
	if err != nil {
		return "", fmt.Errorf("format USER argument: %w", err)
	}
	s := t.User + "@" + hp
	if t.ProxyUser != "" {
		if isDigits(t.ProxyUser) || strings.ContainsAny(t.ProxyUser, " ") {
			return "", fmt.Errorf("format USER argument: proxy user %s would not parse back: %w", logQuote(t.ProxyUser), ErrSyntax)
		}
		s += " " + t.ProxyUser
	}
	got, err := ParseProxyUser(s)
	if err != nil || got != t {
		return "", fmt.Errorf("format USER argument: %s would not parse back: %w", logQuote(s), ErrSyntax)
	}
	return s, nil
}

// HostPort renders the server for logs and records: "host:port", IPv6 in
// brackets, with def for a port that was not given.
func (t ProxyTarget) HostPort(def uint16) string {
	p := t.Port
	if p == 0 {
		p = def
	}
	if strings.Contains(t.Host, ":") {
		return "[" + sanitize(t.Host, 0) + "]:" + strconv.Itoa(int(p))
	}
	return sanitize(t.Host, 0) + ":" + strconv.Itoa(int(p))
}

// maxHostLen is the longest DNS name (RFC 1035 §2.3.4).
const maxHostLen = 253

// parseHostPort parses "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 literal.
func parseServerAddr(s string) (string, uint16, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("unclosed [ in host: %w", ErrSyntax)
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, fmt.Errorf("%s in brackets is not an IPv6 address: %w", logQuote(s[1:end]), ErrSyntax)
		}
		rest := s[end+1:]
		switch {
		case rest == "":
			return a.String(), 0, nil
		case rest[0] == ':':
			p, err := parsePort(rest[1:])
			return a.String(), p, err
		}
		return "", 0, fmt.Errorf("garbage after ]: %w", ErrSyntax)
	}
	if strings.Count(s, ":") >= 2 {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return "", 0, fmt.Errorf("host %s is not an IPv6 address: %w", logQuote(s), ErrSyntax)
		}
		return a.String(), 0, nil
	}
	host, port, hasPort := strings.Cut(s, ":")
	if err := checkHostName(host); err != nil {
		return "", 0, err
	}
	if !hasPort {
		return host, 0, nil
	}
	p, err := parsePort(port)
	return host, p, err
}

// checkHostName accepts a DNS name or an IPv4 literal: letters, digits,
// '-', '_' and '.', not starting with '-' or '.', at most 253 bytes.
func checkHostName(h string) error {
	if h == "" {
		return fmt.Errorf("empty host: %w", ErrSyntax)
	}
	if len(h) > maxHostLen {
		return fmt.Errorf("host name longer than %d bytes: %w", maxHostLen, ErrSyntax)
	}
	if h[0] == '-' || h[0] == '.' {
		return fmt.Errorf("host %s starts with %q: %w", logQuote(h), h[0], ErrSyntax)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isLetter(c) && !isDigit(c) && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("host %s: invalid byte %#x: %w", logQuote(h), c, ErrSyntax)
		}
	}
	return nil
}

func formatServerAddr(host string, port uint16) (string, error) {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		if a.Zone() != "" || a.String() != host {
			return "", fmt.Errorf("IPv6 host %s not in canonical form: %w", logQuote(host), ErrSyntax)
		}
		if port == 0 {
			return "[" + host + "]", nil
		}
		return "[" + host + "]:" + strconv.Itoa(int(port)), nil
	}
	if err := checkHostName(host); err != nil {
		return "", err
	}
	if port == 0 {
		return host, nil
	}
	return host + ":" + strconv.Itoa(int(port)), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
