package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// The data hub owns every data listener. One listening port serves many
// sessions at once as long as the peers they expect differ: an accepted
// connection goes to the session expecting its source address, so a
// Kubernetes Service with a handful of data ports carries hundreds of
// concurrent transfers. Two expectations of the same peer never share a
// port; when every port is taken for that peer, expect waits a little for
// one to free up, then gives up (the client hears 425), never the wrong
// session.

// portCooldown is how long a port that just closed is avoided if others are
// free: a peer that dials from a fixed port (servers in active mode use port
// 20) could otherwise meet its own previous connection, still in TIME_WAIT,
// on the same four-tuple.
const portCooldown = 60 * time.Second

// randomProbes is how many random ports expect tries before it scans the
// whole range for the least recently used one.
const randomProbes = 32

// expectWait bounds the wait for a port when all are taken for one peer.
const expectWait = 5 * time.Second

// errNoPort means no data port could be had for this peer.
var errNoPort = errors.New("no data port free for this peer")

type dataHub struct {
	srv *Server

	mu        sync.Mutex
	listeners map[netip.AddrPort]*sharedListener
	released  map[uint16]time.Time // when a port's listener last closed
	freed     chan struct{}        // closed and replaced whenever an expectation ends
}

func newDataHub(srv *Server) *dataHub {
	return &dataHub{
		srv:       srv,
		listeners: map[netip.AddrPort]*sharedListener{},
		released:  map[uint16]time.Time{},
		freed:     make(chan struct{}),
	}
}

// sharedListener is one listening socket and the expectations it serves.
type sharedListener struct {
	ln      *net.TCPListener
	addr    netip.AddrPort
	waiters map[netip.Addr]*dataListener
	done    chan struct{} // closed when the accept loop has ended
}

// dataListener is one session's expectation of one data connection from
// peer, on a (possibly shared) listening port, with the pinhole that admits
// the peer.
type dataListener struct {
	hub    *dataHub
	addr   netip.AddrPort // where we listen
	peer   netip.Addr     // who may connect
	hop    netip.Addr     // the address the kernel sees for peer (a balancer sending PROXY headers, or peer)
	divert netip.AddrPort // the address the peer will connect to, when the firewall diverts it here
	conns  chan *net.TCPConn
	pin    pinhole
	closed bool
}

// expect reserves a data port on ip for one connection from peer.
func (h *dataHub) expect(ctx context.Context, ip, peer netip.Addr) (*dataListener, error) {
	peer = peer.Unmap()
	deadline := time.Now().Add(expectWait)
	for {
		h.mu.Lock()
		dl, err := h.reserve(ip, peer)
		freed := h.freed
		h.mu.Unlock()
		if !errors.Is(err, errNoPort) || time.Now().After(deadline) {
			return dl, err
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

// reserve picks a port for peer: an existing listener on it not already
// expecting peer, or a new listener on a free port, preferring ports that
// have not closed recently. h.mu is held.
func (h *dataHub) reserve(ip, peer netip.Addr) (*dataListener, error) {
	r := h.srv.cfg.PassivePorts
	if r.Lo == 0 { // no range: a fresh kernel-chosen port each time
		return h.attach(ip, 0, peer)
	}
	n := int(r.Hi) - int(r.Lo) + 1
	now := time.Now()
	usable := func(port uint16) bool {
		sl := h.listeners[netip.AddrPortFrom(ip, port)]
		return sl == nil || sl.waiters[peer] == nil
	}
	cooling := func(port uint16) bool { return now.Sub(h.released[port]) < portCooldown }
	for range min(randomProbes, n) {
		port := uint16(int(r.Lo) + rand.IntN(n))
		if !usable(port) || cooling(port) {
			continue
		}
		dl, err := h.attach(ip, port, peer)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return dl, err
		}
	}
	// Scan: least recently released first, a random starting point among
	// equals.
	start := rand.IntN(n)
	tried := map[uint16]bool{}
	for {
		var best uint16
		var bestAt time.Time
		found := false
		for i := range n {
			port := uint16(int(r.Lo) + (start+i)%n)
			if tried[port] || !usable(port) {
				continue
			}
			if at := h.released[port]; !found || at.Before(bestAt) {
				best, bestAt, found = port, at, true
			}
		}
		if !found {
			return nil, errNoPort
		}
		tried[best] = true
		dl, err := h.attach(ip, best, peer)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return dl, err
		}
	}
}

// attach adds an expectation of peer to the listener on ip:port, opening
// the listener if there is none. h.mu is held.
func (h *dataHub) attach(ip netip.Addr, port uint16, peer netip.Addr) (*dataListener, error) {
	key := netip.AddrPortFrom(ip, port)
	sl := h.listeners[key]
	if sl == nil || port == 0 {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(key))
		if err != nil {
			return nil, err
		}
		h.srv.lns.Add(1)
		sl = &sharedListener{ln: ln, addr: addrPortOf(ln.Addr()), waiters: map[netip.Addr]*dataListener{},
			done: make(chan struct{})}
		h.listeners[sl.addr] = sl
		go h.acceptLoop(sl)
	}
	dl := &dataListener{hub: h, addr: sl.addr, peer: peer, conns: make(chan *net.TCPConn, 1)}
	sl.waiters[peer] = dl
	return dl, nil
}

