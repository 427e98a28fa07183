package rewrite

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	DefaultMaxLine       = 4096     // bytes per line, excluding terminator
	DefaultMaxReply      = 64 << 10 // total bytes of one (multi-line) reply, terminators included
	DefaultMaxReplyLines = 4096     // lines of one multi-line reply, first and last included
)

// Limits bound what a Reader accepts. Zero (or negative) fields mean the
// defaults. The yaml names are those of the limits: section of ftpgate's
// configuration.
type Limits struct {
	MaxLine       int `yaml:"max_line"`        // zero means DefaultMaxLine
	MaxReply      int `yaml:"max_reply"`       // zero means DefaultMaxReply
	MaxReplyLines int `yaml:"max_reply_lines"` // zero means DefaultMaxReplyLines
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

func (l Limits) maxReplyLines() int {
	if l.MaxReplyLines <= 0 {
		return DefaultMaxReplyLines
	}
	return l.MaxReplyLines
}

// Reader reads FTP control lines: commands on a client's connection,
// replies on a server's. Lines end in CRLF; a bare LF is accepted too (some
// servers send it). Memory use is bounded by the Limits whatever the peer
// sends, and a reply costs a small multiple of its size: its lines are
// gathered in one buffer that grows by doubling and become substrings of one
// string.
//
// A limit is reported as soon as it is crossed, without waiting for the
// rest of the line or reply: a peer that sends an endless line or an endless
// multi-line reply gets an error at once, not a reader that hangs. The
// next call skips what is left of that line or reply.
//
// A read error other than EOF (a deadline, say) leaves the Reader able to
// resume: the part of a line or multi-line reply read so far is kept and
// the next call continues it.
type Reader struct {
	br       *bufio.Reader
	maxLine  int
	maxReply int
	maxLines int
	pend     []byte        // start of a line interrupted by a read error
	skipping bool          // discarding the rest of an over-long line
	head     [4]byte       // first bytes of the last over-long line
	headLen  int           //
	telnet   Telnet        // signals of lines that held only Telnet sequences
	reply    *partialReply // multi-line reply interrupted by a read error, or being skipped
	waitErr  error         // the stream's failure Wait met, for the next read to return
}

// partialReply is a multi-line reply being read. Its lines are kept in one
// buffer, each followed by '\n' (a line never holds an LF).
type partialReply struct {
	code  int
	codeS string
	text  strings.Builder
	n     int // lines so far
	size  int // wire bytes so far
	// failed is set once an error about this reply has been returned: the
	// rest of the reply is then skipped, nothing more is kept.
	failed bool
}

// add appends one line, growing the buffer by doubling so that the bytes
// allocated for a reply stay within a small multiple of its size.
func (p *partialReply) add(line []byte) {
	if need := len(line) + 1; p.text.Cap()-p.text.Len() < need {
		p.text.Grow(max(need, p.text.Cap()))
	}
	p.text.Write(line)
	p.text.WriteByte('\n')
}

// done returns the reply: its lines are substrings of one string, and the
// slice of lines is allocated once at its final length.
func (p *partialReply) done() *Reply {
	s := p.text.String()
	lines := make([]string, 0, p.n)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		lines = append(lines, s[:i])
		s = s[i+1:]
	}
	return &Reply{Code: p.code, Lines: lines}
}

// readBuf is the size of a Reader's buffer. A control connection spends most
// of its life idle with its buffer allocated, so the buffer is sized for the
// usual line, not for the longest allowed: a longer line is gathered in pend.
const readBuf = 256

// NewReader returns a Reader of r with the given limits.
func NewReader(r io.Reader, lim Limits) *Reader {
	ml := lim.maxLine()
	return &Reader{
		br:       bufio.NewReaderSize(r, min(readBuf, max(ml+2, 16))),
		maxLine:  ml,
		maxReply: lim.maxReply(),
		maxLines: lim.maxReplyLines(),
	}
}

// Buffered returns the number of bytes read from the connection but not yet
// consumed. Before a TLS upgrade (AUTH TLS) it must be zero: anything
// buffered was sent in the clear after the command.
func (r *Reader) Buffered() int { return r.br.Buffered() + len(r.pend) }

// Wait blocks until the stream has a byte for the next read, or has failed
// (the next read then returns the failure); with bytes buffered it returns
// at once. It is the blocking half of ReadCommand and ReadReply, apart: a
// goroutine that waits here while its connection is idle has only a few
// small frames on its stack (bufio's and the socket's), so it can stay on
// the runtime's smallest stack, where ReadCommand's and ReadReply's frames
// would make it grow.
func (r *Reader) Wait() {
	if r.waitErr != nil || r.Buffered() > 0 {
		return
	}
	if _, err := r.br.Peek(1); err != nil {
		r.waitErr = err
	}
}

// readSlice is bufio's ReadSlice up to an LF, after the failure Wait met.
func (r *Reader) readSlice() ([]byte, error) {
	if err := r.waitErr; err != nil {
		r.waitErr = nil
		return nil, err
	}
	return r.br.ReadSlice('\n')
}

