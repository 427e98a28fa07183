package rewrite

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// Fuzz targets. Each is seeded from the table tests and checks, for any
// input: no panic; what parses formats again and parses back to the same
// value; formatted output never holds CR, LF or NUL inside a line; the
// reader's limits hold; errors are of the documented kinds.

// fuzzLimits turns a fuzzed number into small limits, so that the limits
// are actually reached. An odd number also limits the lines of a reply.
func fuzzLimits(n uint16) Limits {
	lim := Limits{MaxLine: 8 + int(n%256), MaxReply: 16 + int(n/256)*8}
	if n&1 == 1 {
		lim.MaxReplyLines = 3 + int(n>>8)%16
	}
	return lim
}

// seed caps a seed input at 512 bytes: the fuzzed limits are smaller than
// that, and big inputs make the fuzzer spend its time minimising them.
func seed(s string) []byte {
	return []byte(s[:min(len(s), 512)])
}

// checkReaderErr fails unless err is one the Reader documents.
func checkReaderErr(t *testing.T, err error) {
	t.Helper()
	var pe *ProtocolError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, ErrLineTooLong), errors.Is(err, ErrReplyTooLong):
	case errors.As(err, &pe):
		if strings.ContainsAny(pe.Line, "\r\n\x00") {
			t.Fatalf("ProtocolError.Line not sanitised: %q", pe.Line)
		}
	default:
		t.Fatalf("undocumented error %T: %v", err, err)
	}
}

func FuzzReadCommand(f *testing.F) {
	for _, tt := range readCommandCases {
		f.Add(seed(tt.input), uint16(tt.lim.MaxLine))
	}
	f.Add([]byte("\xff\xf4\xff\xf2ABOR\r\n\xff\xfa\x18\xff\xf0NOOP\n"), uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		lim := fuzzLimits(n)
		r := NewReader(bytes.NewReader(data), lim)
		for range len(data) + 2 { // every call consumes input or ends
			c, err := r.ReadCommand()
			if err != nil {
				checkReaderErr(t, err)
				if err == io.EOF {
					return
				}
				continue
			}
			if n := len(c.Verb) + len(c.Arg); n > lim.MaxLine || c.Arg != "" && n+1 > lim.MaxLine {
				t.Fatalf("command %q %q longer than MaxLine %d", c.Verb, c.Arg, lim.MaxLine)
			}
			checkCommand(t, c)
		}
		if _, err := r.ReadCommand(); err != io.EOF {
			t.Fatalf("reader did not reach EOF within %d calls: %v", len(data)+2, err)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, tt := range readCommandCases {
		for _, l := range strings.Split(tt.input, "\n") {
			f.Add(strings.TrimSuffix(l, "\r"))
		}
	}
	f.Add("PASS secret")
	f.Add("\xff\xf4\xffABOR")
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T: %v, want *ProtocolError", err, err)
			}
			return
		}
		checkCommand(t, c)
	})
}

// checkCommand checks a parsed command: wire form valid and parsed back to
// the same command, String safe for logs and free of secrets.
func checkCommand(t *testing.T, c Command) {
	t.Helper()
	if c.Verb == "" || strings.ContainsAny(c.Verb+c.Arg, "\r\n\x00") {
		t.Fatalf("parsed command holds forbidden bytes: %q %q", c.Verb, c.Arg)
	}
	b, err := c.Bytes()
	if err != nil {
		t.Fatalf("Bytes of parsed command %q %q: %v", c.Verb, c.Arg, err)
	}
	body, ok := bytes.CutSuffix(b, []byte("\r\n"))
	if !ok || bytes.ContainsAny(body, "\r\n\x00") {
		t.Fatalf("wire form %q not one CRLF-terminated line", b)
	}
	back, err := ParseCommand(string(body))
	if err != nil || back.Verb != c.Verb || back.Arg != c.Arg {
		t.Fatalf("parse(format(%q %q)) = %q %q, %v", c.Verb, c.Arg, back.Verb, back.Arg, err)
	}
	s := c.String()
	if strings.ContainsAny(s, "\r\n\x00\x1b") {
		t.Fatalf("String() not sanitised: %q", s)
	}
	if c.Info().Secret && c.Arg != "" && s != sanitize(c.Verb, 0)+" REDACTED" {
		t.Fatalf("String() %q shows the secret argument", s)
	}
}