// acceptLoop hands each accepted connection to the expectation of its
// source address; anything unexpected is closed and logged.
func (h *dataHub) acceptLoop(sl *sharedListener) {
	defer close(sl.done)
	for {
		c, err := sl.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or similar: the waiters time out if it lasts.
			h.srv.log.Error("data listener accept", zap.Stringer("listener", sl.addr), zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		pp := h.srv.cfg.ProxyProtocol
		if pp.Data && pp.trusted(addrPortOf(c.RemoteAddr()).Addr()) {
			// The header may be slow to come: read it aside.
			go h.deliverProxied(sl, c)
			continue
		}
		h.deliver(sl, c, addrPortOf(c.RemoteAddr()))
	}
}

// deliverProxied reads the PROXY header of a balancer's data connection and
// delivers the connection by the source the header names.
func (h *dataHub) deliverProxied(sl *sharedListener, c *net.TCPConn) {
	src, err := readProxyHeader(c)
	if err != nil {
		h.srv.log.Warn("data connection refused", zap.Stringer("from", addrPortOf(c.RemoteAddr())),
			zap.Stringer("listener", sl.addr), zap.String("reason", err.Error()))
		c.Close()
		return
	}
	h.deliver(sl, c, src)
}

// deliver hands c, from `from`, to the expectation it belongs to, or refuses
// it.
func (h *dataHub) deliver(sl *sharedListener, c *net.TCPConn, from netip.AddrPort) {
	h.mu.Lock()
	dl, why := h.match(sl, from.Addr())
	delivered := false
	if dl != nil {
		select {
		case dl.conns <- c:
			delivered = true
		default:
			why = "a data connection from this peer is already waiting"
		}
	}
	want := expected(sl)
	h.mu.Unlock()
	if !delivered {
		h.srv.log.Warn("data connection refused", zap.Stringer("from", from), zap.String("want", want),
			zap.Stringer("listener", sl.addr), zap.String("reason", why))
		c.Close()
	}
}

// match finds the expectation an accepted connection from `from` belongs
// to. A trusted data source (a load balancer that rewrites sources) can
// only be matched when one session is waiting on the port. h.mu is held.
func (h *dataHub) match(sl *sharedListener, from netip.Addr) (*dataListener, string) {
	if dl := sl.waiters[from]; dl != nil {
		return dl, ""
	}
	pol := h.srv.cfg.Policy
	var only *dataListener
	for _, dl := range sl.waiters {
		only = dl
	}
	if only == nil {
		return nil, "no data connection expected on this port"
	}
	d := pol.DataPeer(only.peer, from)
	if !d.Allow {
		return nil, d.Reason
	}
	if len(sl.waiters) > 1 {
		return nil, "trusted source, but several sessions wait on this port"
	}
	h.srv.log.Info("data connection from trusted source", zap.Stringer("from", from), zap.String("reason", d.Reason))
	return only, ""
}

// expected lists the peers a listener waits for, for logs. h.mu is held.
func expected(sl *sharedListener) string {
	var b strings.Builder
	for p := range sl.waiters {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// release ends an expectation; the last one closes the listener. Waiters
// for a port hear of it only once the listener is really closed, so that
// they can bind the port again.
func (h *dataHub) release(dl *dataListener) {
	h.mu.Lock()
	if dl.closed {
		h.mu.Unlock()
		return
	}
	dl.closed = true
	var closing *sharedListener
	if sl := h.listeners[dl.addr]; sl != nil && sl.waiters[dl.peer] == dl {
		delete(sl.waiters, dl.peer)
		if len(sl.waiters) == 0 {
			delete(h.listeners, dl.addr)
			closing = sl
		}
	}
	h.mu.Unlock()
	if closing != nil {
		closing.ln.Close()
		<-closing.done
		h.srv.lns.Add(-1)
	}
	// A connection delivered but never taken is closed here.
	select {
	case c := <-dl.conns:
		c.Close()
	default:
	}
	h.mu.Lock()
	if closing != nil {
		h.released[dl.addr.Port()] = time.Now()
	}
	close(h.freed)
	h.freed = make(chan struct{})
	h.mu.Unlock()
}

// touch records that a data connection accepted on port has just ended:
// the port then counts as recently used for the cooldown, since the peer's
// side of that connection may linger (TIME_WAIT, or a server that closes
// late) and a peer dialing from a fixed port would meet it.
func (h *dataHub) touch(port uint16) {
	r := h.srv.cfg.PassivePorts
	if port < r.Lo || port > r.Hi {
		return
	}
	h.mu.Lock()
	h.released[port] = time.Now()
	h.mu.Unlock()
}

// wait returns the expected data connection, or errDataTimeout at the
// deadline.
func (dl *dataListener) wait(ctx context.Context, deadline time.Time) (*net.TCPConn, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case c := <-dl.conns:
		return c, nil
	case <-t.C:
		return nil, errDataTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// errDataTimeout means the expected data connection did not arrive in time.
var errDataTimeout = errors.New("data connection did not arrive in time")

// String describes the expectation for logs.
func (dl *dataListener) String() string {
	return fmt.Sprintf("%s for %s", dl.addr, dl.peer)
}
