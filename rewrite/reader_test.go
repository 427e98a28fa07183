package rewrite

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cmdStep is what one ReadCommand call should return.
type cmdStep struct {
	verb, arg string
	telnet    Telnet
	err       error
}

var readCommandCases = []struct {
	name  string
	input string
	lim   Limits
	steps []cmdStep
}{
	{
		name:  "CRLF lines",
		input: crlf("USER anonymous", "PASS guest@", "SYST"),
		steps: []cmdStep{{verb: "USER", arg: "anonymous"}, {verb: "PASS", arg: "guest@"}, {verb: "SYST"}, {err: io.EOF}},
	},
	{
		name:  "bare LF lines",
		input: "NOOP\nQUIT\n",
		steps: []cmdStep{{verb: "NOOP"}, {verb: "QUIT"}, {err: io.EOF}},
	},
	{
		name:  "empty stream",
		input: "",
		steps: []cmdStep{{err: io.EOF}, {err: io.EOF}},
	},
	{
		name:  "peer closes mid-line",
		input: "NOOP\r\nQUI",
		steps: []cmdStep{{verb: "NOOP"}, {err: io.ErrUnexpectedEOF}, {err: io.EOF}},
	},
	{
		name:  "peer closes after CR",
		input: "QUIT\r",
		steps: []cmdStep{{err: io.ErrUnexpectedEOF}},
	},
	{
		name:  "abort sequence (RFC 959 4.1.3)",
		input: "RETR big.iso\r\n\xff\xf4\xff\xf2ABOR\r\n",
		steps: []cmdStep{{verb: "RETR", arg: "big.iso"}, {verb: "ABOR", telnet: TelnetIP | TelnetSynch}, {err: io.EOF}},
	},
	{
		name:  "Telnet-only line carried to the next command",
		input: "\xff\xf4\xff\xf2\r\nABOR\r\nNOOP\r\n",
		steps: []cmdStep{{verb: "ABOR", telnet: TelnetIP | TelnetSynch}, {verb: "NOOP"}},
	},
	{
		name:  "malformed line consumed, next line read",
		input: crlf("RETR a\x00b", "", " NOOP", "NOOP"),
		steps: []cmdStep{{err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {verb: "NOOP"}, {err: io.EOF}},
	},
	{
		name:  "line of exactly MaxLine bytes",
		input: crlf("RETR " + strings.Repeat("x", 11)),
		lim:   Limits{MaxLine: 16},
		steps: []cmdStep{{verb: "RETR", arg: strings.Repeat("x", 11)}},
	},
	{
		name:  "line of exactly MaxLine bytes, bare LF",
		input: "RETR " + strings.Repeat("x", 11) + "\n",
		lim:   Limits{MaxLine: 16},
		steps: []cmdStep{{verb: "RETR", arg: strings.Repeat("x", 11)}},
	},
	{
		name:  "line one byte over MaxLine, then resync",
		input: crlf("RETR "+strings.Repeat("x", 12), "NOOP"),
		lim:   Limits{MaxLine: 16},
		steps: []cmdStep{{err: ErrLineTooLong}, {verb: "NOOP"}, {err: io.EOF}},
	},
	{
		name:  "line one byte over MaxLine, bare LF",
		input: "RETR " + strings.Repeat("x", 12) + "\nNOOP\n",
		lim:   Limits{MaxLine: 16},
		steps: []cmdStep{{err: ErrLineTooLong}, {verb: "NOOP"}},
	},
	{
		name:  "very long line, then resync",
		input: crlf("STOR "+strings.Repeat("y", 10000), "PWD"),
		lim:   Limits{MaxLine: 32},
		steps: []cmdStep{{err: ErrLineTooLong}, {verb: "PWD"}, {err: io.EOF}},
	},
	{
		name:  "over-long line cut by EOF",
		input: "STOR " + strings.Repeat("y", 100),
		lim:   Limits{MaxLine: 32},
		steps: []cmdStep{{err: ErrLineTooLong}, {err: io.EOF}},
	},
	{
		name:  "two over-long lines in a row",
		input: crlf(strings.Repeat("a", 40), strings.Repeat("b", 40), "NOOP"),
		lim:   Limits{MaxLine: 32},
		steps: []cmdStep{{err: ErrLineTooLong}, {err: ErrLineTooLong}, {verb: "NOOP"}},
	},
	{
		name:  "line longer than the read buffer, within MaxLine",
		input: crlf("RETR "+strings.Repeat("w", 3*readBuf), "NOOP"),
		lim:   Limits{MaxLine: 4 * readBuf},
		steps: []cmdStep{{verb: "RETR", arg: strings.Repeat("w", 3*readBuf)}, {verb: "NOOP"}, {err: io.EOF}},
	},
	{
		name:  "line one byte over a MaxLine longer than the read buffer",
		input: crlf(strings.Repeat("v", 2*readBuf+1), "NOOP"),
		lim:   Limits{MaxLine: 2 * readBuf},
		steps: []cmdStep{{err: ErrLineTooLong}, {verb: "NOOP"}, {err: io.EOF}},
	},
	{
		name:  "default limit is 4096",
		input: crlf("RETR "+strings.Repeat("z", DefaultMaxLine-5), "RETR "+strings.Repeat("z", DefaultMaxLine-4), "NOOP"),
		steps: []cmdStep{{verb: "RETR", arg: strings.Repeat("z", DefaultMaxLine-5)}, {err: ErrLineTooLong}, {verb: "NOOP"}},
	},
}

func TestReadCommand(t *testing.T) {
	tests := readCommandCases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// "waited": Wait before each read, as ftpgate's readers do.
			for _, split := range []string{"whole", "bytewise", "whole, waited", "bytewise, waited"} {
				var src io.Reader = strings.NewReader(tt.input)
				if strings.HasPrefix(split, "bytewise") {
					src = &oneByteReader{s: tt.input}
				}
				r := NewReader(src, tt.lim)
				for i, want := range tt.steps {
					if strings.HasSuffix(split, "waited") {
						r.Wait()
					}
					c, err := r.ReadCommand()
					if want.err != nil {
						if err == nil {
							t.Fatalf("%s: step %d: got %q %q, want error %v", split, i, c.Verb, c.Arg, want.err)
						}
						checkErr(t, err, want.err)
						continue
					}
					if err != nil {
						t.Fatalf("%s: step %d: %v", split, i, err)
					}
					if c.Verb != want.verb || c.Arg != want.arg || c.Telnet != want.telnet {
						t.Fatalf("%s: step %d: got {%q %q %v}, want {%q %q %v}", split, i, c.Verb, c.Arg, c.Telnet, want.verb, want.arg, want.telnet)
					}
				}
			}
		})
	}
}

