package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/go-crypt/crypt/algorithm/shacrypt"
	"golang.org/x/crypto/bcrypt"
)

// Users is a proxy-authentication users file for explicit mode
// (explicit.auth): one "name:hash" a line, where hash is bcrypt ($2a$,
// $2b$, $2y$, as htpasswd -B or mkpasswd -m bcrypt write it) or SHA-512
// crypt ($6$, as mkpasswd -m sha-512 or /etc/shadow). Blank lines and lines
// starting with '#' are skipped; fields after the hash (the rest of a
// shadow line) are ignored. The zero value has no users.
//
// Hashes are checked by golang.org/x/crypto/bcrypt and
// github.com/go-crypt/crypt's shacrypt, never by code of ours. Checking is
// pure computation, so it lives here with the parser: a malformed hash is
// an error when the file is loaded, not at the first login.
type Users struct {
	hashes map[string]matcher
}

// matcher checks a password against one parsed hash.
type matcher interface {
	match(password string) bool
}

type bcryptHash []byte

func (h bcryptHash) match(password string) bool {
	return bcrypt.CompareHashAndPassword(h, []byte(password)) == nil
}

type shaCryptHash struct{ d *shacrypt.Digest }

func (h shaCryptHash) match(password string) bool { return h.d.Match(password) }

// dummyHash is checked for an unknown user, so that a wrong name costs the
// same time as a wrong password (bcrypt of a random string, cost 10).
var dummyHash = bcryptHash("$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy")

// ParseUsers parses a users file. The caller reads the file; errors name
// the line.
func ParseUsers(data []byte) (*Users, error) {
	u := &Users{hashes: map[string]matcher{}}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		s := strings.TrimRight(string(line), "\r")
		if strings.TrimSpace(s) == "" || strings.HasPrefix(strings.TrimSpace(s), "#") {
			continue
		}
		name, rest, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want name:hash", n)
		}
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("line %d: user name %q is empty or has spaces or control characters", n, name)
		}
		hash, _, _ := strings.Cut(rest, ":")
		m, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("line %d: user %q: %w", n, name, err)
		}
		if _, dup := u.hashes[name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, name)
		}
		u.hashes[name] = m
	}
	return u, nil
}

// parseHash recognises the supported hash kinds and checks their form.
func parseHash(h string) (matcher, error) {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return nil, fmt.Errorf("bad bcrypt hash: %w", err)
		}
		return bcryptHash(h), nil
	case strings.HasPrefix(h, "$6$"):
		d, err := shacrypt.Decode(h)
		if err != nil {
			return nil, fmt.Errorf("bad SHA-512 crypt hash: %w", err)
		}
		sd, ok := d.(*shacrypt.Digest)
		if !ok {
			return nil, errors.New("bad SHA-512 crypt hash")
		}
		return shaCryptHash{sd}, nil
	case h == "":
		return nil, errors.New("no hash")
	}
	return nil, errors.New("unsupported hash: want bcrypt ($2a$, $2b$, $2y$) or SHA-512 crypt ($6$)")
}

// Len returns the number of users.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.hashes)
}

// Verify checks a proxy login. A failure is 530 "Login incorrect." with
// rule "explicit.auth" (it counts toward limits.max_login_failures); the
// Reason tells an unknown user from a wrong password for the audit record,
// the client is not told which.
func (u *Users) Verify(name, password string) Decision {
	var m matcher = dummyHash
	known := false
	if u != nil {
		if h, ok := u.hashes[name]; ok {
			m, known = h, true
		}
	}
	ok := m.match(password)
	if ok && known {
		return Decision{Allow: true, Rule: "explicit.auth"}
	}
	why := "wrong password"
	if !known {
		why = "unknown user"
	}
	return refuse("explicit.auth", 530, "Login incorrect.",
		fmt.Sprintf("proxy login of %q failed: %s", printable(name, 64), why))
}
