package rewrite

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Data-connection addresses.
//
// Parsers are strict about the address itself (field counts, ranges 0..255
// and 1..65535, no signs, no leading or trailing garbage inside the
// argument) and, for replies, lenient about the text around it, because
// real servers word their replies differently:
//
//	vsftpd       227 Entering Passive Mode (192,0,2,10,195,149).
//	             229 Entering Extended Passive Mode (|||50069|).
//	proftpd      227 Entering Passive Mode (192,0,2,10,195,149).
//	             229 Entering Extended Passive Mode (|||50069|)
//	pure-ftpd    227 Entering Passive Mode (192,0,2,10,195,149)
//	             229 Extended Passive mode OK (|||50069|)
//	             227 50069                          (reply to SPSV)
//	IIS          227 Entering Passive Mode (192,0,2,10,195,149).
//	             229 Entering Extended Passive Mode (|||50069|)
//	FileZilla    227 Entering Passive Mode (192,0,2,10,195,149)
//	             229 Entering Extended Passive Mode (|||50069|)
//	BSD ftpd     228 Entering Long Passive Mode (4,4,192,0,2,10,2,195,149)
//	RFC 1123     227 =192,0,2,10,195,149            (any text, first digit starts the address)
//
// Port 0 is refused everywhere: no peer can connect to it. Returned
// AddrPorts are IPv4 (Is4) for PORT, PASV and the IPv4 forms of EPRT, LPRT
// and LPSV; IPv6 forms are returned as IPv6 even when IPv4-mapped.

// parseUint parses 1..maxDigits ASCII digits; no sign, no space.
func parseUint(s string, maxDigits int) (uint64, bool) {
	if s == "" || len(s) > maxDigits {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + uint64(s[i]-'0')
	}
	return n, true
}

// parsePort parses a decimal TCP port 1..65535.
func parsePort(s string) (uint16, error) {
	n, ok := parseUint(s, 5)
	switch {
	case !ok:
		return 0, fmt.Errorf("port %s is not a decimal number: %w", logQuote(s), ErrSyntax)
	case n == 0:
		return 0, fmt.Errorf("port 0: %w", ErrSyntax)
	case n > 65535:
		return 0, fmt.Errorf("port %d out of range: %w", n, ErrSyntax)
	}
	return uint16(n), nil
}

// parseBytes parses comma-separated decimal numbers 0..255.
func parseBytes(s string) ([]byte, error) {
	fields := strings.Split(s, ",")
	out := make([]byte, len(fields))
	for i, f := range fields {
		n, ok := parseUint(f, 3)
		if !ok || n > 255 {
			return nil, fmt.Errorf("field %d %s is not a number 0..255: %w", i+1, logQuote(f), ErrSyntax)
		}
		out[i] = byte(n)
	}
	return out, nil
}

// parseHostPort parses RFC 959 "h1,h2,h3,h4,p1,p2".
func parseHostPort(s string) (netip.AddrPort, error) {
	if n := strings.Count(s, ",") + 1; n != 6 {
		return netip.AddrPort{}, fmt.Errorf("%d fields, want 6: %w", n, ErrSyntax)
	}
	b, err := parseBytes(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port := uint16(b[4])<<8 | uint16(b[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("port 0: %w", ErrSyntax)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port), nil
}

// parseLongHostPort parses RFC 1639 "af,hal,h1,...,hn,pal,p1,p2" for
// af 4 (hal 4) and af 6 (hal 16).
func parseLongHostPort(s string) (netip.AddrPort, error) {
	b, err := parseBytes(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("%d fields, want at least 9: %w", len(b), ErrSyntax)
	}
	af, hal := b[0], int(b[1])
	switch {
	case af == 4 && hal == 4, af == 6 && hal == 16:
	case af == 4 || af == 6:
		return netip.AddrPort{}, fmt.Errorf("address length %d for family %d: %w", hal, af, ErrSyntax)
	default:
		return netip.AddrPort{}, fmt.Errorf("address family %d: %w", af, ErrUnsupportedFamily)
	}
	if want := 2 + hal + 3; len(b) != want {
		return netip.AddrPort{}, fmt.Errorf("%d fields, want %d: %w", len(b), want, ErrSyntax)
	}
	if pal := b[2+hal]; pal != 2 {
		return netip.AddrPort{}, fmt.Errorf("port length %d, want 2: %w", pal, ErrSyntax)
	}
	port := uint16(b[3+hal])<<8 | uint16(b[4+hal])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("port 0: %w", ErrSyntax)
	}
	if af == 4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[2:6])), port), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[2:18])), port), nil
}

