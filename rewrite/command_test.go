package rewrite

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		verb    string
		arg     string
		telnet  Telnet
		wantErr error
	}{
		{name: "verb only", line: "NOOP", verb: "NOOP"},
		{name: "verb and argument", line: "RETR pub/file.tar.gz", verb: "RETR", arg: "pub/file.tar.gz"},
		{name: "lower case verb", line: "retr a", verb: "RETR", arg: "a"},
		{name: "mixed case verb", line: "Cwd /x", verb: "CWD", arg: "/x"},
		{name: "spaces kept in argument", line: "STOR my  file .txt ", verb: "STOR", arg: "my  file .txt "},
		{name: "trailing space only", line: "LIST ", verb: "LIST", arg: ""},
		{name: "argument starting with space", line: "CWD  lead", verb: "CWD", arg: " lead"},
		{name: "UTF-8 path (RFC 2640)", line: "RETR Grüße/日本.txt", verb: "RETR", arg: "Grüße/日本.txt"},
		{name: "Latin-1 byte kept", line: "DELE caf\xe9", verb: "DELE", arg: "caf\xe9"},
		{name: "unknown verb carried", line: "P@SW", verb: "P@SW"},
		{name: "unknown long verb", line: "XABCDEFGHIJKLMNO x", verb: "XABCDEFGHIJKLMNO", arg: "x"},
		{name: "abort with IP and Synch", line: "\xff\xf4\xff\xf2ABOR", verb: "ABOR", telnet: TelnetIP | TelnetSynch},
		{name: "abort, IAC of Synch taken as urgent", line: "\xff\xf4\xf2ABOR", verb: "ABOR", telnet: TelnetIP | TelnetSynch},
		{name: "abort, DM of Synch taken as urgent", line: "\xff\xf4\xffABOR", verb: "ABOR", telnet: TelnetIP | TelnetSynch},
		{name: "IP only", line: "\xff\xf4STAT", verb: "STAT", telnet: TelnetIP},
		{name: "escaped IAC in argument", line: "RETR a\xff\xffb", verb: "RETR", arg: "a\xffb"},
		{name: "option negotiation removed", line: "\xff\xfb\x01\xff\xfd\x03NOOP", verb: "NOOP"},
		{name: "option negotiation inside argument removed", line: "RETR f\xff\xfd\x18oo", verb: "RETR", arg: "foo"},
		{name: "subnegotiation removed", line: "\xff\xfa\x18\x01abc\xff\xf0NOOP", verb: "NOOP"},
		{name: "unterminated subnegotiation eats the rest", line: "NOOP\xff\xfa\x18garbage", verb: "NOOP"},
		{name: "other two-byte commands removed", line: "\xff\xf1\xff\xf6NO\xff\xf9OP", verb: "NOOP"},
		{name: "dangling IAC dropped", line: "NOOP\xff", verb: "NOOP"},
		{name: "IAC before data byte inside argument drops the IAC", line: "RETR a\xffb", verb: "RETR", arg: "ab"},
		{name: "DM byte inside argument is data", line: "RETR \xf2", verb: "RETR", arg: "\xf2"},
		{name: "IP inside the line", line: "NOOP\xff\xf4", verb: "NOOP", telnet: TelnetIP},

		{name: "empty", line: "", wantErr: errProtocol},
		{name: "only Telnet", line: "\xff\xf4\xff\xf2", wantErr: errProtocol},
		{name: "leading space", line: " NOOP", wantErr: errProtocol},
		{name: "NUL in argument", line: "RETR a\x00b", wantErr: errProtocol},
		{name: "bare CR", line: "RETR a\rb", wantErr: errProtocol},
		{name: "LF inside", line: "RETR a\nDELE b", wantErr: errProtocol},
		{name: "tab in verb", line: "RETR\tfile", wantErr: errProtocol},
		{name: "control byte in verb", line: "NO\x01OP", wantErr: errProtocol},
		{name: "non-ASCII verb", line: "RÉTR x", wantErr: errProtocol},
		{name: "verb too long", line: "ABCDEFGHIJKLMNOPQ x", wantErr: errProtocol},
		{name: "escaped IAC cannot start a verb", line: "\xff\xffNOOP", wantErr: errProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCommand(tt.line)
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				return
			}
			if c.Verb != tt.verb || c.Arg != tt.arg || c.Telnet != tt.telnet {
				t.Fatalf("ParseCommand(%q) = {%q %q %v}, want {%q %q %v}", tt.line, c.Verb, c.Arg, c.Telnet, tt.verb, tt.arg, tt.telnet)
			}
		})
	}
}

