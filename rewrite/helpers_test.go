package rewrite

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// errTimeout stands in for a deadline error from a net.Conn.
var errTimeout = errors.New("i/o timeout")

// chunk is one step of a scriptedReader: bytes to deliver, then an error.
type chunk struct {
	data string
	err  error
}

// scriptedReader delivers its chunks in order, each chunk's data before its
// error, then io.EOF.
type scriptedReader struct {
	chunks []chunk
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	for len(s.chunks) > 0 {
		c := &s.chunks[0]
		if c.data != "" {
			n := copy(p, c.data)
			c.data = c.data[n:]
			return n, nil
		}
		err := c.err
		s.chunks = s.chunks[1:]
		if err != nil {
			return 0, err
		}
	}
	return 0, io.EOF
}

// oneByteReader delivers one byte per Read, to exercise every split point.
type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// checkErr fails unless err matches want: nil, a sentinel (errors.Is) or
// errProtocol (any *ProtocolError).
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case want == errProtocol:
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("error = %v, want a *ProtocolError", err)
		}
	default:
		if !errors.Is(err, want) {
			t.Fatalf("error = %v, want %v", err, want)
		}
	}
}

var errProtocol = errors.New("any *ProtocolError")

func crlf(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }
