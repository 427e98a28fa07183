package proxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/policy"
	"go.uber.org/zap"
)

// dataPorts owns everything a data connection needs before it is up: the
// listening ports, the peers they wait for, and the firewall pinholes that
// admit those peers, with the reference counts that let several sessions
// share one port and one pinhole. A data plan asks it for "a port for peer
// P" (expect), admits the peer (admit), waits for its connection (accept),
// stops expecting once the transfer's legs are up (leave) and gives the port
// back (release); pinholes open and close in here only.
//
// One listening port serves many sessions at once as long as the peers they
// expect differ: an accepted connection goes to the session expecting its
// source address, so a Kubernetes Service with a handful of data ports
// carries hundreds of concurrent transfers. Two expectations of the same peer
// never share a port; when every port is taken for that peer, expect waits a
// little for one to free up, then gives up (the client hears 425), never the
// wrong session.
type dataPorts struct {
	cfg atomic.Pointer[dataPortsConfig] // swapped on reload: new expectations use the new one
	fw  nat.Firewall

	mu        sync.Mutex
	listeners map[netip.AddrPort]*sharedListener
	order     *portOrder     // the range's ports, least recently used first; nil without a range
	busy      map[uint16]int // transfers running on connections accepted on a port
	freed     chan struct{}  // closed and replaced whenever an expectation ends

	// Sessions behind one balancer that sends PROXY headers can wait on the
	// same data port with the same pinhole (balancer, us, port): the kernel
	// element goes only when the last of them closes it. pinMu guards the
	// map and the states' counts, never across a firewall call.
	pinMu   sync.Mutex
	pinRefs map[nat.Pinhole]*pinState

	lns, pinholes atomic.Int64 // open now, for Stats

	// closing counts the firewall calls that run off the session's path
	// (a kernel-forwarded flow's one-shot removal in awaitFlow and its
	// close in forwardedTransfer; the pinhole a PROXY-header delivery
	// closes); the server waits for them before it stops.
	closing sync.WaitGroup
}

// dataPortsConfig is what the data ports are built from.
type dataPortsConfig struct {
	// Ports is the range to listen in; the zero value means a fresh
	// kernel-chosen port for each expectation.
	Ports nat.PortRange
	// PinholeTTL is how long a pinhole waits for its peer; zero means the
	// firewall's default.
	PinholeTTL time.Duration
	// ProxyHeader reports whether connections from this address are a
	// trusted balancer's that start with a PROXY header; nil means none.
	ProxyHeader func(netip.Addr) bool
	// KeepAlive is TCP keepalive on accepted data connections.
	KeepAlive net.KeepAliveConfig
	// DataPeer decides whether a connection from `from` may serve a session
	// that expects peer (a trusted data source such as a balancer).
	DataPeer func(peer, from netip.Addr) policy.Decision
	Log      *zap.Logger
	Observer Observer
}

func newDataPorts(cfg dataPortsConfig, fw nat.Firewall) *dataPorts {
	h := &dataPorts{
		fw:        fw,
		listeners: map[netip.AddrPort]*sharedListener{},
		busy:      map[uint16]int{},
		freed:     make(chan struct{}),
		pinRefs:   map[nat.Pinhole]*pinState{},
	}
	h.reconfigure(cfg)
	return h
}

// reconfigure makes cfg apply to new expectations and accepted connections;
// listeners already open stay until their last expectation is released.
func (h *dataPorts) reconfigure(cfg dataPortsConfig) {
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.DataPeer == nil {
		cfg.DataPeer = func(peer, from netip.Addr) policy.Decision {
			return policy.Decision{Reason: "not the expected peer " + peer.String()}
		}
	}
	h.cfg.Store(&cfg)
}

func (h *dataPorts) conf() *dataPortsConfig { return h.cfg.Load() }

// portOrder keeps the ports of the range least recently used first. A port
// goes to the back when it is reserved, when its listener closes and when a
// transfer on it ends, so the front is the port that has rested longest: a
// peer that dials from a fixed port (servers in active mode use port 20)
// would otherwise meet its own previous connection, still in TIME_WAIT, on
// the same four-tuple. reserve takes the front port unless that peer already
// waits there: O(1) in the usual case, where a scan for the oldest port was
// once the biggest cost of a small transfer.
type portOrder struct {
	r  nat.PortRange
	l  list.List
	at map[uint16]*list.Element
}

