package rewrite

import (
	"errors"
	"fmt"
	"strings"
)

// Telnet is the set of Telnet signals (RFC 854) seen before or within a
// command line. RFC 959 §4.1.3 has a client send IAC IP and the Synch
// (IAC DM, with the TCP urgent pointer) before ABOR and STAT.
type Telnet uint8

const (
	TelnetIP    Telnet = 1 << iota // IAC IP: interrupt process
	TelnetSynch                    // IAC DM: the data mark of a Telnet Synch
)

func (t Telnet) String() string {
	switch t {
	case 0:
		return "none"
	case TelnetIP:
		return "IP"
	case TelnetSynch:
		return "SYNCH"
	case TelnetIP | TelnetSynch:
		return "IP|SYNCH"
	}
	return fmt.Sprintf("Telnet(%#x)", uint8(t))
}

// Telnet command bytes (RFC 854).
const (
	telnetSE   = 240
	telnetDM   = 242
	telnetIP   = 244
	telnetSB   = 250
	telnetWILL = 251
	telnetDONT = 254
	telnetIAC  = 255
)

// maxVerbLen bounds a command verb. FTP verbs have three or four letters;
// unknown verbs up to this length are carried as ClassUnknown.
const maxVerbLen = 16

// Command is one FTP command line.
type Command struct {
	Verb   string // upper-cased verb, e.g. "RETR"
	Arg    string // argument exactly as received: everything after the single SP that follows the verb; "" if none
	Telnet Telnet // Telnet signals that came with the command (IAC IP, IAC DM)

	// What was received, so that an unmodified command is written back byte
	// for byte: the verb's spelling, and whether a SP followed it.
	rawVerb string
	rawArg  string
	sp      bool
}

// errTelnetOnly marks a line that held Telnet sequences and nothing else;
// the Reader carries its signals over to the next command.
var errTelnetOnly = errors.New("rewrite: line holds only Telnet sequences")

// ParseCommand parses one command line, given without its terminator.
//
// Telnet sequences are handled as RFC 959 §4.1.3 and RFC 854 require: IAC IP
// and IAC DM set Command.Telnet, IAC IAC becomes one 0xFF byte in Arg, and
// option negotiation (IAC WILL/WONT/DO/DONT x, IAC SB ... IAC SE) and the
// other two-byte commands are removed. Before the verb, a lone DM byte or an
// IAC followed by a letter also count as a Synch: with TCP urgent data the
// kernel takes the urgent byte (the IAC or the DM) out of the stream, so a
// client's "IAC IP IAC DM ABOR" often arrives as "IAC IP DM ABOR" or
// "IAC IP IAC ABOR".
//
// A line that is empty, holds only Telnet sequences, starts with a space,
// contains NUL, CR or LF, or has a verb that is not 1 to 16 printable ASCII
// characters is a *ProtocolError.
func ParseCommand(line string) (Command, error) {
	c, err := parseCommand(line)
	if errors.Is(err, errTelnetOnly) {
		return Command{Telnet: c.Telnet}, &ProtocolError{Msg: "no command after Telnet signals"}
	}
	return c, err
}

func parseCommand(line string) (Command, error) {
	s, sig, seen := decodeTelnet(line)
	if s == "" {
		if seen {
			return Command{Telnet: sig}, errTelnetOnly
		}
		return Command{}, &ProtocolError{Msg: "empty command line"}
	}
	if i, what := badLineByte(s); i >= 0 {
		return Command{Telnet: sig}, &ProtocolError{Msg: what + " in command line", Line: redactCommandLine(s)}
	}
	verb, arg, sp := strings.Cut(s, " ")
	switch {
	case verb == "":
		return Command{Telnet: sig}, &ProtocolError{Msg: "command line starts with a space", Line: redactCommandLine(s)}
	case len(verb) > maxVerbLen:
		return Command{Telnet: sig}, &ProtocolError{Msg: "command verb too long", Line: redactCommandLine(s)}
	}
	for i := 0; i < len(verb); i++ {
		if verb[i] < 0x21 || verb[i] > 0x7e {
			return Command{Telnet: sig}, &ProtocolError{Msg: "invalid byte in command verb", Line: redactCommandLine(s)}
		}
	}
	return Command{
		Verb:    asciiUpper(verb),
		Arg:     arg,
		Telnet:  sig,
		rawVerb: verb,
		rawArg:  arg,
		sp:      sp,
	}, nil
}

