package rewrite

import (
	"fmt"
	"strings"
)

// ParsePWD returns the directory a 257 reply names (RFC 959: the path in
// double quotes, a quote inside it doubled), as in
// `257 "/home/ftp" is the current directory`.
func ParsePWD(text string) (string, error) {
	i := strings.IndexByte(text, '"')
	if i < 0 {
		return "", fmt.Errorf("257 reply %s: no quoted path: %w", logQuote(text), ErrSyntax)
	}
	var b strings.Builder
	for j := i + 1; j < len(text); j++ {
		if text[j] != '"' {
			b.WriteByte(text[j])
			continue
		}
		if j+1 < len(text) && text[j+1] == '"' { // a doubled quote is one quote
			b.WriteByte('"')
			j++
			continue
		}
		if b.Len() == 0 {
			return "", fmt.Errorf("257 reply %s: empty path: %w", logQuote(text), ErrSyntax)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("257 reply %s: unterminated path: %w", logQuote(text), ErrSyntax)
}