// newPortOrder returns r's ports in a random first order, so that
// processes started together do not all begin at the bottom of the range.
func newPortOrder(r nat.PortRange) *portOrder {
	o := &portOrder{r: r, at: map[uint16]*list.Element{}}
	n := int(r.Hi) - int(r.Lo) + 1
	for _, i := range rand.Perm(n) {
		p := uint16(int(r.Lo) + i)
		o.at[p] = o.l.PushBack(p)
	}
	return o
}

// used moves port to the back.
func (o *portOrder) used(port uint16) {
	if e := o.at[port]; e != nil {
		o.l.MoveToBack(e)
	}
}

// expectWait bounds the wait for a port when all are taken for one peer.
const expectWait = 5 * time.Second

// sharedListener is one listening socket and the expectations it serves.
type sharedListener struct {
	ln      *net.TCPListener
	addr    netip.AddrPort
	waiters map[netip.Addr]*dataPort
	done    chan struct{} // closed when the accept loop has ended
}

// dataPort is one session's expectation of one data connection from peer,
// on a (possibly shared) listening port, with the pinhole that admits the
// peer once admit is called.
type dataPort struct {
	ports  *dataPorts
	addr   netip.AddrPort // where we listen
	peer   netip.Addr     // who may connect
	hop    netip.Addr     // the address the kernel sees for peer (a balancer sending PROXY headers, or peer)
	conns  chan *net.TCPConn
	pinMu  sync.Mutex // held across the pinhole's close, so that a second unpin waits for it
	pin    nat.Pinhole
	pinned bool // pin is open
	closed bool
	left   *sharedListener // the listener leave took this expectation off, for release to close; under ports.mu
}

// expect reserves a data port on ip for one connection from peer, arriving
// from hop (peer itself, or the balancer in front of it).
func (h *dataPorts) expect(ctx context.Context, ip, peer, hop netip.Addr) (*dataPort, error) {
	dp, err := h.reserveWait(ctx, ip, peer.Unmap())
	if err != nil {
		return nil, fmt.Errorf("data port on %s for %s: %w", ip, peer, err)
	}
	dp.hop = hop.Unmap()
	return dp, nil
}

// reserveWait reserves a port, waiting up to expectWait for one to free up
// when every port is taken for peer.
func (h *dataPorts) reserveWait(ctx context.Context, ip, peer netip.Addr) (*dataPort, error) {
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
func (h *dataPorts) reserve(ip, peer netip.Addr) (*dataPort, error) {
	r := h.conf().Ports
	if r.Lo == 0 { // no range: a fresh kernel-chosen port each time
		return h.attach(ip, 0, peer)
	}
	if h.order == nil || h.order.r != r { // first use, or a reload changed the range
		h.order = newPortOrder(r)
	}
	e := h.order.l.Front()
	for range h.order.l.Len() { // each port once: one that moves to the back is not met again
		next := e.Next()
		port := e.Value.(uint16)
		if sl := h.listeners[netip.AddrPortFrom(ip, port)]; sl == nil || sl.waiters[peer] == nil {
			dl, err := h.attach(ip, port, peer)
			if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
				if err == nil {
					h.order.used(port)
				}
				return dl, err
			}
			h.order.used(port) // another socket holds it: last in line
		}
		e = next
	}
	return nil, errNoPort
}

// rested marks port as just used (see portOrder). h.mu is held.
func (h *dataPorts) rested(port uint16) {
	if h.order != nil {
		h.order.used(port)
	}
}