// decodeTelnet removes Telnet sequences from a line. It reports the signals
// seen and whether any Telnet sequence (other than an escaped IAC) was
// present at all.
func decodeTelnet(line string) (string, Telnet, bool) {
	if strings.IndexByte(line, telnetIAC) < 0 && (line == "" || line[0] != telnetDM) {
		return line, 0, false
	}
	var (
		out     = make([]byte, 0, len(line))
		sig     Telnet
		seen    bool
		leading = true // nothing but Telnet sequences so far
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != telnetIAC {
			if leading && c == telnetDM {
				// A DM whose IAC was taken out of band as urgent data.
				sig |= TelnetSynch
				seen = true
				continue
			}
			leading = false
			out = append(out, c)
			continue
		}
		if i+1 == len(line) {
			seen = true // a dangling IAC at the end of the line is dropped
			break
		}
		next := line[i+1]
		switch {
		case next == telnetIAC:
			out = append(out, telnetIAC)
			leading = false
			i++
		case next == telnetIP:
			sig |= TelnetIP
			seen = true
			i++
		case next == telnetDM:
			sig |= TelnetSynch
			seen = true
			i++
		case next >= telnetWILL: // WILL, WONT, DO, DONT and their option byte
			seen = true
			i += 2
		case next == telnetSB: // subnegotiation up to IAC SE or the end of the line
			seen = true
			end := strings.Index(line[i+2:], "\xff\xf0")
			if end < 0 {
				i = len(line)
			} else {
				i += 2 + end + 1
			}
		case next >= telnetSE: // NOP, BRK, AO, AYT, EC, EL, GA, SE
			seen = true
			i++
		default:
			// IAC followed by a data byte: not a Telnet command. Before the
			// verb it is the IAC of a Synch whose DM went out of band. The
			// IAC is dropped; the data byte is kept.
			seen = true
			if leading {
				sig |= TelnetSynch
			}
		}
	}
	return string(out), sig, seen
}

// Info returns the command table entry of the verb; an unknown verb gets
// Info{Verb: c.Verb, Class: ClassUnknown}.
func (c Command) Info() Info {
	if info, ok := Lookup(c.Verb); ok {
		return info
	}
	return Info{Verb: c.Verb, Class: ClassUnknown}
}

// String renders the command for logs: the verb, and the argument sanitised
// (control characters and invalid UTF-8 escaped), or "REDACTED" in place of
// the argument of PASS, ACCT and ADAT.
func (c Command) String() string {
	verb := sanitize(c.Verb, 0)
	if c.Arg == "" {
		return verb
	}
	if info, ok := Lookup(c.Verb); ok && info.Secret {
		return verb + " REDACTED"
	}
	return verb + " " + sanitize(c.Arg, 0)
}

// Bytes returns the command in wire form, "VERB[ SP Arg]\r\n", with 0xFF
// bytes of the argument escaped as IAC IAC (RFC 854). A command that was
// parsed and not modified is rendered exactly as received (the verb's
// spelling and a trailing SP are kept); Telnet signals are never emitted
// (see Writer.WriteTelnetAbort). It is an error if the verb is empty or
// holds anything but printable ASCII, or if the argument contains CR, LF or
// NUL.
func (c Command) Bytes() ([]byte, error) {
	if c.Verb == "" {
		return nil, errors.New("format command: empty verb")
	}
	if len(c.Verb) > maxVerbLen {
		return nil, fmt.Errorf("format command %s: verb too long", logQuote(c.Verb))
	}
	for i := 0; i < len(c.Verb); i++ {
		if c.Verb[i] < 0x21 || c.Verb[i] > 0x7e {
			return nil, fmt.Errorf("format command %s: invalid byte %#x in verb", logQuote(c.Verb), c.Verb[i])
		}
	}
	if i, what := badLineByte(c.Arg); i >= 0 {
		return nil, fmt.Errorf("format command %s: %s in argument", sanitize(c.Verb, 0), what)
	}
	verb := c.Verb
	if c.rawVerb != "" && asciiUpper(c.rawVerb) == c.Verb {
		verb = c.rawVerb
	}
	sp := c.Arg != "" || (c.sp && c.Arg == c.rawArg)
	b := make([]byte, 0, len(verb)+1+len(c.Arg)+strings.Count(c.Arg, "\xff")+2)
	b = append(b, verb...)
	if sp {
		b = append(b, ' ')
		for i := 0; i < len(c.Arg); i++ {
			if c.Arg[i] == telnetIAC {
				b = append(b, telnetIAC)
			}
			b = append(b, c.Arg[i])
		}
	}
	return append(b, '\r', '\n'), nil
}
