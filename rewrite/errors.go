package rewrite

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors the Reader returns, possibly wrapped; test them with errors.Is.
// A peer that closes the connection yields io.EOF between lines and
// io.ErrUnexpectedEOF inside a line or inside a multi-line reply.
var (
	// ErrLineTooLong reports a line longer than Limits.MaxLine. The reader
	// has discarded that line (and, for a reply, the rest of the reply), so
	// the next call starts at the next line or reply.
	ErrLineTooLong = errors.New("rewrite: line too long")
	// ErrReplyTooLong reports a reply bigger than Limits.MaxReply. The reader
	// has consumed the whole reply, so the next call starts at the next one.
	ErrReplyTooLong = errors.New("rewrite: reply too long")
)

// ExceedsLimit reports whether err says that a peer went over one of the
// Reader's Limits (a line over MaxLine, a reply over MaxReply bytes or over
// MaxReplyLines lines). On a server's connection a proxy ends the session
// with 421: a server that breaks the limits cannot be followed reliably.
func ExceedsLimit(err error) bool {
	return errors.Is(err, ErrLineTooLong) || errors.Is(err, ErrReplyTooLong)
}

// Errors the address and argument parsers wrap; test them with errors.Is.
// A proxy answers the first with 501 and the second with 522.
var (
	// ErrSyntax reports a malformed argument or reply text: wrong field
	// count, a number out of range, port 0, a sign, trailing garbage.
	ErrSyntax = errors.New("rewrite: syntax error")
	// ErrUnsupportedFamily reports a well-formed network protocol or address
	// family number other than IPv4 or IPv6 (EPRT, EPSV, LPRT, LPSV).
	ErrUnsupportedFamily = errors.New("rewrite: unsupported network protocol")
)

// ProtocolError reports input that breaks the FTP protocol: a reply line
// without a valid code, a multi-line reply out of form, a NUL or bare CR in a
// line, an empty command. It is kept apart from replies in which the peer
// merely said no (those are ordinary *Reply values with a 4xx/5xx code).
type ProtocolError struct {
	Msg  string // what is wrong, e.g. "NUL in command line"
	Line string // the offending line, truncated, sanitised and with PASS/ACCT/ADAT arguments redacted
}

func (e *ProtocolError) Error() string {
	if e.Line == "" {
		return "ftp protocol error: " + e.Msg
	}
	return "ftp protocol error: " + e.Msg + ": \"" + e.Line + "\""
}

// maxLogLine is how many bytes of a peer's line an error message shows.
const maxLogLine = 96

// logQuote returns s sanitised, truncated and quoted for an error message.
func logQuote(s string) string {
	return "\"" + sanitize(s, maxLogLine) + "\""
}

// sanitize makes s safe to log: printable runes are kept, everything else
// (control characters, invalid UTF-8, format characters such as bidi
// overrides) is written as \xNN, and a backslash as \\. A positive limit
// truncates the input to that many bytes and appends "...".
func sanitize(s string, limit int) string {
	truncated := false
	if limit > 0 && len(s) > limit {
		s, truncated = s[:limit], true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == utf8.RuneError && size <= 1, !unicode.IsPrint(r):
			for _, c := range []byte(s[i : i+size]) {
				b.WriteString(`\x`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if truncated {
		b.WriteString("...")
	}
	return b.String()
}

const hexDigits = "0123456789abcdef"

// redactCommandLine returns a command line sanitised for an error message,
// with everything after a secret verb (PASS, ACCT, ADAT) replaced by
// REDACTED. The verb is found leniently (leading non-letters skipped, the
// verb ends at the first non-letter) so that malformed lines cannot smuggle a
// password past the check.
func redactCommandLine(line string) string {
	i := 0
	for i < len(line) && !isLetter(line[i]) {
		i++
	}
	j := i
	for j < len(line) && isLetter(line[j]) {
		j++
	}
	if info, ok := Lookup(line[i:j]); ok && info.Secret {
		return sanitize(line[:j], maxLogLine) + " REDACTED"
	}
	return sanitize(line, maxLogLine)
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// asciiUpper upper-cases ASCII letters only; other bytes, including invalid
// UTF-8, are kept as they are (strings.ToUpper would replace them).
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// badLineByte reports the first CR, LF or NUL in s and its name, or -1.
// It takes a string or a byte slice so that the reader checks its buffer
// without copying it.
func badLineByte[T string | []byte](s T) (int, string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			return i, "CR"
		case '\n':
			return i, "LF"
		case 0:
			return i, "NUL"
		}
	}
	return -1, ""
}
