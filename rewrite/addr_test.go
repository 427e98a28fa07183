package rewrite

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// addrCase is one input of an address parser and what it should give.
type addrCase struct {
	name string
	in   string
	want string // netip.AddrPort text, or "" when an error is expected
	err  error  // ErrSyntax or ErrUnsupportedFamily when want is ""
}

// portCase is one input of a port-only parser.
type portCase struct {
	name string
	in   string
	want uint16 // 0 when an error is expected
	err  error
}

var portCases = []addrCase{
	{name: "RFC 959", in: "192,0,2,10,4,1", want: "192.0.2.10:1025"},
	{name: "high port", in: "198,18,0,1,255,255", want: "198.18.0.1:65535"},
	{name: "zero address (parsed, refused by policy)", in: "0,0,0,0,4,0", want: "0.0.0.0:1024"},
	{name: "leading zeros", in: "010,000,002,001,004,001", want: "10.0.2.1:1025"},
	{name: "low port", in: "192,0,2,10,0,21", want: "192.0.2.10:21"},
	{name: "five fields", in: "192,0,2,10,4", err: ErrSyntax},
	{name: "seven fields", in: "192,0,2,10,4,1,1", err: ErrSyntax},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "empty field", in: "192,0,,10,4,1", err: ErrSyntax},
	{name: "octet over 255", in: "256,0,2,10,4,1", err: ErrSyntax},
	{name: "port byte over 255", in: "192,0,2,10,4,256", err: ErrSyntax},
	{name: "port 0", in: "192,0,2,10,0,0", err: ErrSyntax},
	{name: "plus sign", in: "+192,0,2,10,4,1", err: ErrSyntax},
	{name: "minus sign", in: "192,0,2,10,-4,1", err: ErrSyntax},
	{name: "overflow", in: "192,0,2,10,4,18446744073709551617", err: ErrSyntax},
	{name: "four digits", in: "0192,0,2,10,4,1", err: ErrSyntax},
	{name: "trailing garbage", in: "192,0,2,10,4,1x", err: ErrSyntax},
	{name: "trailing comma", in: "192,0,2,10,4,1,", err: ErrSyntax},
	{name: "trailing space", in: "192,0,2,10,4,1 ", err: ErrSyntax},
	{name: "leading space", in: " 192,0,2,10,4,1", err: ErrSyntax},
	{name: "spaces after commas", in: "192, 0, 2, 10, 4, 1", err: ErrSyntax},
	{name: "dotted address", in: "192.0.2.10,4,1", err: ErrSyntax},
	{name: "hex", in: "0xc0,0,2,10,4,1", err: ErrSyntax},
	{name: "unicode digits", in: "١٩٢,0,2,10,4,1", err: ErrSyntax},
}

func TestParsePORT(t *testing.T) { runAddrCases(t, portCases, ParsePORT) }

