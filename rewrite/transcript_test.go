package rewrite

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// transcriptStep is one command and the reply the server gave to it.
type transcriptStep struct {
	cmd    string   // "" for the greeting
	reply  []string // reply lines as the server sent them
	expect string   // expected parse of the reply ("" if none given)
	line   int      // line in the file of the reply's first line
}

func loadTranscript(t *testing.T, path string) []transcriptStep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		steps []transcriptStep
		cmd   string
		cur   *transcriptStep
		n     int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		l := sc.Text()
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "> "):
			cmd, cur = l[2:], nil
		case strings.HasPrefix(l, "< "):
			if cur == nil {
				steps = append(steps, transcriptStep{cmd: cmd, line: n})
				cur = &steps[len(steps)-1]
			}
			cur.reply = append(cur.reply, l[2:])
		case strings.HasPrefix(l, "= "):
			if cur == nil {
				t.Fatalf("%s:%d: expectation without a reply", path, n)
			}
			cur.expect = l[2:]
		default:
			t.Fatalf("%s:%d: unknown line %q", path, n, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return steps
}

// TestServerTranscripts replays conversations captured from real servers
// (vsftpd, proftpd, pure-ftpd, GNU inetutils ftpd; see the files' headers):
// every reply is read back exactly, written back byte for byte, and the
// passive-mode replies and FEAT lists parse to what an independent script
// computed.
func TestServerTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) < 8 {
		t.Fatalf("transcripts: %v, %d files", err, len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			steps := loadTranscript(t, path)
			var wire strings.Builder
			for _, s := range steps {
				for _, l := range s.reply {
					wire.WriteString(l + "\r\n")
				}
			}
			r := NewReader(strings.NewReader(wire.String()), Limits{})
			for _, s := range steps {
				where := path + ":" + strconv.Itoa(s.line)
				if s.cmd != "" {
					checkTranscriptCommand(t, where, s.cmd)
				}
				rep, err := r.ReadReply()
				if err != nil {
					t.Fatalf("%s: ReadReply: %v", where, err)
				}
				if !slices.Equal(rep.Lines, s.reply) {
					t.Fatalf("%s: read %q, want %q", where, rep.Lines, s.reply)
				}
				b, err := rep.Bytes()
				if err != nil || string(b) != strings.Join(s.reply, "\r\n")+"\r\n" {
					t.Fatalf("%s: written back %q, %v", where, b, err)
				}
				checkTranscriptReply(t, where, s, rep)
			}
			if _, err := r.ReadReply(); err == nil {
				t.Fatalf("%s: data left after the last reply", path)
			}
		})
	}
}

func checkTranscriptCommand(t *testing.T, where, line string) {
	t.Helper()
	c, err := ParseCommand(line)
	if err != nil {
		t.Fatalf("%s: ParseCommand(%q): %v", where, line, err)
	}
	if b, err := c.Bytes(); err != nil || string(b) != line+"\r\n" {
		t.Fatalf("%s: command written back as %q, %v", where, b, err)
	}
	if c.Info().Class == ClassUnknown {
		t.Fatalf("%s: %s not in the command table", where, c.Verb)
	}
	var perr error
	switch c.Verb {
	case "PORT":
		_, perr = ParsePORT(c.Arg)
	case "EPRT":
		if strings.HasPrefix(c.Arg, "|3|") {
			_, perr = ParseEPRT(c.Arg)
			if perr == nil {
				t.Fatalf("%s: ParseEPRT(%q) accepted protocol 3", where, c.Arg)
			}
			perr = nil
		} else {
			_, perr = ParseEPRT(c.Arg)
		}
	case "LPRT":
		_, perr = ParseLPRT(c.Arg)
	case "EPSV":
		a, err := ParseEPSVArg(c.Arg)
		switch c.Arg {
		case "3":
			if err == nil {
				t.Fatalf("%s: EPSV 3 accepted: %+v", where, a)
			}
		case "x":
			if err == nil {
				t.Fatalf("%s: EPSV x accepted: %+v", where, a)
			}
		default:
			perr = err
		}
	}
	if perr != nil {
		t.Fatalf("%s: %v", where, perr)
	}
}

func checkTranscriptReply(t *testing.T, where string, s transcriptStep, rep *Reply) {
	t.Helper()
	verb := strings.ToUpper(strings.SplitN(s.cmd, " ", 2)[0])
	var got string
	var err error
	switch {
	case verb == "FEAT" && rep.Code == 211:
		var fs []Feature
		fs, err = ParseFeatures(rep)
		var names []string
		for _, f := range fs {
			names = append(names, f.Name)
		}
		got = strings.Join(names, " ")
	case rep.Code == 227:
		ap, e := ParsePASV(rep.Text())
		got, err = ap.String(), e
	case rep.Code == 228:
		ap, e := ParseLPSV(rep.Text())
		got, err = ap.String(), e
	case rep.Code == 229:
		p, e := ParseEPSV(rep.Text())
		got, err = strconv.Itoa(int(p)), e
	default:
		if s.expect != "" {
			t.Fatalf("%s: expectation %q for a reply not checked", where, s.expect)
		}
		return
	}
	switch {
	case s.expect == "":
		t.Fatalf("%s: no expectation for reply %q", where, rep.Lines)
	case s.expect == "error":
		if err == nil {
			t.Fatalf("%s: parsed %q as %s, want an error", where, rep.Lines[0], got)
		}
	case err != nil:
		t.Fatalf("%s: %v", where, err)
	case got != s.expect:
		t.Fatalf("%s: parsed %q as %q, want %q", where, rep.Lines[0], got, s.expect)
	}
}