func FuzzReadReply(f *testing.F) {
	for _, tt := range readReplyCases {
		f.Add(seed(tt.input), uint16(tt.lim.MaxLine)|uint16(tt.lim.MaxReply/8)<<8)
	}
	for _, tt := range featReplies {
		f.Add(seed(tt.wire), uint16(0xfffe))
	}
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		lim := fuzzLimits(n)
		r := NewReader(bytes.NewReader(data), lim)
		maxLines := lim.maxReplyLines()
		for range len(data) + 2 {
			rep, err := r.ReadReply()
			if err != nil {
				checkReaderErr(t, err)
				if err == io.EOF {
					return
				}
				continue
			}
			size := 0
			for _, l := range rep.Lines {
				if len(l) > lim.MaxLine {
					t.Fatalf("line of %d bytes over MaxLine %d", len(l), lim.MaxLine)
				}
				size += len(l) + 1 // at least a LF each
			}
			if size > lim.MaxReply {
				t.Fatalf("reply of at least %d bytes over MaxReply %d", size, lim.MaxReply)
			}
			if len(rep.Lines) > maxLines {
				t.Fatalf("reply of %d lines over MaxReplyLines %d", len(rep.Lines), maxLines)
			}
			checkReply(t, rep)
		}
		if _, err := r.ReadReply(); err != io.EOF {
			t.Fatalf("reader did not reach EOF within %d calls: %v", len(data)+2, err)
		}
	})
}

// checkReply checks a reply read from the wire: it formats, and the wire
// form reads back to the same lines.
func checkReply(t *testing.T, rep *Reply) {
	t.Helper()
	if rep.Code < 100 || rep.Code > 599 || len(rep.Lines) == 0 {
		t.Fatalf("bad reply %d %q", rep.Code, rep.Lines)
	}
	b, err := rep.Bytes()
	if err != nil {
		t.Fatalf("Bytes of a reply read from the wire: %v", err)
	}
	back, err := NewReader(bytes.NewReader(b), Limits{MaxLine: len(b), MaxReply: len(b)}).ReadReply()
	if err != nil || back.Code != rep.Code || strings.Join(back.Lines, "\n") != strings.Join(rep.Lines, "\n") {
		t.Fatalf("reply %q read back as %v, %v", rep.Lines, back, err)
	}
	if strings.ContainsAny(rep.String(), "\r\n\x00") {
		t.Fatalf("String() not sanitised: %q", rep.String())
	}
}

// checkAddrErr fails unless err wraps ErrSyntax or ErrUnsupportedFamily.
func checkAddrErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnsupportedFamily) {
		t.Fatalf("error %v wraps neither ErrSyntax nor ErrUnsupportedFamily", err)
	}
	if strings.ContainsAny(err.Error(), "\r\n\x00") {
		t.Fatalf("error message not sanitised: %q", err.Error())
	}
}

// fuzzAddr is the body of the address-parser fuzz targets.
func fuzzAddr(t *testing.T, in string, parse func(string) (netip.AddrPort, error), format func(netip.AddrPort) (string, error), want4 bool) {
	ap, err := parse(in)
	if err != nil {
		checkAddrErr(t, err)
		return
	}
	if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Zone() != "" {
		t.Fatalf("parse(%q) = %v: invalid, port 0 or zone", in, ap)
	}
	if want4 && !ap.Addr().Is4() {
		t.Fatalf("parse(%q) = %v, want IPv4", in, ap)
	}
	s, err := format(ap)
	if err != nil {
		t.Fatalf("format(parse(%q) = %v): %v", in, ap, err)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		t.Fatalf("format(%v) = %q holds CR, LF or NUL", ap, s)
	}
	back, err := parse(s)
	if err != nil || back != ap {
		t.Fatalf("parse(format(%v)) = %v, %v", ap, back, err)
	}
}

func addSeeds(f *testing.F, cases []addrCase) {
	for _, tt := range cases {
		f.Add(tt.in)
	}
}

func FuzzParsePORT(f *testing.F) {
	addSeeds(f, portCases)
	f.Fuzz(func(t *testing.T, in string) { fuzzAddr(t, in, ParsePORT, FormatPORT, true) })
}

func FuzzParsePASV(f *testing.F) {
	addSeeds(f, pasvCases)
	f.Fuzz(func(t *testing.T, in string) { fuzzAddr(t, in, ParsePASV, FormatPASV, true) })
}

func FuzzParseEPRT(f *testing.F) {
	addSeeds(f, eprtCases)
	f.Fuzz(func(t *testing.T, in string) { fuzzAddr(t, in, ParseEPRT, FormatEPRT, false) })
}

func FuzzParseLPRT(f *testing.F) {
	addSeeds(f, lprtCases)
	f.Fuzz(func(t *testing.T, in string) { fuzzAddr(t, in, ParseLPRT, FormatLPRT, false) })
}

func FuzzParseLPSV(f *testing.F) {
	addSeeds(f, lpsvCases)
	f.Fuzz(func(t *testing.T, in string) { fuzzAddr(t, in, ParseLPSV, FormatLPSV, false) })
}

// fuzzPort is the body of the port-only parser fuzz targets.
func fuzzPort(t *testing.T, in string, parse func(string) (uint16, error), format func(uint16) string) {
	p, err := parse(in)
	if err != nil {
		checkAddrErr(t, err)
		return
	}
	if p == 0 {
		t.Fatalf("parse(%q) = port 0", in)
	}
	s := format(p)
	if strings.ContainsAny(s, "\r\n\x00") {
		t.Fatalf("format(%d) = %q holds CR, LF or NUL", p, s)
	}
	if back, err := parse(s); err != nil || back != p {
		t.Fatalf("parse(format(%d)) = %d, %v", p, back, err)
	}
}

