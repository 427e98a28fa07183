package nat

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"

	"go.uber.org/zap"
)

var _ AddrSource = (*Follower)(nil)

// Follower tracks the addresses of one interface live, so that
// "interface:NAME" in the configuration means that interface's current
// address: a change (DHCP, PPP reconnect) takes effect for the next
// session or PASV without a restart. On Linux it follows a netlink
// address subscription (and a link subscription, so that an interface
// deleted and created again under the same name is followed too). Safe
// for concurrent use. Create it with FollowInterface; end it with Close.
type Follower struct {
	name string
	log  *zap.Logger

	mu    sync.Mutex
	index int      // interface index; 0 while no interface has the name
	addrs []ifAddr // current addresses, in the order first seen
	seq   uint64   // counts addresses seen, for that order
	best4 netip.Addr
	best6 netip.Addr

	closeOnce sync.Once
	stop      func() error // ends the subscription; set by FollowInterface
	closeErr  error
}

// ifAddr is one address of the followed interface, as the kernel reports
// it: IFA_F_* flags and RT_SCOPE_* scope.
type ifAddr struct {
	addr  netip.Addr
	flags int
	scope int
	seq   uint64
}

// Address flags and scopes, as in <linux/if_addr.h> and <linux/rtnetlink.h>
// (here, so that choosing an address is plain code on every platform).
const (
	ifaFSecondary  = 0x01 // IPv4 secondary; for IPv6 IFA_F_TEMPORARY (privacy address)
	ifaFDadFailed  = 0x08
	ifaFDeprecated = 0x20
	ifaFTentative  = 0x40
	scopeHost      = 254
)

func newFollower(name string, log *zap.Logger) *Follower {
	if log == nil {
		log = zap.NewNop()
	}
	return &Follower{name: name, log: log}
}

// Name returns the name of the interface followed.
func (f *Follower) Name() string { return f.name }

// Addr returns the interface's current address of one family (v6: IPv6,
// otherwise IPv4), and false if it has none that is usable.
//
// Tentative (duplicate address detection still running), DAD-failed and
// deprecated addresses are skipped, and so are host-scope ones. Among the
// rest, global scope comes first, then site, then link scope (an IPv6
// link-local address is returned with the interface name as its zone);
// then primary addresses before IPv4 secondaries and IPv6 temporary
// (privacy) addresses; then the address seen first, so that the choice is
// stable while a new address is added next to the current one.
func (f *Follower) Addr(v6 bool) (netip.Addr, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.best4
	if v6 {
		a = f.best6
	}
	return a, a.IsValid()
}

// Close ends the subscription and waits for its goroutines. Later Addr
// calls return the last addresses seen. Closing again returns the first
// result.
func (f *Follower) Close() error {
	f.closeOnce.Do(func() {
		if f.stop != nil {
			f.closeErr = f.stop()
		}
	})
	return f.closeErr
}

// reset replaces what f knows: the interface now has index (0: gone) and
// exactly addrs.
func (f *Follower) reset(index int, addrs []ifAddr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = index
	f.addrs = f.addrs[:0]
	for _, a := range addrs {
		f.upsert(a)
	}
	f.choose()
}

// currentIndex returns the index of the followed interface, 0 if none.
func (f *Follower) currentIndex() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// update applies one address notification of interface index: add (or
// change flags) or delete. Notifications of other interfaces are ignored.
func (f *Follower) update(index int, a ifAddr, add bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if index == 0 || index != f.index || !a.addr.IsValid() {
		return
	}
	if add {
		f.upsert(a)
	} else {
		f.addrs = slices.DeleteFunc(f.addrs, func(x ifAddr) bool { return x.addr == a.addr })
	}
	f.choose()
}

// upsert adds a, or updates the flags and scope of the address it names
// and keeps its place. f.mu is held.
func (f *Follower) upsert(a ifAddr) {
	a.addr = a.addr.Unmap().WithZone("")
	if i := slices.IndexFunc(f.addrs, func(x ifAddr) bool { return x.addr == a.addr }); i >= 0 {
		f.addrs[i].flags, f.addrs[i].scope = a.flags, a.scope
		return
	}
	f.seq++
	a.seq = f.seq
	f.addrs = append(f.addrs, a)
}

// choose recomputes the chosen addresses and logs a change. f.mu is held.
func (f *Follower) choose() {
	for _, v6 := range []bool{false, true} {
		best, _ := pickAddr(f.addrs, v6)
		if best.Is6() && best.IsLinkLocalUnicast() {
			best = best.WithZone(f.name)
		}
		old := &f.best4
		if v6 {
			old = &f.best6
		}
		if best == *old {
			continue
		}
		family := "IPv4"
		if v6 {
			family = "IPv6"
		}
		fields := []zap.Field{zap.String("interface", f.name), zap.String("family", family)}
		if old.IsValid() {
			fields = append(fields, zap.Stringer("previous", *old))
		}
		if best.IsValid() {
			f.log.Info("interface address", append(fields, zap.Stringer("address", best))...)
		} else {
			f.log.Warn("interface has no usable address", fields...)
		}
		*old = best
	}
}

// pickAddr returns the best usable address of one family, as Addr
// documents.
func pickAddr(addrs []ifAddr, v6 bool) (netip.Addr, bool) {
	var best *ifAddr
	for i := range addrs {
		a := &addrs[i]
		if a.addr.Is6() != v6 || a.flags&(ifaFTentative|ifaFDadFailed|ifaFDeprecated) != 0 || a.scope >= scopeHost {
			continue
		}
		if best == nil || compareAddrs(*a, *best) < 0 {
			best = a
		}
	}
	if best == nil {
		return netip.Addr{}, false
	}
	return best.addr, true
}

// compareAddrs orders usable addresses, best first.
func compareAddrs(a, b ifAddr) int {
	return cmp.Or(
		cmp.Compare(a.scope, b.scope), // universe 0 < site 200 < link 253
		cmp.Compare(a.flags&ifaFSecondary, b.flags&ifaFSecondary),
		cmp.Compare(a.seq, b.seq),
	)
}
