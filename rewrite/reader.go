package rewrite

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

const (
	DefaultMaxLine  = 4096     // bytes per line, excluding terminator
	DefaultMaxReply = 64 << 10 // total bytes of one (multi-line) reply, terminators included
)

// Limits bound what a Reader accepts. Zero (or negative) fields mean the
// defaults.
type Limits struct {
	MaxLine  int // zero means DefaultMaxLine
	MaxReply int // zero means DefaultMaxReply
}

func (l Limits) maxLine() int {
	if l.MaxLine <= 0 {
		return DefaultMaxLine
	}
	return l.MaxLine
}

func (l Limits) maxReply() int {
	if l.MaxReply <= 0 {
		return DefaultMaxReply
	}
	return l.MaxReply
}

// Reader reads FTP control lines: commands on a client's connection,
// replies on a server's. Lines end in CRLF; a bare LF is accepted too (some
// servers send it). Memory use is bounded by the Limits whatever the peer
// sends.
//
// A read error other than EOF (a deadline, say) leaves the Reader able to
// resume: the part of a line or multi-line reply read so far is kept and
// the next call continues it.
type Reader struct {
	br       *bufio.Reader
	maxLine  int
	maxReply int

	pend     []byte        // start of a line interrupted by a read error
	skipping bool          // discarding the rest of an over-long line
	head     [4]byte       // first bytes of the last over-long line
	headLen  int           //
	telnet   Telnet        // signals of lines that held only Telnet sequences
	reply    *partialReply // multi-line reply interrupted by a read error
}

type partialReply struct {
	code  int
	codeS string
	lines []string
	size  int
	err   error // first error; once set, lines are no longer kept
}

func (p *partialReply) fail(err error) {
	if p.err == nil {
		p.err = err
		p.lines = nil
	}
}

// NewReader returns a Reader of r with the given limits. Its buffer holds
// one maximal line.
func NewReader(r io.Reader, lim Limits) *Reader {
	ml := lim.maxLine()
	return &Reader{
		br:       bufio.NewReaderSize(r, max(ml+2, 16)),
		maxLine:  ml,
		maxReply: lim.maxReply(),
	}
}

// Buffered returns the number of bytes read from the connection but not yet
// consumed. Before a TLS upgrade (AUTH TLS) it must be zero: anything
// buffered was sent in the clear after the command.
func (r *Reader) Buffered() int { return r.br.Buffered() + len(r.pend) }

// readLine returns the next line without its terminator and the number of
// bytes it took on the wire. The line aliases an internal buffer and is
// valid until the next read.
func (r *Reader) readLine() ([]byte, int, error) {
	if r.skipping {
		if err := r.discardLine(); err != nil {
			return nil, 0, err
		}
	}
	chunk, err := r.br.ReadSlice('\n')
	if err == nil {
		if len(r.pend) > 0 {
			r.pend = append(r.pend, chunk...)
			chunk = r.pend
			r.pend = r.pend[:0]
		}
		size := len(chunk)
		line := chunk[:len(chunk)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) > r.maxLine {
			r.setHead(line, nil)
			return nil, size, ErrLineTooLong
		}
		return line, size, nil
	}
	full := errors.Is(err, bufio.ErrBufferFull)
	if full || len(r.pend)+len(chunk) > r.maxLine+1 {
		// Too long whatever follows: even a CRLF next leaves more than
		// maxLine bytes. Drop what we have and skip to the next LF.
		r.setHead(r.pend, chunk)
		r.pend = r.pend[:0]
		if err == io.EOF {
			return nil, 0, ErrLineTooLong
		}
		r.skipping = true
		if full {
			_ = r.discardLine() // an error here leaves skipping set for the next call
		}
		return nil, 0, ErrLineTooLong
	}
	r.pend = append(r.pend, chunk...)
	if err == io.EOF {
		if len(r.pend) == 0 {
			return nil, 0, io.EOF
		}
		r.pend = r.pend[:0]
		return nil, 0, io.ErrUnexpectedEOF
	}
	return nil, 0, err
}

// discardLine reads up to and including the next LF, keeping nothing.
func (r *Reader) discardLine() error {
	r.skipping = true
	for {
		_, err := r.br.ReadSlice('\n')
		switch {
		case err == nil:
			r.skipping = false
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			r.skipping = false
		}
		return err
	}
}

func (r *Reader) setHead(a, b []byte) {
	n := copy(r.head[:], a)
	n += copy(r.head[n:], b)
	r.headLen = n
}

