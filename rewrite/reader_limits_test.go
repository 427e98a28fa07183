package rewrite

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// allocated returns the bytes the heap handed out while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxReplyCost is the bound checked below: the bytes one multi-line reply
// may cost, as a multiple of its wire size. The worst case is a reply of
// empty lines: two bytes on the wire, and a 16-byte string header each in
// Reply.Lines (the exported form), plus the line buffer growing by
// doubling. Before the buffer, 64 KiB of empty lines cost 2.6 MB (40x).
const maxReplyCost = 12

// TestReadReplyMemory measures what reading one 64 KiB reply allocates, for
// empty lines (the worst case) and for lines of ordinary length.
func TestReadReplyMemory(t *testing.T) {
	tests := []struct {
		name string
		line string
		max  uint64 // multiple of the wire size
	}{
		{name: "empty lines", line: "", max: maxReplyCost},
		{name: "one-byte lines", line: "x", max: maxReplyCost},
		{name: "60-byte lines", line: strings.Repeat("-rw-r--r-- ", 5) + "file.", max: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head, tail := "211-start\r\n", "211 end\r\n"
			n := (DefaultMaxReply - len(head) - len(tail)) / (len(tt.line) + 2)
			wire := []byte(head + strings.Repeat(tt.line+"\r\n", n) + tail)
			var rep *Reply
			var err error
			alloc := allocated(func() {
				r := NewReader(bytes.NewReader(wire), Limits{MaxReplyLines: n + 2})
				rep, err = r.ReadReply()
			})
			if err != nil {
				t.Fatalf("ReadReply: %v", err)
			}
			if len(rep.Lines) != n+2 {
				t.Fatalf("got %d lines, want %d", len(rep.Lines), n+2)
			}
			t.Logf("%d wire bytes, %d lines: %d bytes allocated (%.1fx)", len(wire), n+2, alloc, float64(alloc)/float64(len(wire)))
			if alloc > tt.max*uint64(len(wire)) {
				t.Fatalf("reading a %d-byte reply allocated %d bytes, want at most %dx", len(wire), alloc, tt.max)
			}
		})
	}
}

// TestReadReplyDefaultLineLimit checks that with the default limits 64 KiB
// of empty lines is refused early and cheaply.
func TestReadReplyDefaultLineLimit(t *testing.T) {
	wire := []byte("211-start\r\n" + strings.Repeat("\r\n", 32000) + "211 end\r\n200 next\r\n")
	var err error
	var next *Reply
	alloc := allocated(func() {
		r := NewReader(bytes.NewReader(wire), Limits{})
		_, err = r.ReadReply()
		next, _ = r.ReadReply()
	})
	checkErr(t, err, ErrReplyTooLong)
	if !ExceedsLimit(err) {
		t.Fatalf("ExceedsLimit(%v) = false", err)
	}
	if next == nil || next.Code != 200 {
		t.Fatalf("reply after the refused one = %v, want 200", next)
	}
	if alloc > 256<<10 {
		t.Fatalf("refusing the reply allocated %d bytes, want < 256 KiB", alloc)
	}
}

// errNoMoreData is what stuckReader returns where a real connection would
// block: reading past the data the peer sent.
var errNoMoreData = errors.New("read past the data the peer sent (a real connection would block here)")

// stuckReader delivers data, then reports errNoMoreData instead of blocking.
type stuckReader struct {
	data  []byte
	stuck bool
}

func (s *stuckReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		s.stuck = true
		return 0, errNoMoreData
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

// TestReadReplyLimitWithoutWaiting checks that a server that sends an
// over-long line, or an endless multi-line reply, and then goes quiet gets
// its limit error without the reader waiting for more: the session can
// answer 421 at once instead of hanging.
func TestReadReplyLimitWithoutWaiting(t *testing.T) {
	tests := []struct {
		name string
		data string
		lim  Limits
		want error
	}{
		{name: "single line without LF", data: "220 " + strings.Repeat("A", 10000), want: ErrLineTooLong},
		{name: "inner line without LF", data: "211-x\r\n" + strings.Repeat("A", 10000), want: ErrLineTooLong},
		{name: "endless inner lines", data: "211-x\r\n" + strings.Repeat("211-more\r\n", 8000), want: ErrReplyTooLong},
		{name: "too many lines", data: "211-x\r\n" + strings.Repeat("\r\n", 100), lim: Limits{MaxReplyLines: 10}, want: ErrReplyTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &stuckReader{data: []byte(tt.data)}
			_, err := NewReader(src, tt.lim).ReadReply()
			checkErr(t, err, tt.want)
			if !ExceedsLimit(err) {
				t.Fatalf("ExceedsLimit(%v) = false", err)
			}
			if src.stuck {
				t.Fatal("the reader waited for more data after the limit was crossed")
			}
		})
	}
}

func TestExceedsLimit(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "line", err: ErrLineTooLong, want: true},
		{name: "reply wrapped", err: errors.Join(errors.New("x"), ErrReplyTooLong), want: true},
		{name: "protocol", err: &ProtocolError{Msg: "x"}, want: false},
		{name: "nil", err: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExceedsLimit(tt.err); got != tt.want {
				t.Fatalf("ExceedsLimit(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