// pasvCases are 227 reply texts (Reply.Text()).
var pasvCases = []addrCase{
	{name: "vsftpd", in: "Entering Passive Mode (192,0,2,10,195,149).", want: "192.0.2.10:50069"},
	{name: "proftpd", in: "Entering Passive Mode (192,0,2,10,195,149).", want: "192.0.2.10:50069"},
	{name: "pure-ftpd", in: "Entering Passive Mode (192,0,2,10,195,149)", want: "192.0.2.10:50069"},
	{name: "IIS", in: "Entering Passive Mode (10,0,0,5,200,26).", want: "10.0.0.5:51226"},
	{name: "FileZilla Server", in: "Entering Passive Mode (192,168,1,20,19,137)", want: "192.168.1.20:5001"},
	{name: "BSD ftpd", in: "Entering Passive Mode (198,18,0,2,4,1)", want: "198.18.0.2:1025"},
	{name: "Troll-FTPd style", in: "Passive mode OK (198,18,0,2,4,1)", want: "198.18.0.2:1025"},
	{name: "RFC 1123 equals form", in: "=192,0,2,10,4,1", want: "192.0.2.10:1025"},
	{name: "equals form after text", in: "Entering Passive Mode =192,0,2,10,4,1", want: "192.0.2.10:1025"},
	{name: "no parentheses", in: "Entering Passive Mode 192,0,2,10,4,1", want: "192.0.2.10:1025"},
	{name: "bare numbers", in: "192,0,2,10,4,1", want: "192.0.2.10:1025"},
	{name: "angle brackets", in: "Entering Passive Mode <192,0,2,10,4,1>", want: "192.0.2.10:1025"},
	{name: "text after", in: "Entering Passive Mode (192,0,2,10,4,1). Have a nice day", want: "192.0.2.10:1025"},
	{name: "number in text before", in: "Entering Passive Mode 2 (192,0,2,10,4,1)", want: "192.0.2.10:1025"},
	{name: "numbers after", in: "(192,0,2,10,4,1) in 3 tries", want: "192.0.2.10:1025"},
	{name: "broken server zero address", in: "Entering Passive Mode (0,0,0,0,4,1)", want: "0.0.0.0:1025"},
	{name: "multi-line text", in: "Entering\nPassive Mode (192,0,2,10,4,1)", want: "192.0.2.10:1025"},
	{name: "no address", in: "Entering Passive Mode", err: ErrSyntax},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "five numbers", in: "Entering Passive Mode (192,0,2,10,4)", err: ErrSyntax},
	{name: "seven numbers", in: "Entering Passive Mode (192,0,2,10,4,1,1)", err: ErrSyntax},
	{name: "octet over 255", in: "Entering Passive Mode (300,0,2,10,4,1)", err: ErrSyntax},
	{name: "port 0", in: "Entering Passive Mode (192,0,2,10,0,0)", err: ErrSyntax},
	{name: "minus sign", in: "Entering Passive Mode (-192,0,2,10,4,1)", err: ErrSyntax},
	{name: "minus sign inside", in: "Entering Passive Mode (192,0,2,10,-4,1)", err: ErrSyntax},
	{name: "plus sign", in: "Entering Passive Mode (+192,0,2,10,4,1)", err: ErrSyntax},
	{name: "overflow", in: "Entering Passive Mode (192,0,2,10,4,99999999999999999999)", err: ErrSyntax},
	{name: "letters glued after", in: "Entering Passive Mode (192,0,2,10,4,1x)", err: ErrSyntax},
	{name: "letters glued before", in: "Entering Passive Mode x192,0,2,10,4,1", err: ErrSyntax},
	{name: "decimal glued after", in: "Entering Passive Mode (192,0,2,10,4,1.5)", err: ErrSyntax},
	{name: "dotted address", in: "Entering Passive Mode (192.0.2.10,4,1)", err: ErrSyntax},
	{name: "spaces after commas", in: "Entering Passive Mode (192, 0, 2, 10, 4, 1)", err: ErrSyntax},
	{name: "trailing comma", in: "Entering Passive Mode (192,0,2,10,4,1,)", err: ErrSyntax},
}

func TestParsePASV(t *testing.T) { runAddrCases(t, pasvCases, ParsePASV) }

var eprtCases = []addrCase{
	{name: "RFC 2428 IPv4", in: "|1|132.235.1.2|6275|", want: "132.235.1.2:6275"},
	{name: "RFC 2428 IPv6", in: "|2|1080::8:800:200C:417A|5282|", want: "[1080::8:800:200c:417a]:5282"},
	{name: "other delimiter", in: "!1!198.18.0.1!1025!", want: "198.18.0.1:1025"},
	{name: "delimiter ~", in: "~2~fd00::1~65535~", want: "[fd00::1]:65535"},
	{name: "colon delimiter with IPv4", in: ":1:198.18.0.1:1025:", want: "198.18.0.1:1025"},
	{name: "IPv4-mapped stays IPv6", in: "|2|::ffff:198.18.0.1|1025|", want: "[::ffff:198.18.0.1]:1025"},
	{name: "leading zero port", in: "|1|198.18.0.1|01025|", want: "198.18.0.1:1025"},
	{name: "family 3", in: "|3|198.18.0.1|1025|", err: ErrUnsupportedFamily},
	{name: "family 0", in: "|0|198.18.0.1|1025|", err: ErrUnsupportedFamily},
	{name: "family not a number", in: "|x|198.18.0.1|1025|", err: ErrSyntax},
	{name: "family empty", in: "||198.18.0.1|1025|", err: ErrSyntax},
	{name: "family signed", in: "|+1|198.18.0.1|1025|", err: ErrSyntax},
	{name: "IPv6 address with family 1", in: "|1|fd00::1|1025|", err: ErrSyntax},
	{name: "IPv4 address with family 2", in: "|2|198.18.0.1|1025|", err: ErrSyntax},
	{name: "zone", in: "|2|fe80::1%eth0|1025|", err: ErrSyntax},
	{name: "octet over 255", in: "|1|198.18.0.256|1025|", err: ErrSyntax},
	{name: "octet leading zero", in: "|1|198.018.0.1|1025|", err: ErrSyntax},
	{name: "short IPv4", in: "|1|198.18.1|1025|", err: ErrSyntax},
	{name: "hostname", in: "|1|ftp.example.com|1025|", err: ErrSyntax},
	{name: "port 0", in: "|1|198.18.0.1|0|", err: ErrSyntax},
	{name: "port over 65535", in: "|1|198.18.0.1|65536|", err: ErrSyntax},
	{name: "port overflow", in: "|1|198.18.0.1|99999999999999999999|", err: ErrSyntax},
	{name: "port signed", in: "|1|198.18.0.1|-1025|", err: ErrSyntax},
	{name: "port empty", in: "|1|198.18.0.1||", err: ErrSyntax},
	{name: "missing closing delimiter", in: "|1|198.18.0.1|1025", err: ErrSyntax},
	{name: "trailing garbage", in: "|1|198.18.0.1|1025|x", err: ErrSyntax},
	{name: "extra field", in: "|1|198.18.0.1|1025|1|", err: ErrSyntax},
	{name: "mixed delimiters", in: "|1!198.18.0.1|1025|", err: ErrSyntax},
	{name: "space delimiter", in: " 1 198.18.0.1 1025 ", err: ErrSyntax},
	{name: "DEL delimiter", in: "\x7f1\x7f198.18.0.1\x7f1025\x7f", err: ErrSyntax},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "PORT form", in: "198,18,0,1,4,1", err: ErrSyntax},
}

func TestParseEPRT(t *testing.T) { runAddrCases(t, eprtCases, ParseEPRT) }

var lprtCases = []addrCase{
	{name: "IPv4", in: "4,4,198,18,0,1,2,4,1", want: "198.18.0.1:1025"},
	{name: "IPv6", in: "6,16,253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,4,1", want: "[fd00::1]:1025"},
	{name: "IPv4-mapped IPv6 stays IPv6", in: "6,16,0,0,0,0,0,0,0,0,0,0,255,255,198,18,0,1,2,4,1", want: "[::ffff:198.18.0.1]:1025"},
	{name: "family 5", in: "5,4,198,18,0,1,2,4,1", err: ErrUnsupportedFamily},
	{name: "IPv4 with length 16", in: "4,16,198,18,0,1,2,4,1", err: ErrSyntax},
	{name: "IPv6 with length 4", in: "6,4,198,18,0,1,2,4,1", err: ErrSyntax},
	{name: "port length 3", in: "4,4,198,18,0,1,3,0,4,1", err: ErrSyntax},
	{name: "port length 1", in: "4,4,198,18,0,1,1,4", err: ErrSyntax},
	{name: "too few fields", in: "4,4,198,18,0,1,2,4", err: ErrSyntax},
	{name: "too many fields", in: "4,4,198,18,0,1,2,4,1,7", err: ErrSyntax},
	{name: "IPv6 short", in: "6,16,253,0,0,1,2,4,1", err: ErrSyntax},
	{name: "one field", in: "4", err: ErrSyntax},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "octet over 255", in: "4,4,198,18,0,256,2,4,1", err: ErrSyntax},
	{name: "port 0", in: "4,4,198,18,0,1,2,0,0", err: ErrSyntax},
	{name: "signed", in: "4,4,198,18,0,1,2,+4,1", err: ErrSyntax},
	{name: "overflow", in: "4,4,198,18,0,1,2,4,18446744073709551617", err: ErrSyntax},
	{name: "trailing garbage", in: "4,4,198,18,0,1,2,4,1 ", err: ErrSyntax},
}