// findNumbers returns the first run of digits and commas in a reply text
// that contains a comma, checking that it stands alone: no letter, sign or
// dot directly before it, no letter or sign and no dot followed by a digit
// directly after it. Runs without a comma (a number in the text) are
// skipped.
func findNumbers(text string) (string, error) {
	for i := 0; i < len(text); {
		if !isDigit(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && (isDigit(text[j]) || text[j] == ',') {
			j++
		}
		run := text[i:j]
		if strings.IndexByte(run, ',') < 0 {
			i = j
			continue
		}
		if i > 0 && !boundaryBefore(text[i-1]) {
			return "", fmt.Errorf("unexpected %s before the address: %w", logQuote(text[i-1:i]), ErrSyntax)
		}
		if j < len(text) && !boundaryAfter(text[j:]) {
			return "", fmt.Errorf("unexpected %s after the address: %w", logQuote(text[j:j+1]), ErrSyntax)
		}
		return run, nil
	}
	return "", fmt.Errorf("no address found: %w", ErrSyntax)
}

func boundaryBefore(c byte) bool {
	return !isLetter(c) && c != '+' && c != '-' && c != '.' && c < 0x80
}

func boundaryAfter(s string) bool {
	c := s[0]
	if isLetter(c) || c == '+' || c == '-' || c >= 0x80 {
		return false
	}
	return c != '.' || len(s) == 1 || !isDigit(s[1])
}

// checkFormat checks an address a format function is asked to render.
func checkFormat(ap netip.AddrPort) error {
	switch {
	case !ap.IsValid():
		return errors.New("invalid address")
	case ap.Port() == 0:
		return errors.New("port 0")
	case ap.Addr().Zone() != "":
		return errors.New("address has a zone")
	}
	return nil
}

// ParsePORT parses the argument of PORT, "h1,h2,h3,h4,p1,p2" (RFC 959).
func ParsePORT(arg string) (netip.AddrPort, error) {
	ap, err := parseHostPort(arg)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse PORT %s: %w", logQuote(arg), err)
	}
	return ap, nil
}

// FormatPORT formats an IPv4 (or IPv4-mapped IPv6, which is unmapped)
// address and a non-zero port as the argument of PORT.
func FormatPORT(ap netip.AddrPort) (string, error) {
	s, err := formatHostPort(ap)
	if err != nil {
		return "", fmt.Errorf("format PORT %s: %w", ap, err)
	}
	return s, nil
}

func formatHostPort(ap netip.AddrPort) (string, error) {
	if err := checkFormat(ap); err != nil {
		return "", err
	}
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return "", errors.New("not an IPv4 address")
	}
	b := a.As4()
	p := ap.Port()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", b[0], b[1], b[2], b[3], p>>8, p&0xff), nil
}

// ParsePASV parses the text of a 227 reply (Reply.Text()) and returns the
// address in it: the first comma-separated run of numbers, with or without
// parentheses, with any text before or after, or in the RFC 1123 form
// "=h1,h2,h3,h4,p1,p2".
func ParsePASV(text string) (netip.AddrPort, error) {
	run, err := findNumbers(text)
	var ap netip.AddrPort
	if err == nil {
		ap, err = parseHostPort(run)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse 227 reply %s: %w", logQuote(text), err)
	}
	return ap, nil
}

// FormatPASV formats the text of a 227 reply, as vsftpd and IIS word it:
// "Entering Passive Mode (h1,h2,h3,h4,p1,p2)." The address must be IPv4
// (or IPv4-mapped) and the port non-zero.
func FormatPASV(ap netip.AddrPort) (string, error) {
	s, err := formatHostPort(ap)
	if err != nil {
		return "", fmt.Errorf("format 227 reply %s: %w", ap, err)
	}
	return "Entering Passive Mode (" + s + ").", nil
}

// ParseEPRT parses the argument of EPRT (RFC 2428 §2):
// "<d><af><d><addr><d><port><d>" with any delimiter d in ASCII 33..126,
// af 1 with a dotted IPv4 address or af 2 with an IPv6 address (no zone).
// Another well-formed af is ErrUnsupportedFamily.
func ParseEPRT(arg string) (netip.AddrPort, error) {
	ap, err := parseEPRT(arg)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse EPRT %s: %w", logQuote(arg), err)
	}
	return ap, nil
}

