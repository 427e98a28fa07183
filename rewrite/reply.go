package rewrite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply is one FTP reply, single-line or multi-line (RFC 959 §4.2).
type Reply struct {
	Code int // 100..599
	// Lines are the reply's lines exactly as received, without terminators:
	// "227 Entering Passive Mode (...)", or for a multi-line reply
	// "211-Features:", " EPRT", "211 End". Lines are not Telnet-decoded.
	// For a reply built by NewReply they are generated.
	Lines []string
}

// NewReply builds a reply. With no or one text it is a single line
// "code text"; with more it is the multi-line form "code-first", the inner
// lines, "code last". Inner lines that a reader would take for the end of
// the reply (those starting with "code " or equal to the code) get a leading
// space, as RFC 959 §4.2 requires. Texts are not checked here; Bytes refuses
// a reply whose lines contain CR, LF or NUL.
func NewReply(code int, text ...string) *Reply {
	c := strconv.Itoa(code)
	switch len(text) {
	case 0:
		return &Reply{Code: code, Lines: []string{c + " "}}
	case 1:
		return &Reply{Code: code, Lines: []string{c + " " + text[0]}}
	}
	lines := make([]string, 0, len(text))
	lines = append(lines, c+"-"+text[0])
	for _, t := range text[1 : len(text)-1] {
		if isLastLine(t, c) {
			t = " " + t
		}
		lines = append(lines, t)
	}
	lines = append(lines, c+" "+text[len(text)-1])
	return &Reply{Code: code, Lines: lines}
}

// isLastLine reports whether line ends a reply with the given code: it
// starts with the code followed by a space, or is the code alone (which
// some servers send for an empty text).
func isLastLine[T string | []byte](line T, code string) bool {
	if len(code) != 3 || len(line) < 3 || string(line[:3]) != code {
		return false
	}
	return len(line) == 3 || line[3] == ' '
}

// Multiline reports whether the reply has more than one line.
func (r *Reply) Multiline() bool { return len(r.Lines) > 1 }

// Text returns the message text without the code prefixes, lines joined by
// "\n". The first and last lines lose their "ddd-" or "ddd " prefix; inner
// lines lose a "ddd-" prefix with the reply's own code (some servers prefix
// every line) and are otherwise kept as received.
func (r *Reply) Text() string {
	if len(r.Lines) == 0 {
		return ""
	}
	code := strconv.Itoa(r.Code)
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case i == 0 || i == len(r.Lines)-1:
			if len(l) >= 4 && l[:3] == code {
				l = l[4:]
			} else if l == code {
				l = ""
			}
		case strings.HasPrefix(l, code+"-"):
			l = l[4:]
		}
		b.WriteString(l)
	}
	return b.String()
}

// Bytes returns the reply in wire form with CRLF after every line. It is an
// error if the code is outside 100..599, there are no lines, a line contains
// CR, LF or NUL, or the lines do not frame the reply: a single line must be
// "code text" (or the code alone); a multi-line reply must start with
// "code-", end with "code " and have no inner line that would end it early.
func (r *Reply) Bytes() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("format reply: %w", err)
	}
	n := 0
	for _, l := range r.Lines {
		n += len(l) + 2
	}
	b := make([]byte, 0, n)
	for _, l := range r.Lines {
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b, nil
}

func (r *Reply) validate() error {
	if r == nil {
		return errors.New("nil reply")
	}
	if r.Code < 100 || r.Code > 599 {
		return fmt.Errorf("reply code %d outside 100..599", r.Code)
	}
	if len(r.Lines) == 0 {
		return fmt.Errorf("reply %d has no lines", r.Code)
	}
	code := strconv.Itoa(r.Code)
	for i, l := range r.Lines {
		if j, what := badLineByte(l); j >= 0 {
			return fmt.Errorf("reply %d line %d: %s in line", r.Code, i+1, what)
		}
	}
	last := len(r.Lines) - 1
	if last == 0 {
		if !isLastLine(r.Lines[0], code) {
			return fmt.Errorf("reply %d: line %s does not start with %q", r.Code, logQuote(r.Lines[0]), code+" ")
		}
		return nil
	}
	if !strings.HasPrefix(r.Lines[0], code+"-") {
		return fmt.Errorf("reply %d: first line %s of a multi-line reply does not start with %q", r.Code, logQuote(r.Lines[0]), code+"-")
	}
	for i, l := range r.Lines[1:last] {
		if isLastLine(l, code) {
			return fmt.Errorf("reply %d: inner line %d %s would end the reply", r.Code, i+2, logQuote(l))
		}
	}
	if !isLastLine(r.Lines[last], code) {
		return fmt.Errorf("reply %d: last line %s does not start with %q", r.Code, logQuote(r.Lines[last]), code+" ")
	}
	return nil
}

// String renders the reply for logs: its lines sanitised and joined by " | ".
func (r *Reply) String() string {
	if r == nil {
		return "<nil>"
	}
	if len(r.Lines) == 0 {
		return strconv.Itoa(r.Code)
	}
	parts := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		parts[i] = sanitize(l, 0)
	}
	return strings.Join(parts, " | ")
}

// parseReplyHead checks the start of a reply's first line: three digits
// (the first 1..5) followed by end of line, SP or "-".
func parseReplyHead(line []byte) (code int, multi bool, ok bool) {
	if len(line) < 3 || line[0] < '1' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	switch {
	case len(line) == 3 || line[3] == ' ':
		return code, false, true
	case line[3] == '-':
		return code, true, true
	}
	return 0, false, false
}