func TestParseLPRT(t *testing.T) { runAddrCases(t, lprtCases, ParseLPRT) }

// lpsvCases are 228 reply texts. LPSV is not implemented by vsftpd,
// proftpd, pure-ftpd or FileZilla Server (they answer 500/502); the forms
// below are RFC 1639's, BSD ftpd's (long_passive) and curl's expectation.
var lpsvCases = []addrCase{
	{name: "BSD ftpd IPv4", in: "Entering Long Passive Mode (4,4,198,18,0,2,2,195,149)", want: "198.18.0.2:50069"},
	{name: "BSD ftpd IPv6", in: "Entering Long Passive Mode (6,16,253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,195,149)", want: "[fd00::2]:50069"},
	{name: "with period", in: "Entering Long Passive Mode (4,4,198,18,0,2,2,4,1).", want: "198.18.0.2:1025"},
	{name: "ebftpd wording", in: "Entering passive mode (4,4,198,18,0,2,2,4,1)", want: "198.18.0.2:1025"},
	{name: "no parentheses", in: "Entering Long Passive Mode 4,4,198,18,0,2,2,4,1", want: "198.18.0.2:1025"},
	{name: "unsupported family", in: "Entering Long Passive Mode (5,4,198,18,0,2,2,4,1)", err: ErrUnsupportedFamily},
	{name: "no address", in: "Entering Long Passive Mode", err: ErrSyntax},
	{name: "PASV form", in: "Entering Long Passive Mode (198,18,0,2,4,1)", err: ErrUnsupportedFamily},
	{name: "short", in: "Entering Long Passive Mode (4,4,198,18,0,2,2,4)", err: ErrSyntax},
	{name: "signed", in: "Entering Long Passive Mode (-4,4,198,18,0,2,2,4,1)", err: ErrSyntax},
	{name: "port 0", in: "Entering Long Passive Mode (4,4,198,18,0,2,2,0,0)", err: ErrSyntax},
	{name: "glued garbage", in: "Entering Long Passive Mode (4,4,198,18,0,2,2,4,1abc)", err: ErrSyntax},
}

func TestParseLPSV(t *testing.T) { runAddrCases(t, lpsvCases, ParseLPSV) }

func runAddrCases(t *testing.T, cases []addrCase, parse func(string) (netip.AddrPort, error)) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ap, err := parse(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("parse(%q) = %v, want an error", tt.in, ap)
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("parse(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.in, err)
			}
			if ap.String() != tt.want {
				t.Fatalf("parse(%q) = %v, want %s", tt.in, ap, tt.want)
			}
		})
	}
}

