package demo

import (
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
)

// Hidden sub-commands of ftpgate: the processes the demo starts in its
// namespaces (ServerMain, ClientMain).
const (
	ServerCommand = "__demo-server"
	ClientCommand = "__demo-client"
)

// event is one line of what the server and client re-execs report, as JSON.
type event struct {
	Ev    string  `json:"ev"`              // ready, cmd, reply, dial, accept, done, error
	Verb  string  `json:"verb,omitempty"`  // cmd: the FTP command
	Arg   string  `json:"arg,omitempty"`   // cmd: its argument (never a password)
	Code  int     `json:"code,omitempty"`  // reply: the reply code
	Text  string  `json:"text,omitempty"`  // reply: its text; error: the error
	Addr  string  `json:"addr,omitempty"`  // dial, accept: the peer address
	Bytes int64   `json:"bytes,omitempty"` // done: bytes moved
	Secs  float64 `json:"secs,omitempty"`  // done, error: seconds taken
	Sum   string  `json:"sha256,omitempty"`
}

// emitter writes events as JSON lines; safe for concurrent use.
type emitter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newEmitter(w io.Writer) *emitter { return &emitter{enc: json.NewEncoder(w)} }

func (e *emitter) emit(ev event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.enc.Encode(ev)
}

// randomBytes is a reader of n random bytes (ChaCha8, seeded from
// crypto/rand): what the demo serves and uploads.
func randomBytes(n int64) (io.Reader, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("random seed: %w", err)
	}
	return io.LimitReader(rand.NewChaCha8(seed), n), nil
}