// attach adds an expectation of peer to the listener on ip:port, opening
// the listener if there is none. h.mu is held.
func (h *dataPorts) attach(ip netip.Addr, port uint16, peer netip.Addr) (*dataPort, error) {
	key := netip.AddrPortFrom(ip, port)
	sl := h.listeners[key]
	if sl == nil || port == 0 {
		lc := listenConfig(h.conf().KeepAlive)
		l, err := lc.Listen(context.Background(), "tcp", key.String())
		if err != nil {
			return nil, err
		}
		ln := l.(*net.TCPListener)
		h.lns.Add(1)
		sl = &sharedListener{ln: ln, addr: addrPortOf(ln.Addr()), waiters: map[netip.Addr]*dataPort{},
			done: make(chan struct{})}
		h.listeners[sl.addr] = sl
		go h.acceptLoop(sl)
	}
	dl := &dataPort{ports: h, addr: sl.addr, peer: peer, conns: make(chan *net.TCPConn, 1)}
	sl.waiters[peer] = dl
	return dl, nil
}

// acceptLoop hands each accepted connection to the expectation of its
// source address; anything unexpected is closed and logged.
func (h *dataPorts) acceptLoop(sl *sharedListener) {
	defer close(sl.done)
	for {
		c, err := sl.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or similar: the waiters time out if it lasts.
			h.conf().Log.Error("data listener accept", zap.Stringer("listener", sl.addr), zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if h.conf().ProxyHeader != nil && h.conf().ProxyHeader(addrPortOf(c.RemoteAddr()).Addr()) {
			// The header may be slow to come (headerTimeout at most):
			// read it aside. Its delivery closes a pinhole, which the
			// server waits for before it stops.
			h.closing.Go(func() { h.deliverProxied(sl, c) })
			continue
		}
		h.deliver(sl, c, addrPortOf(c.RemoteAddr()))
	}
}

// deliverProxied reads the PROXY header of a balancer's data connection and
// delivers the connection by the source the header names.
func (h *dataPorts) deliverProxied(sl *sharedListener, c *net.TCPConn) {
	src, err := readProxyHeader(c)
	if err != nil {
		h.refuse(c, addrPortOf(c.RemoteAddr()), sl, "", "bad PROXY header: "+err.Error())
		return
	}
	h.deliver(sl, c, src)
}

// deliver hands c, from `from`, to the expectation it belongs to, or refuses
// it.
func (h *dataPorts) deliver(sl *sharedListener, c *net.TCPConn, from netip.AddrPort) {
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
		h.refuse(c, from, sl, want, why)
		return
	}
	// Its one connection has come: the pinhole goes now, while the client
	// sends its transfer command, not on the path of the transfer's first
	// byte. The connection runs on as established.
	dl.unpin(context.Background())
}

// refuse closes a data connection that serves no expectation, and says so.
func (h *dataPorts) refuse(c *net.TCPConn, from netip.AddrPort, sl *sharedListener, want, why string) {
	h.conf().Log.Warn("data connection refused", zap.Stringer("from", from), zap.String("want", want),
		zap.Stringer("listener", sl.addr), zap.String("reason", why))
	h.conf().Observer.Observe(DataRefusedEvent{From: from, Listener: sl.addr, Reason: why})
	c.Close()
}

