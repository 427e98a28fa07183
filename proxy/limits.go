package proxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ftpgate/ftpgate/policy"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// admission is the state behind the session limits: sessions per client
// address and the failed-login token bucket of each address. policy decides
// from the counts; this keeps them.
type admission struct {
	mu       sync.Mutex
	active   int
	clients  map[netip.Addr]int
	failures map[netip.Addr]*rate.Limiter
}

// maxTrackedFailures bounds the failed-login buckets kept; past it, the
// buckets that have refilled (nothing to remember) are dropped.
const maxTrackedFailures = 4096

// admit decides whether a session from client may start and, if so,
// counts it; the caller must call leave when an admitted session ends.
func (a *admission) admit(l policy.Limits, client netip.Addr, now time.Time) policy.Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b := a.failures[client]; b != nil && b.TokensAt(now) < 1 {
		return l.LoginCooldown()
	}
	d := l.AdmitSession(a.active, a.clients[client])
	if !d.Allow {
		return d
	}
	if a.clients == nil {
		a.clients = map[netip.Addr]int{}
	}
	a.active++
	a.clients[client]++
	return d
}

// leave uncounts an admitted session.
func (a *admission) leave(client netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active--
	if a.clients[client]--; a.clients[client] <= 0 {
		delete(a.clients, client)
	}
}

// loginFailed takes a token from client's failed-login bucket. When the
// bucket is empty, new sessions from client are refused until it refills.
func (a *admission) loginFailed(l policy.Limits, client netip.Addr, now time.Time) {
	burst, perSecond, ok := l.LoginFailureRate()
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failures == nil {
		a.failures = map[netip.Addr]*rate.Limiter{}
	}
	b := a.failures[client]
	if b == nil {
		if len(a.failures) >= maxTrackedFailures {
			for addr, old := range a.failures {
				if old.TokensAt(now) >= float64(old.Burst()) {
					delete(a.failures, addr)
				}
			}
			if len(a.failures) >= maxTrackedFailures {
				return // memory stays bounded; this address goes uncounted for now
			}
		}
		b = rate.NewLimiter(rate.Limit(perSecond), burst)
		a.failures[client] = b
	}
	b.AllowN(now, 1)
}

// facts is what policy knows of the session now.
func (s *session) facts() policy.SessionFacts {
	return policy.SessionFacts{
		Client:        s.clientPeer,
		ListenerAddr:  s.clientLocal,
		User:          s.user,
		LoggedIn:      s.loggedIn,
		ClientTLS:     s.ftps.client != nil,
		ProtectedData: prot(s.ftps.prot) == 'P',
	}
}

// admit applies the session limits and the client rules before anything
// costly happens: a refused client hears 421 (in clear text; an implicit
// FTPS client, which expects TLS first, is just closed) and no upstream
// connection is made. It returns whether the session may go on; an
// admitted session must be released with s.srv.adm.leave.
func (s *session) admit() bool {
	d := s.srv.adm.admit(s.cfg.Limits, s.clientPeer.Addr(), time.Now())
	kind := "limit"
	if d.Allow {
		if d = s.cfg.Policy.Session(s.facts()); !d.Allow {
			kind = "policy"
			s.srv.adm.leave(s.clientPeer.Addr())
		}
	}
	if d.Allow {
		return true
	}
	s.log.Warn("session refused", zap.String("rule", d.Rule), zap.String("reason", d.Reason))
	s.result = "refused"
	s.deny(kind, "", d.Rule, d.Reason, d.Code)
	if !s.ftps.implicit {
		s.ctl.replyf(d.Code, "%s", d.Text)
	}
	return false
}