// epsvCases are 229 reply texts.
var epsvCases = []portCase{
	{name: "RFC 2428", in: "Entering Extended Passive Mode (|||6446|)", want: 6446},
	{name: "vsftpd", in: "Entering Extended Passive Mode (|||50069|).", want: 50069},
	{name: "proftpd", in: "Entering Extended Passive Mode (|||50069|)", want: 50069},
	{name: "pure-ftpd", in: "Extended Passive mode OK (|||50069|)", want: 50069},
	{name: "IIS", in: "Entering Extended Passive Mode (|||50001|)", want: 50001},
	{name: "FileZilla Server", in: "Entering Extended Passive Mode (|||5001|)", want: 5001},
	{name: "other delimiter", in: "EPSV ok (!!!2021!)", want: 2021},
	{name: "delimiter #", in: "(###65535#)", want: 65535},
	{name: "parenthesis in the text before", in: "Entering Extended Passive Mode (EPSV) (|||6446|)", want: 6446},
	{name: "text after", in: "Entering Extended Passive Mode (|||6446|) thanks", want: 6446},
	{name: "no parentheses", in: "Entering Extended Passive Mode |||6446|", err: ErrSyntax},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "port 0", in: "(|||0|)", err: ErrSyntax},
	{name: "port over 65535", in: "(|||65536|)", err: ErrSyntax},
	{name: "port overflow", in: "(|||99999999999999999999|)", err: ErrSyntax},
	{name: "port signed", in: "(|||+6446|)", err: ErrSyntax},
	{name: "port not a number", in: "(|||x|)", err: ErrSyntax},
	{name: "port empty", in: "(||||)", err: ErrSyntax},
	{name: "address given", in: "(|1|198.18.0.1|6446|)", err: ErrSyntax},
	{name: "protocol given", in: "(|1||6446|)", err: ErrSyntax},
	{name: "mixed delimiters", in: "(!!!2021|)", err: ErrSyntax},
	{name: "missing closing parenthesis", in: "(|||6446|", err: ErrSyntax},
	{name: "garbage before closing parenthesis", in: "(|||6446|x)", err: ErrSyntax},
	{name: "space delimiter", in: "(   6446 )", err: ErrSyntax},
}

func TestParseEPSV(t *testing.T) { runPortCases(t, epsvCases, ParseEPSV) }

// spsvCases are texts of the 227 reply to SPSV.
var spsvCases = []portCase{
	{name: "pure-ftpd", in: "50069", want: 50069},
	{name: "surrounding spaces", in: " 50069 ", want: 50069},
	{name: "parenthesised", in: "Entering Single Port Passive Mode (50069)", want: 50069},
	{name: "period after", in: "Port 50069.", want: 50069},
	{name: "leading zeros", in: "01025", want: 1025},
	{name: "empty", in: "", err: ErrSyntax},
	{name: "no number", in: "Entering Passive Mode", err: ErrSyntax},
	{name: "port 0", in: "0", err: ErrSyntax},
	{name: "over 65535", in: "65536", err: ErrSyntax},
	{name: "overflow", in: "99999999999999999999", err: ErrSyntax},
	{name: "signed", in: "-5000", err: ErrSyntax},
	{name: "plus", in: "+5000", err: ErrSyntax},
	{name: "PASV reply", in: "Entering Passive Mode (192,0,2,10,4,1)", err: ErrSyntax},
	{name: "two numbers", in: "5000 5001", err: ErrSyntax},
	{name: "trailing comma", in: "5000,", err: ErrSyntax},
	{name: "glued letters", in: "5000abc", err: ErrSyntax},
	{name: "decimal", in: "5000.5", err: ErrSyntax},
}

func TestParseSPSV(t *testing.T) { runPortCases(t, spsvCases, ParseSPSV) }

func runPortCases(t *testing.T, cases []portCase, parse func(string) (uint16, error)) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(tt.in)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("parse(%q) = %d, want an error", tt.in, p)
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("parse(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.in, err)
			}
			if p != tt.want {
				t.Fatalf("parse(%q) = %d, want %d", tt.in, p, tt.want)
			}
		})
	}
}