func parseEPRT(arg string) (netip.AddrPort, error) {
	if arg == "" {
		return netip.AddrPort{}, fmt.Errorf("empty argument: %w", ErrSyntax)
	}
	d := arg[0]
	if d < 33 || d > 126 {
		return netip.AddrPort{}, fmt.Errorf("delimiter %#x outside ASCII 33..126: %w", d, ErrSyntax)
	}
	f := strings.Split(arg[1:], string(d))
	if len(f) != 4 || f[3] != "" {
		return netip.AddrPort{}, fmt.Errorf("want <d>af<d>addr<d>port<d>: %w", ErrSyntax)
	}
	af, ok := parseUint(f[0], 3)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("network protocol %s is not a number: %w", logQuote(f[0]), ErrSyntax)
	}
	if af != 1 && af != 2 {
		return netip.AddrPort{}, fmt.Errorf("network protocol %d: %w", af, ErrUnsupportedFamily)
	}
	a, err := netip.ParseAddr(f[1])
	switch {
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("address %s: %w", logQuote(f[1]), ErrSyntax)
	case a.Zone() != "":
		return netip.AddrPort{}, fmt.Errorf("address %s has a zone: %w", logQuote(f[1]), ErrSyntax)
	case af == 1 && !a.Is4():
		return netip.AddrPort{}, fmt.Errorf("address %s is not IPv4 (protocol 1): %w", logQuote(f[1]), ErrSyntax)
	case af == 2 && !a.Is6():
		return netip.AddrPort{}, fmt.Errorf("address %s is not IPv6 (protocol 2): %w", logQuote(f[1]), ErrSyntax)
	}
	port, err := parsePort(f[2])
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, port), nil
}

// FormatEPRT formats the argument of EPRT with the delimiter "|": family 1
// for an IPv4 address, family 2 for an IPv6 one (an IPv4-mapped address
// stays IPv6).
func FormatEPRT(ap netip.AddrPort) (string, error) {
	if err := checkFormat(ap); err != nil {
		return "", fmt.Errorf("format EPRT %s: %w", ap, err)
	}
	af := "2"
	if ap.Addr().Is4() {
		af = "1"
	}
	return "|" + af + "|" + ap.Addr().String() + "|" + strconv.Itoa(int(ap.Port())) + "|", nil
}

// ParseEPSV parses the text of a 229 reply (RFC 2428 §3) and returns the
// port: the first "(<d><d><d><port><d>)" in the text, any delimiter d in
// ASCII 33..126, text before and after allowed. The network protocol and
// address fields must be empty, as RFC 2428 requires.
func ParseEPSV(text string) (uint16, error) {
	err := fmt.Errorf("no (<d><d><d>port<d>) found: %w", ErrSyntax)
	for i := 0; i < len(text); i++ {
		if text[i] != '(' {
			continue
		}
		port, e := parseEPSVParen(text[i+1:])
		if e == nil {
			return port, nil
		}
		err = e
	}
	return 0, fmt.Errorf("parse 229 reply %s: %w", logQuote(text), err)
}

func parseEPSVParen(s string) (uint16, error) {
	if len(s) < 5 {
		return 0, fmt.Errorf("too short: %w", ErrSyntax)
	}
	d := s[0]
	if d < 33 || d > 126 {
		return 0, fmt.Errorf("delimiter %#x outside ASCII 33..126: %w", d, ErrSyntax)
	}
	if s[1] != d || s[2] != d {
		return 0, fmt.Errorf("network protocol and address must be empty: %w", ErrSyntax)
	}
	rest := s[3:]
	k := strings.IndexByte(rest, d)
	if k < 0 {
		return 0, fmt.Errorf("no delimiter after the port: %w", ErrSyntax)
	}
	port, err := parsePort(rest[:k])
	if err != nil {
		return 0, err
	}
	if k+1 >= len(rest) || rest[k+1] != ')' {
		return 0, fmt.Errorf("no ')' after the last delimiter: %w", ErrSyntax)
	}
	return port, nil
}

// FormatEPSV formats the text of a 229 reply:
// "Entering Extended Passive Mode (|||port|)". Port 0 yields a text that
// ParseEPSV refuses.
func FormatEPSV(port uint16) string {
	return "Entering Extended Passive Mode (|||" + strconv.Itoa(int(port)) + "|)"
}

// EPSVArg is the argument of EPSV (RFC 2428 §3).
type EPSVArg struct {
	All    bool // "EPSV ALL": from now on only EPSV may set up data connections
	Family int  // 0 = none given, 1 = IPv4, 2 = IPv6
}