// readLine returns the next line without its terminator and the number of
// bytes it took on the wire. The line aliases an internal buffer and is
// valid until the next read.
func (r *Reader) readLine() ([]byte, int, error) {
	if r.skipping {
		if err := r.discardLine(); err != nil {
			return nil, 0, err
		}
	}
	chunk, err := r.readSlice()
	for errors.Is(err, bufio.ErrBufferFull) && len(r.pend)+len(chunk) <= r.maxLine+1 {
		// A line longer than the buffer, not yet too long: gather it.
		r.pend = append(r.pend, chunk...)
		chunk, err = r.readSlice()
	}
	if err == nil {
		if len(r.pend) > 0 {
			r.pend = append(r.pend, chunk...)
			chunk = r.pend
			r.dropPend() // chunk keeps the bytes until the next read
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
	if len(r.pend)+len(chunk) > r.maxLine+1 {
		// Too long whatever follows: even a CRLF next leaves more than
		// maxLine bytes. Drop what we have and skip to the next LF.
		r.setHead(r.pend, chunk)
		r.dropPend()
		if err == io.EOF {
			return nil, 0, ErrLineTooLong
		}
		r.skipping = true // the next call skips to the next LF first
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

// dropPend empties pend. A long line is rare (or hostile): the buffer it
// grew is not kept.
func (r *Reader) dropPend() {
	if cap(r.pend) > 2*readBuf {
		r.pend = nil
		return
	}
	r.pend = r.pend[:0]
}

// discardLine reads up to and including the next LF, keeping nothing.
func (r *Reader) discardLine() error {
	r.skipping = true
	for {
		_, err := r.readSlice()
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
// Errors: io.EOF, io.ErrUnexpectedEOF, ErrLineTooLong (returned as soon as
// the line is too long; the next call skips the rest of it and reads the
// next line), a *ProtocolError for a malformed line (consumed; the next
// call reads the next line), or the underlying reader's error.
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
// ErrLineTooLong or ErrReplyTooLong (over MaxReply bytes or MaxReplyLines
// lines), wrapped with the code, as soon as the limit is crossed (test them
// with ExceedsLimit); a *ProtocolError for a first line without a valid code
// (that line is consumed) or for a NUL or bare CR in a line. After an error
// inside a reply the next call first skips the rest of that reply, so it
// returns the reply after it.
func (r *Reader) ReadReply() (*Reply, error) {
	if st := r.reply; st != nil && st.failed {
		if err := r.skipReply(st); err != nil {
			return nil, err
		}
	}
	st := r.reply
	if st == nil {
		line, size, err := r.readLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			code, multi, ok := parseReplyHead(r.head[:r.headLen])
			if !ok {
				return nil, err
			}
			if multi {
				r.reply = &partialReply{code: code, codeS: strconv.Itoa(code), failed: true}
			}
			return nil, fmt.Errorf("reply %d: %w", code, err)
		case err != nil:
			return nil, err
		}
		code, multi, ok := parseReplyHead(line)
		if !ok {
			return nil, &ProtocolError{Msg: "malformed reply code", Line: sanitize(string(line), maxLogLine)}
		}
		st = &partialReply{code: code, codeS: strconv.Itoa(code), size: size, n: 1}
		if err := r.checkReplyLine(st, line); err != nil {
			if multi {
				st.failed = true
				r.reply = st
			}
			return nil, err
		}
		if !multi {
			return &Reply{Code: code, Lines: []string{string(line)}}, nil
		}
		st.add(line)
		r.reply = st
	}
	for {
		line, size, err := r.readLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			if !isLastLine(r.head[:r.headLen], st.codeS) {
				st.failed = true
			} else {
				r.reply = nil
			}
			return nil, fmt.Errorf("reply %d: %w", st.code, err)
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			r.reply = nil
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err // r.reply kept: the next call resumes
		}
		st.size += size
		st.n++
		last := isLastLine(line, st.codeS)
		if err := r.checkReplyLine(st, line); err != nil {
			if last {
				r.reply = nil
			} else {
				st.failed = true
			}
			return nil, err
		}
		st.add(line)
		if last {
			r.reply = nil
			return st.done(), nil
		}
	}
}

// checkReplyLine checks the latest line of st, already counted in st.size
// and st.n, against the framing rules and the limits.
func (r *Reader) checkReplyLine(st *partialReply, line []byte) error {
	switch i, what := badLineByte(line); {
	case i >= 0:
		return &ProtocolError{Msg: what + " in reply line", Line: sanitize(string(line), maxLogLine)}
	case st.size > r.maxReply:
		return fmt.Errorf("reply %d: over %d bytes: %w", st.code, r.maxReply, ErrReplyTooLong)
	case st.n > r.maxLines:
		return fmt.Errorf("reply %d: over %d lines: %w", st.code, r.maxLines, ErrReplyTooLong)
	}
	return nil
}

// skipReply reads and drops the rest of a reply whose error has been
// returned. A read error other than EOF leaves st in place to resume.
func (r *Reader) skipReply(st *partialReply) error {
	st.text = strings.Builder{} // nothing more is kept
	for {
		line, _, err := r.readLine()
		switch {
		case errors.Is(err, ErrLineTooLong):
			line = r.head[:r.headLen]
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			r.reply = nil
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
		if isLastLine(line, st.codeS) {
			r.reply = nil
			return nil
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