// TestReadCommandResumesAfterTimeout checks that a deadline error in the
// middle of a line loses nothing.
func TestReadCommandResumesAfterTimeout(t *testing.T) {
	tests := []struct {
		name   string
		chunks []chunk
		want   []string
	}{
		{name: "mid-line", chunks: []chunk{{"RET", errTimeout}, {"R file\r\nNOOP\r\n", nil}}, want: []string{"RETR file", "NOOP"}},
		{name: "between CR and LF", chunks: []chunk{{"NOOP\r", errTimeout}, {"\nPWD\r\n", nil}}, want: []string{"NOOP", "PWD"}},
		{name: "two timeouts", chunks: []chunk{{"C", errTimeout}, {"W", errTimeout}, {"D /\r\n", nil}}, want: []string{"CWD /"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, waited := range []bool{false, true} {
				r := NewReader(&scriptedReader{chunks: slices.Clone(tt.chunks)}, Limits{})
				var got []string
				timeouts := 0
				for tries := 0; len(got) < len(tt.want) && tries < 10; tries++ {
					if waited {
						r.Wait() // a deadline it meets is the next read's error
					}
					c, err := r.ReadCommand()
					if errors.Is(err, errTimeout) {
						timeouts++
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, strings.TrimSuffix(c.Verb+" "+c.Arg, " "))
				}
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Fatalf("waited %v: got %q, want %q", waited, got, tt.want)
				}
				if want := len(tt.chunks) - 1; timeouts != want {
					t.Fatalf("waited %v: %d timeouts reported, want %d", waited, timeouts, want)
				}
			}
		})
	}
}

// TestReadCommandTooLongAcrossTimeout checks that an over-long line is
// reported at once and that skipping it, interrupted by deadlines, still
// ends at the next line.
func TestReadCommandTooLongAcrossTimeout(t *testing.T) {
	r := NewReader(&scriptedReader{chunks: []chunk{
		{strings.Repeat("a", 100), errTimeout},
		{strings.Repeat("b", 100), errTimeout},
		{"bbb\r\nNOOP\r\n", nil},
	}}, Limits{MaxLine: 32})
	_, err := r.ReadCommand()
	checkErr(t, err, ErrLineTooLong)
	for range 2 { // one per deadline met while skipping the rest
		_, err = r.ReadCommand()
		checkErr(t, err, errTimeout)
	}
	c, err := r.ReadCommand()
	if err != nil || c.Verb != "NOOP" {
		t.Fatalf("got %q, %v; want NOOP", c.Verb, err)
	}
}