// match finds the expectation an accepted connection from `from` belongs
// to. A trusted data source (a load balancer that rewrites sources) can
// only be matched when one session is waiting on the port. h.mu is held.
func (h *dataPorts) match(sl *sharedListener, from netip.Addr) (*dataPort, string) {
	if dl := sl.waiters[from]; dl != nil {
		return dl, ""
	}
	var only *dataPort
	for _, dl := range sl.waiters {
		only = dl
	}
	if only == nil {
		return nil, "no data connection expected on this port"
	}
	d := h.conf().DataPeer(only.peer, from)
	if !d.Allow {
		return nil, d.Reason
	}
	if len(sl.waiters) > 1 {
		return nil, "trusted source, but several sessions wait on this port"
	}
	h.conf().Log.Info("data connection from trusted source", zap.Stringer("from", from), zap.String("reason", d.Reason))
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

// leave ends the expectation: its pinhole closes, a connection delivered but
// never taken is closed, and other expectations of the same peer may take
// the port. A listener that no expectation waits on any longer stays open
// until release, so that its close and the hand-off to its accept loop run
// after the client's final reply, not between the 150 and the transfer's
// first byte; a connection to it meanwhile is closed and logged as
// unexpected, as one on a shared port always was. nil and a second leave
// are fine.
func (dl *dataPort) leave() {
	if dl == nil {
		return
	}
	h := dl.ports
	// The kernel state must go even when the session's context is done.
	dl.unpin(context.Background())
	h.mu.Lock()
	if dl.closed {
		h.mu.Unlock()
		return
	}
	dl.closed = true
	if sl := h.listeners[dl.addr]; sl != nil && sl.waiters[dl.peer] == dl {
		delete(sl.waiters, dl.peer)
		dl.left = sl
	}
	h.mu.Unlock()
	// A connection delivered but never taken is closed here.
	select {
	case c := <-dl.conns:
		c.Close()
	default:
	}
	h.mu.Lock()
	h.broadcastFreed()
	h.mu.Unlock()
}

// release ends the expectation as leave does and closes the listener it
// left, unless another expectation waits there by now. Waiters for a port
// hear of the close only once the listener is really closed, so that they
// can bind the port again. nil and a second release are fine.
func (dl *dataPort) release() {
	if dl == nil {
		return
	}
	dl.leave()
	h := dl.ports
	h.mu.Lock()
	sl := dl.left
	dl.left = nil
	if sl == nil || h.listeners[sl.addr] != sl || len(sl.waiters) > 0 {
		h.mu.Unlock()
		return
	}
	delete(h.listeners, sl.addr)
	h.mu.Unlock()
	sl.ln.Close()
	<-sl.done
	h.lns.Add(-1)
	h.mu.Lock()
	h.rested(sl.addr.Port())
	h.broadcastFreed()
	h.mu.Unlock()
}

// broadcastFreed wakes the reservations waiting for a port (reserveWait).
// h.mu is held.
func (h *dataPorts) broadcastFreed() {
	close(h.freed)
	h.freed = make(chan struct{})
}

// hold records that a data connection accepted on port carries a transfer
// now; the port counts as in use until the returned func is called. That
// func also marks the port recently used for the cooldown, since the peer's
// side of that connection may linger (TIME_WAIT, or a server that closes
// late) and a peer dialing from a fixed port would meet it.
func (h *dataPorts) hold(port uint16) (release func()) {
	r := h.conf().Ports
	if port < r.Lo || port > r.Hi {
		return func() {}
	}
	h.mu.Lock()
	h.busy[port]++
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		if h.busy[port]--; h.busy[port] <= 0 {
			delete(h.busy, port)
		}
		h.rested(port)
		h.mu.Unlock()
	}
}