func TestCommandBytes(t *testing.T) {
	parsed := func(line string) Command {
		t.Helper()
		c, err := ParseCommand(line)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name    string
		cmd     Command
		want    string
		wantErr bool
	}{
		{name: "unmodified is byte for byte", cmd: parsed("retr File.TXT"), want: "retr File.TXT\r\n"},
		{name: "unmodified trailing space kept", cmd: parsed("LIST "), want: "LIST \r\n"},
		{name: "escaped IAC re-escaped", cmd: parsed("RETR a\xff\xffb"), want: "RETR a\xff\xffb\r\n"},
		{name: "Telnet signals not emitted", cmd: parsed("\xff\xf4\xff\xf2ABOR"), want: "ABOR\r\n"},
		{name: "built from scratch", cmd: Command{Verb: "PORT", Arg: "192,0,2,1,4,1"}, want: "PORT 192,0,2,1,4,1\r\n"},
		{name: "no argument", cmd: Command{Verb: "PASV"}, want: "PASV\r\n"},
		{name: "0xFF escaped", cmd: Command{Verb: "CWD", Arg: "\xff"}, want: "CWD \xff\xff\r\n"},
		{name: "changed verb uses new verb", cmd: func() Command {
			c := parsed("eprt |1|192.0.2.1|1025|")
			c.Verb = "PORT"
			c.Arg = "192,0,2,1,4,1"
			return c
		}(), want: "PORT 192,0,2,1,4,1\r\n"},
		{name: "changed argument keeps verb spelling", cmd: func() Command { c := parsed("port 1,2,3,4,5,6"); c.Arg = "7,8,9,10,11,12"; return c }(), want: "port 7,8,9,10,11,12\r\n"},
		{name: "argument removed drops the space", cmd: func() Command { c := parsed("EPSV 2"); c.Arg = ""; return c }(), want: "EPSV\r\n"},

		{name: "CR in argument", cmd: Command{Verb: "RETR", Arg: "a\rb"}, wantErr: true},
		{name: "LF in argument (injection)", cmd: Command{Verb: "RETR", Arg: "a\r\nDELE b"}, wantErr: true},
		{name: "NUL in argument", cmd: Command{Verb: "RETR", Arg: "a\x00"}, wantErr: true},
		{name: "empty verb", cmd: Command{Arg: "x"}, wantErr: true},
		{name: "space in verb", cmd: Command{Verb: "RE TR"}, wantErr: true},
		{name: "CRLF in verb", cmd: Command{Verb: "NOOP\r\nDELE"}, wantErr: true},
		{name: "verb too long", cmd: Command{Verb: strings.Repeat("A", 17)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.cmd.Bytes()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Bytes() = %q, want an error", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("Bytes() = %q, want %q", b, tt.want)
			}
		})
	}
}

func TestCommandString(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{name: "PASS redacted", line: "PASS hunter2", want: "PASS REDACTED"},
		{name: "lower-case pass redacted", line: "pass hunter2", want: "PASS REDACTED"},
		{name: "ACCT redacted", line: "ACCT secret-account", want: "ACCT REDACTED"},
		{name: "ADAT redacted", line: "ADAT YIIC...", want: "ADAT REDACTED"},
		{name: "PASS without argument", line: "PASS", want: "PASS"},
		{name: "PASS with spaces in password", line: "PASS a b c", want: "PASS REDACTED"},
		{name: "PASS after Telnet signals", line: "\xff\xf4PASS hunter2", want: "PASS REDACTED"},
		{name: "USER shown", line: "USER alice", want: "USER alice"},
		{name: "control bytes escaped", line: "RETR \x1b[31mred", want: `RETR \x1b[31mred`},
		{name: "invalid UTF-8 escaped", line: "RETR \xe9", want: `RETR \xe9`},
		{name: "bidi override escaped", line: "RETR a\u202eb", want: `RETR a\xe2\x80\xaeb`},
		{name: "UTF-8 kept", line: "CWD Grüße", want: "CWD Grüße"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCommand(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSecretsNeverInErrors proves that a malformed PASS or ACCT line does not
// put the password into the error a caller would log.
func TestSecretsNeverInErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	lines := []string{
		"PASS " + secret + "\x00",
		"pass " + secret + "\rx",
		"\xff\xf4\xff\xf2PASS " + secret + "\x00",
		"PASS\t" + secret + "\x00",
		"\x00PASS " + secret,
		"ACCT " + secret + "\x00",
		"ADAT " + secret + "\x00",
	}
	for _, line := range lines {
		t.Run(sanitize(line, 0), func(t *testing.T) {
			_, err := ParseCommand(line)
			if err == nil {
				t.Fatalf("ParseCommand(%q) succeeded, want an error", line)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
			r := NewReader(strings.NewReader(line+"\r\n"), Limits{})
			_, err = r.ReadCommand()
			if err == nil || strings.Contains(err.Error(), secret) {
				t.Fatalf("ReadCommand error = %v, want an error without the secret", err)
			}
		})
	}
	// And a good PASS command never shows it either.
	c, err := ParseCommand("PASS " + secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.String(), secret) {
		t.Fatalf("String() leaks the secret: %q", c.String())
	}
	if err := NewWriter(failWriter{}).WriteCommand(c); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("WriteCommand error = %v, want an error without the secret", err)
	}
}

func TestCommandInfo(t *testing.T) {
	tests := []struct {
		line  string
		class Class
	}{
		{"RETR x", ClassTransfer},
		{"epsv all", ClassDataSetup},
		{"XPWD", ClassObsolete},
		{"P@SW", ClassUnknown},
		{"SITE CHMOD 644 x", ClassFile},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c, err := ParseCommand(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			info := c.Info()
			if info.Class != tt.class || info.Verb != c.Verb {
				t.Fatalf("Info() = %+v, want class %v for verb %q", info, tt.class, c.Verb)
			}
		})
	}
}

func TestTelnetString(t *testing.T) {
	tests := []struct {
		t    Telnet
		want string
	}{
		{0, "none"}, {TelnetIP, "IP"}, {TelnetSynch, "SYNCH"}, {TelnetIP | TelnetSynch, "IP|SYNCH"}, {0x80, "Telnet(0x80)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.t.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