// TestReadCommandLongLineAcrossTimeout: a line longer than the read buffer
// that arrives in pieces, with deadlines met between them, is read whole.
func TestReadCommandLongLineAcrossTimeout(t *testing.T) {
	arg := strings.Repeat("a", 700) + strings.Repeat("b", 700)
	r := NewReader(&scriptedReader{chunks: []chunk{
		{"STOR " + arg[:700], errTimeout},
		{arg[700:], errTimeout},
		{"\r\nNOOP\r\n", nil},
	}}, Limits{})
	for range 2 {
		_, err := r.ReadCommand()
		checkErr(t, err, errTimeout)
	}
	for _, want := range []string{"STOR", "NOOP"} {
		c, err := r.ReadCommand()
		if err != nil || c.Verb != want || (want == "STOR" && c.Arg != arg) {
			t.Fatalf("got %q %d bytes, %v; want %s", c.Verb, len(c.Arg), err, want)
		}
	}
}

// TestReaderSmallBuffer: an idle control connection holds its reader, so a
// reader allocates a small buffer, not one sized for the longest line.
func TestReaderSmallBuffer(t *testing.T) {
	const n = 100
	rs := make([]*Reader, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range rs {
		rs[i] = NewReader(strings.NewReader(""), Limits{})
	}
	runtime.ReadMemStats(&after)
	// The buffer, the bufio.Reader and the Reader: under 1 KiB, where a
	// buffer for the longest line alone took 4 KiB.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1024 {
		t.Fatalf("NewReader allocated %d bytes, want at most 1 KiB", per)
	}
	runtime.KeepAlive(rs)
}

// endlessLine produces n bytes of one line, then "\r\nNOOP\r\n".
type endlessLine struct {
	n    int
	tail string
}

func (e *endlessLine) Read(p []byte) (int, error) {
	if e.n > 0 {
		k := min(len(p), e.n)
		for i := range k {
			p[i] = 'A'
		}
		e.n -= k
		return k, nil
	}
	if e.tail == "" {
		return 0, io.EOF
	}
	k := copy(p, e.tail)
	e.tail = e.tail[k:]
	return k, nil
}