// ParseEPSVArg parses the argument of EPSV: "", "1", "2" or "ALL" (any
// case). Another number is ErrUnsupportedFamily (the server answers 522),
// anything else ErrSyntax.
func ParseEPSVArg(arg string) (EPSVArg, error) {
	switch {
	case arg == "":
		return EPSVArg{}, nil
	case strings.EqualFold(arg, "ALL"):
		return EPSVArg{All: true}, nil
	}
	n, ok := parseUint(arg, 3)
	switch {
	case !ok:
		return EPSVArg{}, fmt.Errorf("parse EPSV argument %s: want 1, 2 or ALL: %w", logQuote(arg), ErrSyntax)
	case n != 1 && n != 2:
		return EPSVArg{}, fmt.Errorf("parse EPSV argument %s: network protocol %d: %w", logQuote(arg), n, ErrUnsupportedFamily)
	}
	return EPSVArg{Family: int(n)}, nil
}

// ParseLPRT parses the argument of LPRT (RFC 1639):
// "4,4,h1,h2,h3,h4,2,p1,p2" or "6,16,h1,...,h16,2,p1,p2". Another address
// family is ErrUnsupportedFamily.
func ParseLPRT(arg string) (netip.AddrPort, error) {
	ap, err := parseLongHostPort(arg)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse LPRT %s: %w", logQuote(arg), err)
	}
	return ap, nil
}

// FormatLPRT formats the argument of LPRT: family 4 for an IPv4 address,
// family 6 for an IPv6 one (an IPv4-mapped address stays IPv6).
func FormatLPRT(ap netip.AddrPort) (string, error) {
	if err := checkFormat(ap); err != nil {
		return "", fmt.Errorf("format LPRT %s: %w", ap, err)
	}
	var b strings.Builder
	if a := ap.Addr(); a.Is4() {
		b.WriteString("4,4")
		for _, x := range a.As4() {
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(int(x)))
		}
	} else {
		b.WriteString("6,16")
		for _, x := range a.As16() {
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(int(x)))
		}
	}
	p := ap.Port()
	fmt.Fprintf(&b, ",2,%d,%d", p>>8, p&0xff)
	return b.String(), nil
}

// ParseLPSV parses the text of a 228 reply (RFC 1639) and returns the
// address in it, found like ParsePASV finds its own.
func ParseLPSV(text string) (netip.AddrPort, error) {
	run, err := findNumbers(text)
	var ap netip.AddrPort
	if err == nil {
		ap, err = parseLongHostPort(run)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parse 228 reply %s: %w", logQuote(text), err)
	}
	return ap, nil
}

// FormatLPSV formats the text of a 228 reply:
// "Entering Long Passive Mode (4,4,h1,h2,h3,h4,2,p1,p2)".
func FormatLPSV(ap netip.AddrPort) (string, error) {
	s, err := FormatLPRT(ap)
	if err != nil {
		return "", fmt.Errorf("format 228 reply: %w", err)
	}
	return "Entering Long Passive Mode (" + s + ")", nil
}

// ParseSPSV parses the text of the reply to SPSV, single-port passive mode
// (draft-rosenau-ftp-single-port). The reply has code 227 but carries only
// a decimal port: pure-ftpd, which advertises SPSV in FEAT, sends
// "227 50069". The text must hold exactly one number, 1..65535, with no
// sign, letter or comma next to it; any other text around it is allowed.
// The data connection goes to the address of the control connection.
func ParseSPSV(text string) (uint16, error) {
	port, err := parseSPSV(text)
	if err != nil {
		return 0, fmt.Errorf("parse SPSV reply %s: %w", logQuote(text), err)
	}
	return port, nil
}

func parseSPSV(text string) (uint16, error) {
	start, end := -1, -1
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) {
			continue
		}
		if start >= 0 {
			return 0, fmt.Errorf("more than one number: %w", ErrSyntax)
		}
		start = i
		for i < len(text) && isDigit(text[i]) {
			i++
		}
		end = i
	}
	if start < 0 {
		return 0, fmt.Errorf("no port found: %w", ErrSyntax)
	}
	if start > 0 && !boundaryBefore(text[start-1]) {
		return 0, fmt.Errorf("unexpected %s before the port: %w", logQuote(text[start-1:start]), ErrSyntax)
	}
	if end < len(text) && (!boundaryAfter(text[end:]) || text[end] == ',') {
		return 0, fmt.Errorf("unexpected %s after the port: %w", logQuote(text[end:end+1]), ErrSyntax)
	}
	return parsePort(text[start:end])
}

// FormatSPSV formats the text of the 227 reply to SPSV: the decimal port
// alone, as pure-ftpd sends it. Port 0 yields a text that ParseSPSV refuses.
func FormatSPSV(port uint16) string {
	return strconv.Itoa(int(port))
}
