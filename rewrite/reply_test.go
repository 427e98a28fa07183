package rewrite

import (
	"strings"
	"testing"
)

func TestNewReply(t *testing.T) {
	tests := []struct {
		name string
		code int
		text []string
		want []string
	}{
		{name: "no text", code: 200, want: []string{"200 "}},
		{name: "one line", code: 227, text: []string{"Entering Passive Mode (192,0,2,1,4,1)."}, want: []string{"227 Entering Passive Mode (192,0,2,1,4,1)."}},
		{name: "two lines", code: 211, text: []string{"Features:", "End"}, want: []string{"211-Features:", "211 End"}},
		{name: "multi-line", code: 211, text: []string{"Features:", " EPRT", " EPSV", "End"}, want: []string{"211-Features:", " EPRT", " EPSV", "211 End"}},
		{name: "inner line that would end the reply is padded", code: 211, text: []string{"a", "211 not the end", "211", "b"}, want: []string{"211-a", " 211 not the end", " 211", "211 b"}},
		{name: "inner line with another code is kept", code: 211, text: []string{"a", "200 fine", "211-fine", "b"}, want: []string{"211-a", "200 fine", "211-fine", "211 b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReply(tt.code, tt.text...)
			if r.Code != tt.code || strings.Join(r.Lines, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("NewReply = %d %q, want %d %q", r.Code, r.Lines, tt.code, tt.want)
			}
			b, err := r.Bytes()
			if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			back, err := NewReader(strings.NewReader(string(b)), Limits{}).ReadReply()
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			if strings.Join(back.Lines, "\n") != strings.Join(r.Lines, "\n") {
				t.Fatalf("read back %q, want %q", back.Lines, r.Lines)
			}
		})
	}
}

func TestReplyText(t *testing.T) {
	tests := []struct {
		name  string
		reply *Reply
		want  string
	}{
		{name: "single line", reply: &Reply{Code: 227, Lines: []string{"227 Entering Passive Mode (192,0,2,1,4,1)."}}, want: "Entering Passive Mode (192,0,2,1,4,1)."},
		{name: "code alone", reply: &Reply{Code: 200, Lines: []string{"200"}}, want: ""},
		{name: "FEAT", reply: &Reply{Code: 211, Lines: []string{"211-Features:", " EPRT", " UTF8", "211 End"}}, want: "Features:\n EPRT\n UTF8\nEnd"},
		{name: "code on every line", reply: &Reply{Code: 220, Lines: []string{"220-a", "220-b", "220 c"}}, want: "a\nb\nc"},
		{name: "other code inner line kept", reply: &Reply{Code: 211, Lines: []string{"211-a", "200 b", "211 c"}}, want: "a\n200 b\nc"},
		{name: "no lines", reply: &Reply{Code: 200}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.reply.Text(); got != tt.want {
				t.Fatalf("Text() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReplyBytesErrors(t *testing.T) {
	tests := []struct {
		name  string
		reply *Reply
	}{
		{name: "nil", reply: nil},
		{name: "code below 100", reply: &Reply{Code: 99, Lines: []string{"99 x"}}},
		{name: "code above 599", reply: &Reply{Code: 600, Lines: []string{"600 x"}}},
		{name: "no lines", reply: &Reply{Code: 200}},
		{name: "CRLF injected in a line", reply: &Reply{Code: 200, Lines: []string{"200 ok\r\n230 logged in"}}},
		{name: "LF in a line", reply: NewReply(200, "a\nb")},
		{name: "CR in a line", reply: NewReply(200, "a\rb")},
		{name: "NUL in a line", reply: NewReply(211, "a", "b\x00", "c")},
		{name: "single line with wrong code", reply: &Reply{Code: 200, Lines: []string{"201 x"}}},
		{name: "single line in multi-line form", reply: &Reply{Code: 200, Lines: []string{"200-x"}}},
		{name: "single line without separator", reply: &Reply{Code: 200, Lines: []string{"200x"}}},
		{name: "multi-line without hyphen", reply: &Reply{Code: 211, Lines: []string{"211 a", "211 b"}}},
		{name: "multi-line wrong last code", reply: &Reply{Code: 211, Lines: []string{"211-a", "212 b"}}},
		{name: "multi-line inner line ends it early", reply: &Reply{Code: 211, Lines: []string{"211-a", "211 early", "211 b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := tt.reply.Bytes(); err == nil {
				t.Fatalf("Bytes() = %q, want an error", b)
			}
		})
	}
}

func TestReplyString(t *testing.T) {
	tests := []struct {
		name  string
		reply *Reply
		want  string
	}{
		{name: "single", reply: NewReply(230, "Login successful."), want: "230 Login successful."},
		{name: "multi", reply: NewReply(211, "Features:", " EPRT", "End"), want: "211-Features: |  EPRT | 211 End"},
		{name: "control bytes escaped", reply: &Reply{Code: 200, Lines: []string{"200 \x1b[2J"}}, want: `200 \x1b[2J`},
		{name: "nil", reply: nil, want: "<nil>"},
		{name: "no lines", reply: &Reply{Code: 200}, want: "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.reply.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