// TestReadCommandBoundedMemory reads a 64 MiB line and checks the reader
// allocated a small, fixed amount while discarding it.
func TestReadCommandBoundedMemory(t *testing.T) {
	src := &endlessLine{n: 64 << 20, tail: "\r\nNOOP\r\n"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewReader(src, Limits{})
	_, err := r.ReadCommand()
	checkErr(t, err, ErrLineTooLong)
	c, err := r.ReadCommand()
	runtime.ReadMemStats(&after)
	if err != nil || c.Verb != "NOOP" {
		t.Fatalf("after the long line got %q, %v; want NOOP", c.Verb, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("reading a 64 MiB line allocated %d bytes, want < 1 MiB", alloc)
	}
	if r.Buffered() != 0 {
		t.Fatalf("Buffered() = %d after the stream, want 0", r.Buffered())
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("AUTH TLS\r\n\x16\x03\x01 hello"), Limits{})
	c, err := r.ReadCommand()
	if err != nil || c.Verb != "AUTH" {
		t.Fatalf("got %q, %v", c.Verb, err)
	}
	if got := r.Buffered(); got != 9 {
		t.Fatalf("Buffered() = %d, want 9 (the bytes sent after AUTH TLS)", got)
	}
}

// replyStep is what one ReadReply call should return.
type replyStep struct {
	code  int
	lines []string
	err   error
}

var readReplyCases = []struct {
	name  string
	input string
	lim   Limits
	steps []replyStep
}{
	{
		name:  "single line (vsftpd 227)",
		input: crlf("227 Entering Passive Mode (192,0,2,10,195,149)."),
		steps: []replyStep{{code: 227, lines: []string{"227 Entering Passive Mode (192,0,2,10,195,149)."}}, {err: io.EOF}},
	},
	{
		name:  "code alone",
		input: crlf("200"),
		steps: []replyStep{{code: 200, lines: []string{"200"}}},
	},
	{
		name:  "bare LF reply",
		input: "220 ready\n",
		steps: []replyStep{{code: 220, lines: []string{"220 ready"}}},
	},
	{
		name:  "RFC 959 4.2 example with a line beginning with numbers",
		input: crlf("123-First line", "Second line", "  234 A line beginning with numbers", "123 The last line"),
		steps: []replyStep{{code: 123, lines: []string{"123-First line", "Second line", "  234 A line beginning with numbers", "123 The last line"}}},
	},
	{
		name:  "inner line with another code and a space is not the end",
		input: crlf("211-Status", "200 this is not the end", "211-nor this", "211 End"),
		steps: []replyStep{{code: 211, lines: []string{"211-Status", "200 this is not the end", "211-nor this", "211 End"}}},
	},
	{
		name:  "inner lines starting with digits",
		input: crlf("213-Status of x:", "2024 was a year", "12345", "213 End of status"),
		steps: []replyStep{{code: 213, lines: []string{"213-Status of x:", "2024 was a year", "12345", "213 End of status"}}},
	},
	{
		name:  "vsftpd FEAT",
		input: crlf("211-Features:", " EPRT", " EPSV", " MDTM", " PASV", " REST STREAM", " SIZE", " TVFS", "211 End"),
		steps: []replyStep{{code: 211, lines: []string{"211-Features:", " EPRT", " EPSV", " MDTM", " PASV", " REST STREAM", " SIZE", " TVFS", "211 End"}}},
	},
	{
		name: "pure-ftpd banner, code on every line",
		input: crlf("220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------",
			"220-You are user number 1 of 5 allowed.",
			"220-Local time is now 11:16. Server port: 21.",
			"220 You will be disconnected after 15 minutes of inactivity."),
		steps: []replyStep{{code: 220, lines: []string{
			"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------",
			"220-You are user number 1 of 5 allowed.",
			"220-Local time is now 11:16. Server port: 21.",
			"220 You will be disconnected after 15 minutes of inactivity."}}},
	},
	{
		name:  "multi-line ended by the code alone",
		input: crlf("211-a", "b", "211", "200 next"),
		steps: []replyStep{{code: 211, lines: []string{"211-a", "b", "211"}}, {code: 200, lines: []string{"200 next"}}},
	},
	{
		name:  "two replies in a row",
		input: crlf("150 Opening BINARY mode data connection", "226 Transfer complete"),
		steps: []replyStep{{code: 150, lines: []string{"150 Opening BINARY mode data connection"}}, {code: 226, lines: []string{"226 Transfer complete"}}, {err: io.EOF}},
	},
	{
		name:  "malformed codes, each line consumed",
		input: crlf("abc", "20", "600 x", "099 x", "2000 x", "200x", "-200 x", "200 ok"),
		steps: []replyStep{{err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {err: errProtocol}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "NUL in a single line",
		input: crlf("200 a\x00b", "200 ok"),
		steps: []replyStep{{err: errProtocol}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "bare CR in an inner line, whole reply consumed",
		input: crlf("211-a", "b\rc", "211 end", "200 ok"),
		steps: []replyStep{{err: errProtocol}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "peer closes inside a multi-line reply",
		input: crlf("211-a", "b"),
		steps: []replyStep{{err: io.ErrUnexpectedEOF}, {err: io.EOF}},
	},
	{
		name:  "peer closes mid-line",
		input: "226 Transfer compl",
		steps: []replyStep{{err: io.ErrUnexpectedEOF}},
	},
	{
		name:  "over-long single line, then resync",
		input: crlf("200 "+strings.Repeat("x", 40), "200 ok"),
		lim:   Limits{MaxLine: 32},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "over-long inner line, whole reply skipped",
		input: crlf("211-a", strings.Repeat("x", 40), "b", "211 end", "200 ok"),
		lim:   Limits{MaxLine: 32},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}, {err: io.EOF}},
	},
	{
		name:  "over-long first line of a multi-line reply, whole reply skipped",
		input: crlf("211-"+strings.Repeat("x", 40), "b", "211 end", "200 ok"),
		lim:   Limits{MaxLine: 32},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "over-long last line ends the reply",
		input: crlf("211-a", "211 "+strings.Repeat("x", 40), "200 ok"),
		lim:   Limits{MaxLine: 32},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "over-long line without a code",
		input: crlf(strings.Repeat("x", 40), "200 ok"),
		lim:   Limits{MaxLine: 32},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "reply too long, whole reply consumed",
		input: crlf("211-"+strings.Repeat("a", 20), strings.Repeat("b", 20), strings.Repeat("c", 20), "211 end", "200 ok"),
		lim:   Limits{MaxReply: 50},
		steps: []replyStep{{err: ErrReplyTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "reply of exactly MaxReply bytes",
		input: crlf("211-abc", "211 end"),
		lim:   Limits{MaxReply: 18},
		steps: []replyStep{{code: 211, lines: []string{"211-abc", "211 end"}}},
	},
	{
		name:  "single line over MaxReply",
		input: crlf("200 "+strings.Repeat("a", 60), "200 ok"),
		lim:   Limits{MaxReply: 50},
		steps: []replyStep{{err: ErrReplyTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "too many lines, then the next reply",
		input: crlf("211-a", "b", "c", "d", "211 e", "200 ok"),
		lim:   Limits{MaxReplyLines: 4},
		steps: []replyStep{{err: ErrReplyTooLong}, {code: 200, lines: []string{"200 ok"}}, {err: io.EOF}},
	},
	{
		name:  "exactly the line limit",
		input: crlf("211-a", "b", "c", "211 d"),
		lim:   Limits{MaxReplyLines: 4},
		steps: []replyStep{{code: 211, lines: []string{"211-a", "b", "c", "211 d"}}},
	},
	{
		name:  "long inner line reported, rest of the reply skipped",
		input: crlf("211-a", strings.Repeat("x", 40), "211-still inside", "211 end", "200 ok"),
		lim:   Limits{MaxLine: 16},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "long first line of a multi-line reply",
		input: crlf("211-"+strings.Repeat("x", 40), "inner", "211 end", "200 ok"),
		lim:   Limits{MaxLine: 16},
		steps: []replyStep{{err: ErrLineTooLong}, {code: 200, lines: []string{"200 ok"}}},
	},
	{
		name:  "skipped reply cut by EOF",
		input: crlf("211-a", "b", "c"),
		lim:   Limits{MaxReplyLines: 2},
		steps: []replyStep{{err: ErrReplyTooLong}, {err: io.ErrUnexpectedEOF}, {err: io.EOF}},
	},
}

func TestReadReply(t *testing.T) {
	tests := readReplyCases
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []string{"whole", "bytewise"} {
				var src io.Reader = strings.NewReader(tt.input)
				if split == "bytewise" {
					src = &oneByteReader{s: tt.input}
				}
				r := NewReader(src, tt.lim)
				for i, want := range tt.steps {
					rep, err := r.ReadReply()
					if want.err != nil {
						if err == nil {
							t.Fatalf("%s: step %d: got %v, want error %v", split, i, rep, want.err)
						}
						checkErr(t, err, want.err)
						continue
					}
					if err != nil {
						t.Fatalf("%s: step %d: %v", split, i, err)
					}
					if rep.Code != want.code || strings.Join(rep.Lines, "\n") != strings.Join(want.lines, "\n") {
						t.Fatalf("%s: step %d: got %d %q, want %d %q", split, i, rep.Code, rep.Lines, want.code, want.lines)
					}
				}
			}
		})
	}
}

// TestReadReplyByteForByte checks that a reply read and written back is
// identical to what was received (CRLF input).
func TestReadReplyByteForByte(t *testing.T) {
	inputs := []string{
		crlf("227 Entering Passive Mode (192,0,2,10,195,149)."),
		crlf("211-Features:", " EPRT", " EPSV", " MLST type*;size*;modify*;", "211 End"),
		crlf("123-First line", "Second line", "  234 A line beginning with numbers", "123 The last line"),
		crlf("257 \"/caf\xc3\xa9\" is the current directory"),
		crlf("257 \"/a\xff\xffb\" created"),
		crlf("200"),
	}
	for _, in := range inputs {
		t.Run(sanitize(in, 40), func(t *testing.T) {
			rep, err := NewReader(strings.NewReader(in), Limits{}).ReadReply()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := NewWriter(&buf).WriteReply(rep); err != nil {
				t.Fatal(err)
			}
			if buf.String() != in {
				t.Fatalf("written back %q, want %q", buf.String(), in)
			}
		})
	}
}

func TestReadReplyResumesAfterTimeout(t *testing.T) {
	r := NewReader(&scriptedReader{chunks: []chunk{
		{"211-Features:\r\n EP", errTimeout},
		{"RT\r\n", errTimeout},
		{"211 End\r\n226 ok\r\n", nil},
	}}, Limits{})
	var got []*Reply
	for tries := 0; len(got) < 2 && tries < 10; tries++ {
		rep, err := r.ReadReply()
		if errors.Is(err, errTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rep)
	}
	if len(got) != 2 || strings.Join(got[0].Lines, "|") != "211-Features:| EPRT|211 End" || got[1].Code != 226 {
		t.Fatalf("got %v, want the FEAT reply then 226", got)
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// shortWriter accepts one byte less than asked.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return max(len(p)-1, 0), nil }

// countingWriter records each Write call.
type countingWriter struct{ writes []string }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func TestWriter(t *testing.T) {
	t.Run("one write per command and reply", func(t *testing.T) {
		var cw countingWriter
		w := NewWriter(&cw)
		if err := w.WriteCommand(Command{Verb: "EPSV"}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteReply(NewReply(211, "Features:", " EPRT", "End")); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTelnetAbort(); err != nil {
			t.Fatal(err)
		}
		want := []string{"EPSV\r\n", "211-Features:\r\n EPRT\r\n211 End\r\n", "\xff\xf4\xff\xf2"}
		if strings.Join(cw.writes, "|") != strings.Join(want, "|") {
			t.Fatalf("writes = %q, want %q", cw.writes, want)
		}
	})
	t.Run("invalid command not written", func(t *testing.T) {
		var cw countingWriter
		if err := NewWriter(&cw).WriteCommand(Command{Verb: "RETR", Arg: "x\r\nDELE y"}); err == nil || len(cw.writes) != 0 {
			t.Fatalf("err = %v, writes = %q; want an error and no write", err, cw.writes)
		}
	})
	t.Run("invalid reply not written", func(t *testing.T) {
		var cw countingWriter
		if err := NewWriter(&cw).WriteReply(&Reply{Code: 200, Lines: []string{"200 a\nb"}}); err == nil || len(cw.writes) != 0 {
			t.Fatalf("err = %v, writes = %q; want an error and no write", err, cw.writes)
		}
	})
	t.Run("write error", func(t *testing.T) {
		if err := NewWriter(failWriter{}).WriteReply(NewReply(200, "ok")); err == nil {
			t.Fatal("want an error")
		}
		if err := NewWriter(failWriter{}).WriteTelnetAbort(); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("short write", func(t *testing.T) {
		if err := NewWriter(shortWriter{}).WriteCommand(Command{Verb: "NOOP"}); !errors.Is(err, io.ErrShortWrite) {
			t.Fatalf("err = %v, want io.ErrShortWrite", err)
		}
	})
}

// TestCommandRoundTripThroughReader checks Writer output read back by a Reader.
func TestCommandRoundTripThroughReader(t *testing.T) {
	cmds := []Command{
		{Verb: "USER", Arg: "alice"},
		{Verb: "PASS", Arg: "p\xffss word"},
		{Verb: "CWD", Arg: " spaced "},
		{Verb: "NOOP"},
		{Verb: "RETR", Arg: "Grüße.txt"},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, c := range cmds {
		if err := w.WriteCommand(c); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, Limits{})
	for _, want := range cmds {
		got, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		if got.Verb != want.Verb || got.Arg != want.Arg || got.Telnet != 0 {
			t.Fatalf("got {%q %q %v}, want {%q %q}", got.Verb, got.Arg, got.Telnet, want.Verb, want.Arg)
		}
	}
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
}

// TestWaitKeepsTheError: a failure Wait meets between replies is the next
// read's, once, and the stream goes on after it; with bytes buffered Wait
// reads nothing.
func TestWaitKeepsTheError(t *testing.T) {
	r := NewReader(&scriptedReader{chunks: []chunk{
		{"220 hi\r\n", errTimeout},
		{"230 ok\r\n", nil},
	}}, Limits{})
	var got []string
	for range 4 {
		r.Wait()
		rep, err := r.ReadReply()
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		got = append(got, strconv.Itoa(rep.Code))
	}
	if want := "220|i/o timeout|230|EOF"; strings.Join(got, "|") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, "|"), want)
	}
	r = NewReader(strings.NewReader("NOOP\r\nPWD\r\n"), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	before := r.Buffered()
	r.Wait()
	if r.Buffered() != before || before == 0 {
		t.Fatalf("Wait with %d bytes buffered left %d", before, r.Buffered())
	}
}