// usage counts the ports of the range that have a listener or carry a
// transfer, and the size of the range (0 for kernel-chosen ports).
func (h *dataPorts) usage() (inUse, total int) {
	r := h.conf().Ports
	if r.Lo == 0 {
		return 0, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ports := make(map[uint16]bool, len(h.listeners)+len(h.busy))
	for ap := range h.listeners {
		if p := ap.Port(); p >= r.Lo && p <= r.Hi {
			ports[p] = true
		}
	}
	for p := range h.busy {
		ports[p] = true
	}
	return len(ports), int(r.Hi) - int(r.Lo) + 1
}

// accept returns the expected data connection, or errDataTimeout at the
// deadline.
func (dl *dataPort) accept(ctx context.Context, deadline time.Time) (*net.TCPConn, error) {
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

// String describes the expectation for logs.
func (dl *dataPort) String() string {
	return fmt.Sprintf("%s for %s", dl.addr, dl.peer)
}

// admit opens the pinhole that lets the expected peer reach this port. When
// via is valid the peer was told to connect to via (the server's address, in
// the transparent modes) and the firewall diverts that flow here.
func (dl *dataPort) admit(ctx context.Context, via netip.AddrPort) error {
	p := nat.Pinhole{Peer: dl.hop, Local: dl.addr, Intercept: via}
	if err := dl.ports.openPinhole(ctx, p); err != nil {
		return err
	}
	dl.pinMu.Lock()
	dl.pin, dl.pinned = p, true
	dl.pinMu.Unlock()
	return nil
}

// unpin closes the pinhole, if open. The accept loop that delivered the
// connection and the session's release may both call it: one closes, and
// the other returns only once the pinhole is closed.
func (dl *dataPort) unpin(ctx context.Context) {
	dl.pinMu.Lock()
	defer dl.pinMu.Unlock()
	if dl.pinned {
		dl.pinned = false
		dl.ports.closePinhole(ctx, dl.pin)
	}
}

// openPinhole asks the firewall to admit p and counts the reference.
//
// The firewall calls of different pinholes run at once, so that the
// firewall can carry them in one netlink batch; those of one pinhole (shared
// behind a PROXY-header balancer) run one after the other, in the order
// they came, so that a late Close never removes the element an Open after it
// added.
func (h *dataPorts) openPinhole(ctx context.Context, p nat.Pinhole) error {
	st := h.pinUse(p)
	defer h.pinUnuse(p, st)
	st.mu.Lock()
	defer st.mu.Unlock()
	start := time.Now()
	err := h.fw.Open(ctx, p, h.conf().PinholeTTL)
	h.conf().Observer.Observe(PinholeEvent{Op: "open", Pinhole: p, Duration: time.Since(start), Err: err})
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", p, err)
	}
	h.pinholes.Add(1)
	ttl := h.conf().PinholeTTL
	if ttl <= 0 {
		ttl = nat.DefaultTTL
	}
	h.pinMu.Lock()
	st.refs++
	st.expires = start.Add(ttl) // every open refreshes the element's timeout
	h.pinMu.Unlock()
	return nil
}

// pinState is one pinhole: how many expectations use it, when the firewall
// will expire it if nobody comes, and the lock that orders its firewall
// calls.
type pinState struct {
	mu      sync.Mutex // held across each firewall call for this pinhole
	users   int        // calls holding or waiting for mu; under pinMu
	refs    int        // opens not yet closed; under pinMu
	expires time.Time  // under pinMu
}

// pinUse returns p's state, made if new, counted as in use until pinUnuse.
func (h *dataPorts) pinUse(p nat.Pinhole) *pinState {
	h.pinMu.Lock()
	defer h.pinMu.Unlock()
	st := h.pinRefs[p]
	if st == nil {
		st = &pinState{}
		h.pinRefs[p] = st
	}
	st.users++
	return st
}

// pinUnuse ends a use of p's state; a state nobody uses or holds open goes.
func (h *dataPorts) pinUnuse(p nat.Pinhole, st *pinState) {
	h.pinMu.Lock()
	defer h.pinMu.Unlock()
	if st.users--; st.users == 0 && st.refs == 0 {
		delete(h.pinRefs, p)
	}
}

// pinholeInfo lists the open pinholes for snapshots.
func (h *dataPorts) pinholeInfo(now time.Time) []PinholeInfo {
	h.pinMu.Lock()
	defer h.pinMu.Unlock()
	out := make([]PinholeInfo, 0, len(h.pinRefs))
	for p, st := range h.pinRefs {
		if st.refs == 0 {
			continue // being opened, or closed
		}
		out = append(out, PinholeInfo{Pinhole: p, Peer: p.Peer, Local: p.Local, Intercept: p.Intercept,
			Remaining: max(st.expires.Sub(now), 0), Refs: st.refs})
	}
	slices.SortFunc(out, func(a, b PinholeInfo) int { return strings.Compare(a.Pinhole.String(), b.Pinhole.String()) })
	return out
}

// closePinhole drops a reference; the last one removes the kernel element.
func (h *dataPorts) closePinhole(ctx context.Context, p nat.Pinhole) {
	st := h.pinUse(p)
	defer h.pinUnuse(p, st)
	st.mu.Lock()
	defer st.mu.Unlock()
	h.pinholes.Add(-1)
	h.pinMu.Lock()
	st.refs = max(st.refs-1, 0)
	last := st.refs == 0
	h.pinMu.Unlock()
	if !last {
		return
	}
	start := time.Now()
	err := h.fw.Close(ctx, p)
	h.conf().Observer.Observe(PinholeEvent{Op: "close", Pinhole: p, Duration: time.Since(start), Err: err})
	if err != nil {
		h.conf().Log.Error("close pinhole", zap.Stringer("pinhole", p), zap.Error(err))
	}
}
