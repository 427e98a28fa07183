package proxy

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/rewrite"
)

// Snapshot is what is going on now, for the admin endpoint and `ftpgate
// status`: the live sessions, their transfers in flight, the open pinholes
// and the counters. Taking one costs a lock per session and a TCP_INFO read
// per running transfer; nothing on the data path.
type Snapshot struct {
	Time     time.Time     `json:"time"`
	Stats    Stats         `json:"stats"`
	Sessions []SessionInfo `json:"sessions"`
	Pinholes []PinholeInfo `json:"pinholes"`
}

// SessionInfo is one live session.
type SessionInfo struct {
	ID       uint64         `json:"id"`
	Mode     ListenMode     `json:"mode"`
	Client   netip.AddrPort `json:"client"`
	Server   netip.AddrPort `json:"server"`
	User     string         `json:"user"`
	LoggedIn bool           `json:"logged_in"`
	Start    time.Time      `json:"start"`
	Idle     time.Duration  `json:"idle_ns"` // since the latest client command
	Transfer *TransferInfo  `json:"transfer,omitempty"`
}

// TransferInfo is a transfer in flight.
type TransferInfo struct {
	Verb      string        `json:"verb"`
	Path      string        `json:"path"`
	Direction string        `json:"direction"`
	Start     time.Time     `json:"start"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Bytes     int64         `json:"bytes"` // so far: what the receiving peer has acknowledged (TLS legs: with record overhead); -1 unknown
	Size      int64         `json:"size"`  // from the server's 150 reply; -1 when unknown
}

// PinholeInfo is one pinhole this process holds open.
type PinholeInfo struct {
	Pinhole   nat.Pinhole    `json:"-"`
	Peer      netip.Addr     `json:"peer"`
	Local     netip.AddrPort `json:"local"`
	Intercept netip.AddrPort `json:"intercept,omitzero"`
	Remaining time.Duration  `json:"remaining_ns"` // until the firewall expires it, if nobody comes
	Refs      int            `json:"refs"`         // sessions waiting through it
}

// liveSessions is the set of running sessions, for snapshots.
type liveSessions struct {
	mu sync.Mutex
	m  map[uint64]*session
}

func (l *liveSessions) add(s *session) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[uint64]*session{}
	}
	l.m[s.id] = s
	l.mu.Unlock()
}

func (l *liveSessions) get(id uint64) *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

func (l *liveSessions) remove(s *session) {
	l.mu.Lock()
	delete(l.m, s.id)
	l.mu.Unlock()
}

// sessionView is the part of a session other goroutines may read: the loop
// goroutine replaces it (copy on write) when the session learns something,
// which happens a few times per session, not per command.
type sessionView struct {
	server   netip.AddrPort
	user     string
	loggedIn bool
}

// flight is a transfer in flight as snapshots see it.
type flight struct {
	verb, path, direction string
	start                 time.Time
	size                  int64
	dst                   *net.TCPConn // the socket the bytes leave on, TLS or not; nil for a forwarded flow
	dstBase               int64        // its acknowledged-bytes count when the relay began
}

// sessionSeen holds what snapshots read of a session.
type sessionSeen struct {
	view       atomic.Pointer[sessionView]
	lastActive atomic.Int64 // unix nanoseconds of the latest client command
	flight     atomic.Pointer[flight]
}

// publish replaces the view snapshots read.
func (s *session) publish() {
	s.seen.view.Store(&sessionView{server: s.serverPeer, user: s.user, loggedIn: s.loggedIn})
}

// Snapshot returns what is going on now.
func (s *Server) Snapshot() Snapshot {
	now := time.Now()
	snap := Snapshot{Time: now, Stats: s.Stats(), Sessions: []SessionInfo{}, Pinholes: s.ports.pinholeInfo(now)}
	s.live.mu.Lock()
	sessions := make([]*session, 0, len(s.live.m))
	for _, se := range s.live.m {
		sessions = append(sessions, se)
	}
	s.live.mu.Unlock()
	for _, se := range sessions {
		info := SessionInfo{ID: se.id, Mode: se.cfg.Mode, Client: se.clientPeer, Start: se.start,
			Idle: now.Sub(time.Unix(0, se.seen.lastActive.Load()))}
		if v := se.seen.view.Load(); v != nil {
			info.Server, info.User, info.LoggedIn = v.server, v.user, v.loggedIn
		}
		if f := se.seen.flight.Load(); f != nil {
			ti := &TransferInfo{Verb: f.verb, Path: f.path, Direction: f.direction, Start: f.start,
				Elapsed: now.Sub(f.start), Size: f.size}
			ti.Bytes = -1
			if f.dst != nil { // nil: the kernel forwards the data
				if n, ok := bytesAcked(f.dst); ok {
					ti.Bytes = max(n-f.dstBase, 0)
				}
			}
			info.Transfer = ti
		}
		snap.Sessions = append(snap.Sessions, info)
	}
	slices.SortFunc(snap.Sessions, func(a, b SessionInfo) int { return int(a.ID) - int(b.ID) })
	return snap
}

// size150 finds the size servers announce in their 150 reply, such as
// vsftpd's "Opening BINARY mode data connection for f (1048576 bytes)."
var size150 = regexp.MustCompile(`\((\d+) bytes\)`)

// announcedSize is the transfer size a 150 reply names, or -1.
func announcedSize(r *rewrite.Reply) int64 {
	if r == nil {
		return -1
	}
	m := size150.FindStringSubmatch(r.Text())
	if m == nil {
		return -1
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}
