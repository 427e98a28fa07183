package proxy

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ftpgate/ftpgate/rewrite"
)

// The kinds of failure in one place. Each says who is at fault and what the
// client hears:
//
//	errSessionEnd      the session ends normally (QUIT, 421, a side left)
//	legError           a data leg could not be set up: 425, the session goes on
//	serverGaveUp       the server's final reply came while the legs connected: relayed
//	dataTLSError       a data leg's TLS failed: 425 or 522, the session goes on
//	destinationError   policy refused the session's server: 421
//	errLoop            a transparent session addressed ftpgate itself: 421
//	errNoPort          no data port free for the peer: 425
//	errDataTimeout     the expected data connection did not come: 425
//	errDataAfterCCC    the client sent data where its close_notify was due
//	errTimeout         a peer did not answer in time: 421, the session ends
//	errDataStall       a transfer moved no byte for the data idle timeout: 426
//	errOverLimit       an upload went past the size cap: 552

// errSessionEnd ends a session normally (QUIT, 421, the client left).
var errSessionEnd = errors.New("session ended")

// legError is a data-connection setup failure that the client hears about as
// a 425 (or code, when set) but that does not end the session.
type legError struct {
	msg  string
	code int // zero means 425
}

func (e *legError) Error() string { return e.msg }

func legErrorf(format string, args ...any) error { return &legError{msg: fmt.Sprintf(format, args...)} }

// errNotLoggedIn: the server wants a login before any data command.
var errNotLoggedIn = &legError{msg: "log in first", code: 530}

// serverGaveUp: the server sent its final reply (425, 426, ...) while we
// were still connecting the legs; that reply is the client's answer.
type serverGaveUp struct{ reply *rewrite.Reply }

func (e *serverGaveUp) Error() string { return fmt.Sprintf("server gave up with %d", e.reply.Code) }

// dataTLSError is a data connection's TLS failure; the client hears Code.
type dataTLSError struct {
	leg  string // "client" or "server"
	code int
	msg  string
	err  error
}

func (e *dataTLSError) Error() string { return e.leg + " data TLS: " + e.msg }

func (e *dataTLSError) Unwrap() error { return e.err }

type destinationError struct {
	dst    netip.AddrPort
	reason string
}

func (e *destinationError) Error() string { return "destination refused: " + e.reason }

// errLoop: the original destination is ftpgate itself.
var errLoop = fmt.Errorf("connection addressed to ftpgate itself, not to a server (loop)")

// errNoPort means no data port could be had for this peer.
var errNoPort = errors.New("no data port free for this peer")

// errDataAfterCCC: the client sent application data where its close_notify
// was due.
var errDataAfterCCC = errors.New("application data after CCC instead of close_notify")

// errDataTimeout means the expected data connection did not arrive in time.
var errDataTimeout = errors.New("data connection did not arrive in time")

// errTimeout is wrapped by every timeout that ends a session ("login
// timeout", "idle timeout", a server that does not answer).
var errTimeout = errors.New("timeout")

// errDataStall: a transfer moved no byte in either direction for the data
// idle timeout and was aborted.
var errDataStall = errors.New("data idle timeout: no byte moved in either direction")

// errOverLimit: an upload had more to send than the upload size cap allows.
var errOverLimit = errors.New("upload over the size limit")