func FuzzParseEPSV(f *testing.F) {
	for _, tt := range epsvCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) { fuzzPort(t, in, ParseEPSV, FormatEPSV) })
}

func FuzzParseSPSV(f *testing.F) {
	for _, tt := range spsvCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) { fuzzPort(t, in, ParseSPSV, FormatSPSV) })
}

func FuzzParseEPSVArg(f *testing.F) {
	for _, tt := range epsvArgCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := ParseEPSVArg(in)
		if err != nil {
			checkAddrErr(t, err)
			return
		}
		if a.All && a.Family != 0 || !a.All && a.Family != 0 && a.Family != 1 && a.Family != 2 {
			t.Fatalf("ParseEPSVArg(%q) = %+v", in, a)
		}
	})
}

// FuzzFormatAddress drives the format functions with arbitrary addresses:
// they either refuse or produce text that parses back to the same address.
func FuzzFormatAddress(f *testing.F) {
	f.Add([]byte{198, 18, 0, 1}, uint16(1025), "")
	f.Add([]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(50069), "")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1}, uint16(1), "")
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(21), "eth0")
	f.Add([]byte{198, 18, 0, 1}, uint16(0), "")
	f.Fuzz(func(t *testing.T, raw []byte, port uint16, zone string) {
		var a netip.Addr
		switch len(raw) {
		case 4:
			a = netip.AddrFrom4([4]byte(raw))
		case 16:
			a = netip.AddrFrom16([16]byte(raw)).WithZone(zone)
		}
		ap := netip.AddrPortFrom(a, port)
		for _, fn := range []struct {
			name   string
			format func(netip.AddrPort) (string, error)
			parse  func(string) (netip.AddrPort, error)
			unmap  bool
		}{
			{"PORT", FormatPORT, ParsePORT, true},
			{"PASV", FormatPASV, ParsePASV, true},
			{"EPRT", FormatEPRT, ParseEPRT, false},
			{"LPRT", FormatLPRT, ParseLPRT, false},
			{"LPSV", FormatLPSV, ParseLPSV, false},
		} {
			s, err := fn.format(ap)
			if err != nil {
				continue
			}
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("%s format(%v) = %q holds CR, LF or NUL", fn.name, ap, s)
			}
			want := ap
			if fn.unmap {
				want = netip.AddrPortFrom(ap.Addr().Unmap(), port)
			}
			if back, err := fn.parse(s); err != nil || back != want {
				t.Fatalf("%s parse(format(%v)) = %v, %v", fn.name, ap, back, err)
			}
		}
		for _, p := range []struct {
			name   string
			format func(uint16) string
			parse  func(string) (uint16, error)
		}{{"EPSV", FormatEPSV, ParseEPSV}, {"SPSV", FormatSPSV, ParseSPSV}} {
			back, err := p.parse(p.format(port))
			if port == 0 {
				if err == nil {
					t.Fatalf("%s: port 0 parsed back as %d", p.name, back)
				}
				continue
			}
			if err != nil || back != port {
				t.Fatalf("%s parse(format(%d)) = %d, %v", p.name, port, back, err)
			}
		}
	})
}

func FuzzFeatures(f *testing.F) {
	for _, tt := range featReplies {
		f.Add([]byte(tt.wire), uint8(0x55))
	}
	f.Fuzz(func(t *testing.T, data []byte, mask uint8) {
		rep, err := NewReader(bytes.NewReader(data), Limits{}).ReadReply()
		if err != nil {
			return
		}
		fs, err := ParseFeatures(rep)
		if err != nil {
			if rep.Code == 211 {
				t.Fatalf("ParseFeatures of a 211 reply read from the wire: %v", err)
			}
			return
		}
		for _, ft := range fs {
			if ft.Name == "" || ft.Name != asciiUpper(ft.Name) || strings.Contains(ft.Name, " ") {
				t.Fatalf("bad feature name %q", ft.Name)
			}
		}
		// Keep a feature when the bit of its position is set in mask.
		i := 0
		var kept []Feature
		filtered := FilterFeatures(rep, func(ft Feature) bool {
			keep := mask&(1<<(i%8)) != 0
			i++
			if keep {
				kept = append(kept, ft)
			}
			return keep
		})
		if _, err := filtered.Bytes(); err != nil {
			t.Fatalf("filtered reply does not format: %v", err)
		}
		got, err := ParseFeatures(filtered)
		if err != nil {
			t.Fatalf("ParseFeatures(filtered): %v", err)
		}
		if len(got) != len(kept) {
			t.Fatalf("filtered features %+v, want %+v", got, kept)
		}
		for j := range got {
			if got[j] != kept[j] {
				t.Fatalf("filtered features %+v, want %+v", got, kept)
			}
		}
	})
}
