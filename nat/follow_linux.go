package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// resubscribeAfter is how long a watcher waits before subscribing again
// after the kernel ended a subscription (e.g. its socket buffer overran).
const resubscribeAfter = time.Second

// FollowInterface starts following the addresses of the interface name in
// the calling thread's network namespace: it subscribes to address and
// link changes (AddrSubscribeWithOptions with ListExisting), then lists the
// current addresses, so that Addr answers as soon as it returns. It fails
// if no interface has that name. ctx bounds the setup only; the Follower
// runs until Close. log may be nil.
func FollowInterface(ctx context.Context, name string, log *zap.Logger) (*Follower, error) {
	if err := validateIfName(name); err != nil {
		return nil, fmt.Errorf("follow interface %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("follow interface %s: %w", name, err)
	}
	// The sockets open in the calling thread's namespace: no setns, which
	// would need CAP_SYS_ADMIN even to enter the namespace one is in
	// (ftpgate runs with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only).
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("follow interface %s: open rtnetlink: %w", name, err)
	}
	w := &watcher{f: newFollower(name, log), h: h, done: make(chan struct{})}
	var addrCh chan netlink.AddrUpdate
	var linkCh chan netlink.LinkUpdate
	fail := func(err error) (*Follower, error) {
		// run drains what the subscriptions may still send until the
		// library closes their channels.
		w.wg.Add(1)
		go w.run(addrCh, linkCh)
		_ = w.stop()
		return nil, fmt.Errorf("follow interface %s: %w", name, err)
	}
	// Subscribe first, then list: a change between the two is in the
	// subscription, and applying notifications after the list leaves each
	// address as its last notification says.
	addrCh, err = w.subscribeAddrs()
	if err != nil {
		return fail(err)
	}
	linkCh, err = w.subscribeLinks()
	if err != nil {
		return fail(err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			err = errors.New("no interface of that name")
		}
		return fail(err)
	}
	if err := w.relist(link); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	w.wg.Add(1)
	go w.run(addrCh, linkCh)
	w.f.stop = w.stop
	return w.f, nil
}

// watcher feeds a Follower from netlink.
type watcher struct {
	f    *Follower
	h    *netlink.Handle // for listing; used by run only, once it started
	done chan struct{}   // closed by stop; ends the subscriptions
	wg   sync.WaitGroup
	once sync.Once
}

func (w *watcher) subscribeAddrs() (chan netlink.AddrUpdate, error) {
	ch := make(chan netlink.AddrUpdate, 64)
	err := netlink.AddrSubscribeWithOptions(ch, w.done, netlink.AddrSubscribeOptions{
		ListExisting:  true,
		ErrorCallback: w.subscriptionError,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	return ch, nil
}

func (w *watcher) subscribeLinks() (chan netlink.LinkUpdate, error) {
	ch := make(chan netlink.LinkUpdate, 16)
	err := netlink.LinkSubscribeWithOptions(ch, w.done, netlink.LinkSubscribeOptions{
		ErrorCallback: w.subscriptionError,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to interface changes: %w", err)
	}
	return ch, nil
}

func (w *watcher) subscriptionError(err error) {
	select {
	case <-w.done: // the socket was closed on purpose
	default:
		w.f.log.Warn("netlink subscription error", zap.String("interface", w.f.name), zap.Error(err))
	}
}

// relist replaces the Follower's addresses by the kernel's list for link.
func (w *watcher) relist(link netlink.Link) error {
	list, err := w.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	addrs := make([]ifAddr, 0, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			addrs = append(addrs, ifAddr{addr: ip, flags: a.Flags, scope: a.Scope})
		}
	}
	w.f.reset(link.Attrs().Index, addrs)
	return nil
}

// run applies notifications until stop, subscribing again (and listing
// again) when the kernel ends a subscription.
func (w *watcher) run(addrCh chan netlink.AddrUpdate, linkCh chan netlink.LinkUpdate) {
	defer w.wg.Done()
	var retry <-chan time.Time
	done := w.done
	stopping := false
	for !stopping || addrCh != nil || linkCh != nil {
		select {
		case <-done:
			// Keep draining: the library's goroutines close the channels
			// once their sockets are closed.
			stopping, retry = true, nil
			done = nil // a nil channel: this case never fires again
		case u, ok := <-addrCh:
			if !ok {
				addrCh = nil
				if !stopping {
					retry = time.After(resubscribeAfter)
				}
				continue
			}
			ip, valid := netip.AddrFromSlice(u.LinkAddress.IP)
			w.f.update(u.LinkIndex, ifAddr{addr: ip, flags: u.Flags, scope: u.Scope}, u.NewAddr && valid)
		case u, ok := <-linkCh:
			if !ok {
				linkCh = nil
				if !stopping {
					retry = time.After(resubscribeAfter)
				}
				continue
			}
			w.link(u)
		case <-retry:
			retry = nil
			addrCh, linkCh = w.resubscribe(addrCh, linkCh)
			if addrCh == nil || linkCh == nil {
				retry = time.After(resubscribeAfter)
			}
		}
	}
}

// link handles an interface appearing, disappearing or being renamed.
func (w *watcher) link(u netlink.LinkUpdate) {
	attrs := u.Link.Attrs()
	cur := w.f.currentIndex()
	switch {
	case u.Header.Type == unix.RTM_DELLINK && attrs.Index == cur:
		w.f.reset(0, nil)
		w.f.log.Warn("interface is gone; waiting for it to come back", zap.String("interface", w.f.name))
	case u.Header.Type == unix.RTM_NEWLINK && attrs.Index == cur && attrs.Name != w.f.name:
		w.f.reset(0, nil)
		w.f.log.Warn("interface was renamed; waiting for one of its name", zap.String("interface", w.f.name),
			zap.String("newName", attrs.Name))
	case u.Header.Type == unix.RTM_NEWLINK && attrs.Index != cur && attrs.Name == w.f.name:
		if err := w.relist(u.Link); err != nil {
			w.f.log.Warn("interface is back but its addresses cannot be listed", zap.String("interface", w.f.name),
				zap.Error(err))
			w.f.reset(attrs.Index, nil)
			return
		}
		w.f.log.Info("following interface", zap.String("interface", w.f.name), zap.Int("index", attrs.Index))
	}
}

// resubscribe renews the subscriptions that ended (nil channels) and
// lists the interface again.
func (w *watcher) resubscribe(addrCh chan netlink.AddrUpdate, linkCh chan netlink.LinkUpdate) (chan netlink.AddrUpdate, chan netlink.LinkUpdate) {
	var err error
	if addrCh == nil {
		if addrCh, err = w.subscribeAddrs(); err != nil {
			w.f.log.Warn("cannot subscribe to address changes again", zap.String("interface", w.f.name), zap.Error(err))
		}
	}
	if linkCh == nil {
		if linkCh, err = w.subscribeLinks(); err != nil {
			w.f.log.Warn("cannot subscribe to interface changes again", zap.String("interface", w.f.name), zap.Error(err))
		}
	}
	link, err := w.h.LinkByName(w.f.name)
	switch {
	case err != nil:
		w.f.reset(0, nil)
	default:
		if err := w.relist(link); err != nil {
			w.f.log.Warn("cannot list addresses", zap.String("interface", w.f.name), zap.Error(err))
		}
	}
	return addrCh, linkCh
}

// stop ends the subscriptions, waits for run, and releases the handle.
func (w *watcher) stop() error {
	w.once.Do(func() {
		close(w.done)
	})
	w.wg.Wait()
	w.h.Close()
	return nil
}
