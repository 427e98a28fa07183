// Package rewrite owns the FTP control-connection wire protocol: bounded
// reading and writing of command and reply lines (CRLF framing, Telnet IAC
// handling, RFC 959 multi-line replies), parsing and formatting of the
// data-connection addresses negotiated by PORT, PASV, EPRT, EPSV, LPRT, LPSV
// and SPSV, FEAT feature lists, and a table of every FTP command the project
// knows with what a proxy must do with it.
//
// It never does I/O beyond the io.Reader and io.Writer it is given, never
// decides what is allowed (that is package policy), and never touches
// sockets, the firewall or the kernel. Nothing here panics on peer input:
// malformed input is reported as a *ProtocolError, an error wrapping
// ErrSyntax or ErrUnsupportedFamily, ErrLineTooLong or ErrReplyTooLong.
//
// A Reader's memory is bounded by its Limits (MaxLine, MaxReply,
// MaxReplyLines) whatever the peer sends, and a limit is reported as soon
// as it is crossed: ExceedsLimit tells those errors apart, and on a
// server's connection a session ends with 421 rather than waiting for a
// line end that may never come. One reply costs a small multiple of its
// wire size (TestReadReplyMemory measures it).
//
// Everything this package formats is checked before it is returned or
// written: no CR, LF or NUL ever appears inside a command argument or a
// reply line, and the arguments of PASS, ACCT and ADAT never appear in the
// String form of a command or in an error.
package rewrite