var epsvArgCases = []struct {
	name string
	in   string
	want EPSVArg
	err  error
}{
	{name: "none", in: "", want: EPSVArg{}},
	{name: "IPv4", in: "1", want: EPSVArg{Family: 1}},
	{name: "IPv6", in: "2", want: EPSVArg{Family: 2}},
	{name: "ALL", in: "ALL", want: EPSVArg{All: true}},
	{name: "all lower case", in: "all", want: EPSVArg{All: true}},
	{name: "All mixed case", in: "All", want: EPSVArg{All: true}},
	{name: "family 3", in: "3", err: ErrUnsupportedFamily},
	{name: "family 0", in: "0", err: ErrUnsupportedFamily},
	{name: "family 999", in: "999", err: ErrUnsupportedFamily},
	{name: "overflow", in: "18446744073709551617", err: ErrSyntax},
	{name: "signed", in: "+1", err: ErrSyntax},
	{name: "negative", in: "-1", err: ErrSyntax},
	{name: "trailing space", in: "1 ", err: ErrSyntax},
	{name: "ALL with garbage", in: "ALLX", err: ErrSyntax},
	{name: "word", in: "IPv4", err: ErrSyntax},
}

func TestParseEPSVArg(t *testing.T) {
	for _, tt := range epsvArgCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEPSVArg(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseEPSVArg(%q) = %+v, %v; want error %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseEPSVArg(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	v4 := netip.MustParseAddrPort("198.18.0.1:1025")
	v6 := netip.MustParseAddrPort("[fd00::1]:50069")
	mapped := netip.MustParseAddrPort("[::ffff:198.18.0.1]:1025")
	tests := []struct {
		name    string
		format  func(netip.AddrPort) (string, error)
		in      netip.AddrPort
		want    string
		wantErr bool
	}{
		{name: "PORT", format: FormatPORT, in: v4, want: "198,18,0,1,4,1"},
		{name: "PORT unmaps IPv4-mapped", format: FormatPORT, in: mapped, want: "198,18,0,1,4,1"},
		{name: "PORT IPv6", format: FormatPORT, in: v6, wantErr: true},
		{name: "PORT port 0", format: FormatPORT, in: netip.AddrPortFrom(v4.Addr(), 0), wantErr: true},
		{name: "PORT invalid", format: FormatPORT, in: netip.AddrPort{}, wantErr: true},
		{name: "PASV", format: FormatPASV, in: netip.MustParseAddrPort("192.0.2.10:50069"), want: "Entering Passive Mode (192,0,2,10,195,149)."},
		{name: "PASV IPv6", format: FormatPASV, in: v6, wantErr: true},
		{name: "EPRT IPv4", format: FormatEPRT, in: v4, want: "|1|198.18.0.1|1025|"},
		{name: "EPRT IPv6", format: FormatEPRT, in: v6, want: "|2|fd00::1|50069|"},
		{name: "EPRT IPv4-mapped stays IPv6", format: FormatEPRT, in: mapped, want: "|2|::ffff:198.18.0.1|1025|"},
		{name: "EPRT zone", format: FormatEPRT, in: netip.MustParseAddrPort("[fe80::1%eth0]:1025"), wantErr: true},
		{name: "EPRT port 0", format: FormatEPRT, in: netip.AddrPortFrom(v6.Addr(), 0), wantErr: true},
		{name: "LPRT IPv4", format: FormatLPRT, in: v4, want: "4,4,198,18,0,1,2,4,1"},
		{name: "LPRT IPv6", format: FormatLPRT, in: v6, want: "6,16,253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,195,149"},
		{name: "LPRT zone", format: FormatLPRT, in: netip.MustParseAddrPort("[fe80::1%eth0]:1025"), wantErr: true},
		{name: "LPSV IPv4", format: FormatLPSV, in: v4, want: "Entering Long Passive Mode (4,4,198,18,0,1,2,4,1)"},
		{name: "LPSV invalid", format: FormatLPSV, in: netip.AddrPort{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.format(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("format(%v) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("format(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	t.Run("EPSV", func(t *testing.T) {
		if got := FormatEPSV(6446); got != "Entering Extended Passive Mode (|||6446|)" {
			t.Fatalf("FormatEPSV = %q", got)
		}
	})
	t.Run("SPSV", func(t *testing.T) {
		if got := FormatSPSV(50069); got != "50069" {
			t.Fatalf("FormatSPSV = %q", got)
		}
	})
}

// TestAddressRoundTrip checks parse(format(x)) == x for every valid case of
// every parser, and that the formatted text is a valid reply or command.
func TestAddressRoundTrip(t *testing.T) {
	type pair struct {
		name   string
		cases  []addrCase
		format func(netip.AddrPort) (string, error)
		parse  func(string) (netip.AddrPort, error)
		verb   string // command to carry the text, or "" for a reply
		code   int
	}
	pairs := []pair{
		{name: "PORT", cases: portCases, format: FormatPORT, parse: ParsePORT, verb: "PORT"},
		{name: "PASV", cases: pasvCases, format: FormatPASV, parse: ParsePASV, code: 227},
		{name: "EPRT", cases: eprtCases, format: FormatEPRT, parse: ParseEPRT, verb: "EPRT"},
		{name: "LPRT", cases: lprtCases, format: FormatLPRT, parse: ParseLPRT, verb: "LPRT"},
		{name: "LPSV", cases: lpsvCases, format: FormatLPSV, parse: ParseLPSV, code: 228},
	}
	for _, p := range pairs {
		for _, tt := range p.cases {
			if tt.want == "" {
				continue
			}
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				ap, err := p.parse(tt.in)
				if err != nil {
					t.Fatal(err)
				}
				s, err := p.format(ap)
				if err != nil {
					t.Fatal(err)
				}
				checkCarried(t, s, p.verb, p.code)
				back, err := p.parse(s)
				if err != nil || back != ap {
					t.Fatalf("parse(format(%v)) = %v, %v", ap, back, err)
				}
			})
		}
	}
	for _, tt := range epsvCases {
		if tt.want == 0 {
			continue
		}
		t.Run("EPSV/"+tt.name, func(t *testing.T) {
			s := FormatEPSV(tt.want)
			checkCarried(t, s, "", 229)
			if back, err := ParseEPSV(s); err != nil || back != tt.want {
				t.Fatalf("ParseEPSV(FormatEPSV(%d)) = %d, %v", tt.want, back, err)
			}
		})
	}
	for _, tt := range spsvCases {
		if tt.want == 0 {
			continue
		}
		t.Run("SPSV/"+tt.name, func(t *testing.T) {
			s := FormatSPSV(tt.want)
			checkCarried(t, s, "", 227)
			if back, err := ParseSPSV(s); err != nil || back != tt.want {
				t.Fatalf("ParseSPSV(FormatSPSV(%d)) = %d, %v", tt.want, back, err)
			}
		})
	}
}

// checkCarried checks that s can travel in a command or a reply: no CR or
// LF, and the wire form reads back to the same text.
func checkCarried(t *testing.T, s, verb string, code int) {
	t.Helper()
	if strings.ContainsAny(s, "\r\n\x00") {
		t.Fatalf("formatted text %q contains CR, LF or NUL", s)
	}
	if verb != "" {
		b, err := Command{Verb: verb, Arg: s}.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewReader(strings.NewReader(string(b)), Limits{}).ReadCommand()
		if err != nil || c.Arg != s {
			t.Fatalf("command read back %q, %v; want argument %q", c.Arg, err, s)
		}
		return
	}
	b, err := NewReply(code, s).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(strings.NewReader(string(b)), Limits{}).ReadReply()
	if err != nil || r.Text() != s {
		t.Fatalf("reply read back %v, %v; want text %q", r, err, s)
	}
}
