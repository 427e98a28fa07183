package rewrite

import (
	"errors"
	"testing"
)

func TestParsePWD(t *testing.T) {
	tests := []struct {
		name, text, want string
		bad              bool
	}{
		{name: "vsftpd", text: `"/home/ftp" is the current directory`, want: "/home/ftp"},
		{name: "proftpd", text: `"/" is the current directory`, want: "/"},
		{name: "pure-ftpd", text: `"/srv" is your current location`, want: "/srv"},
		{name: "doubled quote", text: `"/a ""b"" c" created`, want: `/a "b" c`},
		{name: "spaces", text: `"/with space/x"`, want: "/with space/x"},
		{name: "text before", text: `MKD command successful: "/new"`, want: "/new"},
		{name: "no quotes", text: `/home/ftp`, bad: true},
		{name: "unterminated", text: `"/home`, bad: true},
		{name: "empty", text: `"" is it`, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePWD(tc.text)
			if tc.bad {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParsePWD(%q) = %q, %v; want a syntax error", tc.text, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParsePWD(%q) = %q, %v; want %q", tc.text, got, err, tc.want)
			}
		})
	}
}
