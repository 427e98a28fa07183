package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// feed follows a log file that a child writes (ftpgate's JSON log, the
// server's events) and keeps its lines. The child writes the file itself,
// so it survives this program (--keep) without a broken pipe.
type feed struct {
	mu    sync.Mutex
	lines [][]byte
	grew  chan struct{} // closed and replaced when a line arrives
	quit  chan struct{}
	ended chan struct{}
}

// tailFile follows path from its current end until stop.
func tailFile(path string) (*feed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	fd := &feed{grew: make(chan struct{}), quit: make(chan struct{}), ended: make(chan struct{})}
	go fd.follow(f)
	return fd, nil
}

func (fd *feed) follow(f *os.File) {
	defer close(fd.ended)
	defer f.Close()
	r := bufio.NewReader(f)
	var partial []byte
	for {
		b, err := r.ReadBytes('\n')
		partial = append(partial, b...)
		if err == nil {
			fd.add(bytes.TrimSpace(partial))
			partial = nil
			continue
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		select {
		case <-fd.quit:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (fd *feed) add(line []byte) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.lines = append(fd.lines, line)
	close(fd.grew)
	fd.grew = make(chan struct{})
}

func (fd *feed) stop() {
	close(fd.quit)
	<-fd.ended
}

// mark is the position of the next line.
func (fd *feed) mark() int {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return len(fd.lines)
}

// since returns the lines from position i on.
func (fd *feed) since(i int) [][]byte {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return append([][]byte(nil), fd.lines[i:]...)
}

// waitFor waits until a line from position i on satisfies ok, or timeout.
func (fd *feed) waitFor(i int, timeout time.Duration, ok func([]byte) bool) ([]byte, bool) {
	deadline := time.After(timeout)
	for {
		fd.mu.Lock()
		for ; i < len(fd.lines); i++ {
			if ok(fd.lines[i]) {
				l := fd.lines[i]
				fd.mu.Unlock()
				return l, true
			}
		}
		grew := fd.grew
		fd.mu.Unlock()
		select {
		case <-grew:
		case <-deadline:
			return nil, false
		}
	}
}

// logLine is the part of one of ftpgate's JSON log lines the narration uses.
type logLine struct {
	Level      string  `json:"level"`
	Msg        string  `json:"msg"`
	Pinhole    string  `json:"pinhole"`
	TTL        float64 `json:"ttl"` // zap's JSON encoder writes durations in seconds
	Bytes      int64   `json:"bytes"`
	Rate       float64 `json:"rate_bps"`
	ClientMode string  `json:"client_mode"`
	ServerMode string  `json:"server_mode"`
	Asked      string  `json:"server_asked"` // "passive data plan": the client was answered before the server
	Code       int     `json:"code"`
	Error      string  `json:"error"`
}

func parseLog(b []byte) (logLine, bool) {
	var l logLine
	return l, json.Unmarshal(b, &l) == nil
}

func isMsg(msg string) func([]byte) bool {
	return func(b []byte) bool {
		l, ok := parseLog(b)
		return ok && l.Msg == msg
	}
}

func parseEvent(b []byte) (event, bool) {
	var e event
	return e, json.Unmarshal(b, &e) == nil && e.Ev != ""
}
