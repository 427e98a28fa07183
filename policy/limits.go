package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
)

// Defaults of Limits.
const (
	DefaultMaxSessions          = 1024
	DefaultMaxSessionsPerClient = 64 // a NAT hides many users behind one address
	DefaultMaxLoginFailures     = 10 // per client address per minute
	DefaultDataIdleTimeout      = 60 * time.Second
)

// Upstream connect modes.
const (
	// UpstreamEager dials the server as soon as a client connects and
	// relays the server's greeting.
	UpstreamEager = "eager"
	// UpstreamLazy answers the greeting itself and dials the server only
	// after the client sent USER, so port scans and idle sockets never
	// reach the server.
	UpstreamLazy = "lazy"
)

// Limits are the operator's resource limits (the limits: section). Zero
// fields mean the defaults; a negative count or duration turns that limit
// off. The counters and token buckets that enforce them live in the proxy;
// these are only the values and the decisions.
type Limits struct {
	// MaxSessions bounds the sessions of the whole process. Zero: 1024.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerClient bounds the sessions of one client address (the
	// real one, after a trusted PROXY protocol header). Zero: 64.
	MaxSessionsPerClient int `yaml:"max_sessions_per_client"`
	// MaxLoginFailures is how many failed logins one client address may
	// have per minute before its new sessions get 421 for a cool-down (a
	// token bucket of this size refilled at this rate per minute). Zero: 10.
	MaxLoginFailures int `yaml:"max_login_failures"`
	// UpstreamConnect is "eager" or "lazy". Empty: eager.
	UpstreamConnect string `yaml:"upstream_connect"`
	// DataIdleTimeout aborts a transfer that moved no byte in either
	// direction for this long (426 to the client). Zero: 60s.
	DataIdleTimeout time.Duration `yaml:"data_idle_timeout"`
	// MaxUploadSize cuts an upload (STOR, STOU, APPE) after this many bytes
	// and tells the client 552. Zero or negative: no limit.
	MaxUploadSize int64 `yaml:"max_upload_size"`
	// MaxLine, MaxReply and MaxReplyLines bound the control connection's
	// lines and each server reply (see rewrite.Limits); zero means the
	// rewrite defaults (4096 bytes, 64 KiB, 4096 lines).
	MaxLine       int `yaml:"max_line"`
	MaxReply      int `yaml:"max_reply"`
	MaxReplyLines int `yaml:"max_reply_lines"`
}

// Validate reports whether the limits are usable.
func (l Limits) Validate() error {
	switch l.UpstreamConnect {
	case "", UpstreamEager, UpstreamLazy:
	default:
		return fmt.Errorf("upstream_connect %q: want lazy or eager", l.UpstreamConnect)
	}
	if l.MaxLine < 0 || l.MaxReply < 0 || l.MaxReplyLines < 0 {
		return errors.New("max_line, max_reply and max_reply_lines cannot be turned off (negative); zero means the default")
	}
	if l.MaxLine > 0 && l.MaxLine < 512 {
		return fmt.Errorf("max_line %d: want at least 512 (RFC 959 servers send lines of a few hundred bytes)", l.MaxLine)
	}
	if l.MaxReply > 0 && l.MaxReply < l.Reader().MaxLine+2 {
		return fmt.Errorf("max_reply %d is smaller than one line (max_line %d)", l.MaxReply, l.Reader().MaxLine)
	}
	return nil
}

// WithDefaults returns l with every zero field set to its default.
// Negative fields (off) are kept.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxSessions, DefaultMaxSessions)
	def(&l.MaxSessionsPerClient, DefaultMaxSessionsPerClient)
	def(&l.MaxLoginFailures, DefaultMaxLoginFailures)
	if l.UpstreamConnect == "" {
		l.UpstreamConnect = UpstreamEager
	}
	if l.DataIdleTimeout == 0 {
		l.DataIdleTimeout = DefaultDataIdleTimeout
	}
	r := l.Reader()
	def(&l.MaxLine, r.MaxLine)
	def(&l.MaxReply, r.MaxReply)
	def(&l.MaxReplyLines, r.MaxReplyLines)
	return l
}

// Reader returns the limits for rewrite.NewReader, defaults filled in.
func (l Limits) Reader() rewrite.Limits {
	r := rewrite.Limits{MaxLine: l.MaxLine, MaxReply: l.MaxReply, MaxReplyLines: l.MaxReplyLines}
	if r.MaxLine <= 0 {
		r.MaxLine = rewrite.DefaultMaxLine
	}
	if r.MaxReply <= 0 {
		r.MaxReply = rewrite.DefaultMaxReply
	}
	if r.MaxReplyLines <= 0 {
		r.MaxReplyLines = rewrite.DefaultMaxReplyLines
	}
	return r
}

// AdmitSession decides whether a new session may start, given the sessions
// active now (not counting the new one) in the process and from the new
// session's client address. It is meant to run before anything costly: a
// refused session gets 421 before an upstream connection exists.
func (l Limits) AdmitSession(active, activeForClient int) Decision {
	l = l.WithDefaults()
	if l.MaxSessions > 0 && active >= l.MaxSessions {
		return refuse("limits.max_sessions", 421, "Too many users, try again later.",
			fmt.Sprintf("%d sessions active, the limit is %d", active, l.MaxSessions))
	}
	if l.MaxSessionsPerClient > 0 && activeForClient >= l.MaxSessionsPerClient {
		return refuse("limits.max_sessions_per_client", 421, "Too many connections from your address, try again later.",
			fmt.Sprintf("%d sessions active from this client, the limit is %d", activeForClient, l.MaxSessionsPerClient))
	}
	return allow()
}

// LoginFailureRate returns the size of the per-client token bucket of
// failed logins and its refill rate per second; ok is false when the limit
// is off.
func (l Limits) LoginFailureRate() (burst int, perSecond float64, ok bool) {
	n := l.WithDefaults().MaxLoginFailures
	if n < 0 {
		return 0, 0, false
	}
	return n, float64(n) / 60, true
}

// LoginCooldown is the answer to a new session from a client address whose
// failed-login bucket is empty.
func (l Limits) LoginCooldown() Decision {
	n := l.WithDefaults().MaxLoginFailures
	return refuse("limits.max_login_failures", 421, "Too many failed logins from your address, try again later.",
		fmt.Sprintf("more than %d failed logins in a minute", n))
}

// UploadTooLarge is the answer to an upload cut at MaxUploadSize (RFC 959
// 552: exceeded storage allocation).
func (l Limits) UploadTooLarge() Decision {
	return refuse("limits.max_upload_size", 552, "Upload exceeds the size limit; transfer aborted.",
		fmt.Sprintf("upload over %d bytes", l.MaxUploadSize))
}
