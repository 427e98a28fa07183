package proxy

import (
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/nat"
)

// Observer is told what happens in the proxy: sessions, transfers, pinholes,
// denials, reloads. cmd implements it with Prometheus metrics and the audit
// and xferlog sinks; proxy itself knows neither. Observe is called on session
// goroutines, often on the per-transfer path: it must be fast and must not
// block (a sink that writes files buffers or drops, it does not stall a
// session).
type Observer interface {
	Observe(Event)
}

// Event is one of the *Event types below; a type switch tells them apart.
type Event interface{ event() }

// NopObserver ignores every event; it is the Observer of a zero Config.
type NopObserver struct{}

// Observe does nothing.
func (NopObserver) Observe(Event) {}

// SessionStartEvent: a control connection was accepted and, where a PROXY
// header was expected, its real client is known.
type SessionStartEvent struct {
	Session uint64
	Time    time.Time
	Mode    ListenMode
	Client  netip.AddrPort // the real client (after a trusted PROXY header)
	Via     netip.AddrPort // the transport peer when it differs from Client (a balancer)
	Local   netip.AddrPort // our address the client connected to
}

// SessionEndEvent: a session is over and everything it held is closed.
type SessionEndEvent struct {
	Session   uint64
	Time      time.Time
	Mode      ListenMode
	Client    netip.AddrPort
	Server    netip.AddrPort // invalid when no upstream connection was made
	User      string
	Duration  time.Duration
	BytesUp   int64 // data bytes client -> server
	BytesDown int64 // data bytes server -> client
	// Result is "ok" (QUIT, either side closed), "refused" (a limit, a
	// policy or the server refused the session before it began), "timeout"
	// or "error".
	Result string
	Reason string // empty for a normal end
}

// TransferEvent: one transfer command ended, successfully or not. Failed and
// refused transfers are reported too: Result says which, Cause why.
type TransferEvent struct {
	Session    uint64
	Start      time.Time
	Duration   time.Duration
	Client     netip.AddrPort
	Server     netip.AddrPort
	User       string
	Verb       string // RETR, STOR, LIST, ...
	Path       string // as the client named it, made absolute when the working directory is known
	Direction  string // "download" or "upload"
	Bytes      int64
	Code       int    // the final reply the client got
	Result     string // "ok", "failed", "aborted" or "refused"
	Cause      string // empty when Result is "ok"
	ClientMode string // PASV, EPSV, PORT, ...
	ServerMode string // EPSV, PASV, EPRT, PORT
	TLS        bool   // the client data leg was protected
	ASCII      bool   // TYPE A was in force (else image: byte for byte)
}

// PinholeEvent: one pinhole operation on the firewall.
type PinholeEvent struct {
	Op       string // "open" or "close"
	Pinhole  nat.Pinhole
	Duration time.Duration // how long the firewall call took
	Err      error
}

// DenialEvent: the proxy refused something a client or a server asked for.
// The client was answered; this is the audit record.
type DenialEvent struct {
	Session uint64
	Time    time.Time
	Client  netip.AddrPort
	User    string
	// Kind is "policy" (a command or destination rule), "limit" (a session
	// or rate limit), "bounce" (a PORT/EPRT or data connection to a third
	// host) or "protocol" (a peer broke the protocol).
	Kind   string
	Verb   string // the command refused, if any
	Rule   string // the rule or limit that decided, for example "preset read-only"
	Reason string
	Code   int // the reply the client got, 0 if none
}

// FileCommandEvent: a command that changes the server's files (DELE, RNFR
// and RNTO, MKD, RMD, SITE, MFMT) got its final reply.
type FileCommandEvent struct {
	Session uint64
	Time    time.Time
	Client  netip.AddrPort
	User    string
	Verb    string
	Path    string
	Code    int
}

// DataRefusedEvent: a connection to a data port was refused (not from the
// expected peer, nobody waiting, a bad PROXY header).
type DataRefusedEvent struct {
	From     netip.AddrPort
	Listener netip.AddrPort
	Reason   string
}

// TLSHandshakeEvent: one TLS handshake on a leg ("client", "server",
// "client-data", "server-data") ended.
type TLSHandshakeEvent struct {
	Leg     string
	Resumed bool
	Err     error
}

// UpstreamConnectEvent: the control connection to a server was dialed.
type UpstreamConnectEvent struct {
	Duration time.Duration
	Err      error
}

// ReloadEvent: a new configuration was offered to the running server.
type ReloadEvent struct {
	Time time.Time
	Err  error // nil when it applies from now on
}

func (SessionStartEvent) event()    {}
func (SessionEndEvent) event()      {}
func (TransferEvent) event()        {}
func (PinholeEvent) event()         {}
func (DenialEvent) event()          {}
func (FileCommandEvent) event()     {}
func (DataRefusedEvent) event()     {}
func (TLSHandshakeEvent) event()    {}
func (UpstreamConnectEvent) event() {}
func (ReloadEvent) event()          {}