// ReadCommand reads one command line. Telnet sequences are handled as
// ParseCommand describes; a line that holds only Telnet sequences is not a
// command: its signals are added to the next command's.
//
// Errors: io.EOF, io.ErrUnexpectedEOF, ErrLineTooLong (the line has been
// discarded; the next call reads the next line), a *ProtocolError for a
// malformed line (consumed; the next call reads the next line), or the
// underlying reader's error.
func (r *Reader) ReadCommand() (Command, error) {
	for {
		line, _, err := r.readLine()
		if err != nil {
			return Command{}, err
		}
		c, err := parseCommand(string(line))
		if errors.Is(err, errTelnetOnly) {
			r.telnet |= c.Telnet
			continue
		}
		c.Telnet |= r.telnet
		r.telnet = 0
		return c, err
	}
}

// ReadReply reads one complete reply. A multi-line reply (RFC 959 §4.2)
// runs from "ddd-" to the first line that starts with the same code and a
// space (or is the code alone); inner lines may hold anything else,
// including other codes.
//
// Errors: io.EOF between replies; io.ErrUnexpectedEOF inside one;
// ErrLineTooLong or ErrReplyTooLong, wrapped with the code, after the whole
// reply has been consumed (so the next call reads the next reply); a
// *ProtocolError for a first line without a valid code (that line is
// consumed) or for a NUL or bare CR in a line (the reply is consumed).
func (r *Reader) ReadReply() (*Reply, error) {
	st := r.reply
	if st == nil {
		line, size, err := r.readLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			code, multi, ok := parseReplyHead(r.head[:r.headLen])
			if !ok {
				return nil, err
			}
			tooLong := fmt.Errorf("reply %d: %w", code, err)
			if !multi {
				return nil, tooLong
			}
			st = &partialReply{code: code, codeS: strconv.Itoa(code), err: tooLong}
		case err != nil:
			return nil, err
		default:
			code, multi, ok := parseReplyHead(line)
			if !ok {
				return nil, &ProtocolError{Msg: "malformed reply code", Line: sanitize(string(line), maxLogLine)}
			}
			var lineErr error
			if i, what := badLineByte(string(line)); i >= 0 {
				lineErr = &ProtocolError{Msg: what + " in reply line", Line: sanitize(string(line), maxLogLine)}
			} else if size > r.maxReply {
				lineErr = fmt.Errorf("reply %d: %w", code, ErrReplyTooLong)
			}
			if !multi {
				if lineErr != nil {
					return nil, lineErr
				}
				return &Reply{Code: code, Lines: []string{string(line)}}, nil
			}
			st = &partialReply{code: code, codeS: strconv.Itoa(code), size: size, lines: []string{string(line)}}
			if lineErr != nil {
				st.fail(lineErr)
			}
		}
		r.reply = st
	}
	for {
		line, size, err := r.readLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			st.fail(fmt.Errorf("reply %d: %w", st.code, err))
			if isLastLine(string(r.head[:r.headLen]), st.codeS) {
				r.reply = nil
				return nil, st.err
			}
			continue
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			r.reply = nil
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err // r.reply kept: the next call resumes
		}
		st.size += size
		last := isLastLine(string(line), st.codeS)
		if st.err == nil {
			if i, what := badLineByte(string(line)); i >= 0 {
				st.fail(&ProtocolError{Msg: what + " in reply line", Line: sanitize(string(line), maxLogLine)})
			} else if st.size > r.maxReply {
				st.fail(fmt.Errorf("reply %d: %w", st.code, ErrReplyTooLong))
			} else {
				st.lines = append(st.lines, string(line))
			}
		}
		if last {
			r.reply = nil
			if st.err != nil {
				return nil, st.err
			}
			return &Reply{Code: st.code, Lines: st.lines}, nil
		}
	}
}

// Writer writes commands and replies, one Write call each, refusing any
// that would put CR, LF or NUL inside a line.
type Writer struct {
	w io.Writer
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteCommand writes c.Bytes() in one Write call.
func (w *Writer) WriteCommand(c Command) error {
	b, err := c.Bytes()
	if err != nil {
		return err
	}
	if err := w.write(b); err != nil {
		return fmt.Errorf("write command %s: %w", c.Verb, err)
	}
	return nil
}

// WriteReply writes r.Bytes() in one Write call.
func (w *Writer) WriteReply(r *Reply) error {
	b, err := r.Bytes()
	if err != nil {
		return err
	}
	if err := w.write(b); err != nil {
		return fmt.Errorf("write reply %d: %w", r.Code, err)
	}
	return nil
}

// WriteTelnetAbort writes IAC IP IAC DM, the Telnet signals RFC 959 §4.1.3
// puts before ABOR. Sending the DM as TCP urgent data is the caller's
// business; this writes the bytes in-band.
func (w *Writer) WriteTelnetAbort() error {
	if err := w.write([]byte{telnetIAC, telnetIP, telnetIAC, telnetDM}); err != nil {
		return fmt.Errorf("write telnet abort: %w", err)
	}
	return nil
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return io.ErrShortWrite
	}
	return nil
}
