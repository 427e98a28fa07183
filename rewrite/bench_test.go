package rewrite

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// repeatReader replays data endlessly.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	k := copy(p, r.data[r.off:])
	r.off = (r.off + k) % len(r.data)
	return k, nil
}

func BenchmarkReadCommand(b *testing.B) {
	session := []byte(crlf("USER anonymous", "PASS guest@example.com", "TYPE I", "EPSV", "RETR pub/linux/kernel/v6.x/linux-6.18.tar.xz", "\xff\xf4\xff\xf2ABOR", "QUIT"))
	b.SetBytes(int64(len(session)))
	b.ReportAllocs()
	r := NewReader(&repeatReader{data: session}, Limits{})
	for b.Loop() {
		for range 7 {
			if _, err := r.ReadCommand(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*7)/b.Elapsed().Seconds(), "cmds/s")
}

func BenchmarkReadReplyFEAT(b *testing.B) {
	feat := []byte(featReplies[2].wire) // pure-ftpd, 19 lines
	b.SetBytes(int64(len(feat)))
	b.ReportAllocs()
	r := NewReader(&repeatReader{data: feat}, Limits{})
	for b.Loop() {
		if _, err := r.ReadReply(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePASV(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePASV("Entering Passive Mode (198,18,77,1,195,177)."); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEPRT(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEPRT("|2|fd00:77::2|50001|"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteReply(b *testing.B) {
	rep := NewReply(227, "Entering Passive Mode (198,18,77,1,195,177).")
	w := NewWriter(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteReply(rep); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscardLongLine measures how fast an over-long line is skipped.
func BenchmarkDiscardLongLine(b *testing.B) {
	line := []byte(strings.Repeat("A", 1<<20) + "\r\nNOOP\r\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(line), Limits{})
		if _, err := r.ReadCommand(); err == nil {
			b.Fatal("long line accepted")
		}
		if c, err := r.ReadCommand(); err != nil || c.Verb != "NOOP" {
			b.Fatal(c, err)
		}
	}
}

// BenchmarkReadReplyEmptyLines reads one 64 KiB reply of empty lines, the
// worst case for the memory a reply costs (compare B/op with 65536).
func BenchmarkReadReplyEmptyLines(b *testing.B) {
	wire := []byte("211-start\r\n" + strings.Repeat("\r\n", (DefaultMaxReply-20)/2) + "211 end\r\n")
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(wire), Limits{MaxReplyLines: len(wire)})
		if _, err := r.ReadReply(); err != nil {
			b.Fatal(err)
		}
	}
}
