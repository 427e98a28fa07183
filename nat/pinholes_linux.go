package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

const (
	// expiryGrace is how long after its timeout a pinhole we added may still
	// be in the kernel (our clock starts before the kernel's does).
	expiryGrace = time.Second
	// minSweep is the size of the pinhole bookkeeping map below which
	// expired entries are not swept.
	minSweep = 1024
)

// Open adds the pinhole with a timeout, or refreshes one we added: one
// netlink batch. A refresh deletes and re-adds the element in that batch,
// because kernels before 6.10 ignore a new timeout on an existing element.
func (f *kernelFirewall) Open(ctx context.Context, p Pinhole, ttl time.Duration) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	life, err := lifetime(ttl, f.cfg.TTL)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	els, err := f.elementsFor(n)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	if err := f.acquire(ctx); err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	defer f.release()
	if f.closed {
		return fmt.Errorf("open pinhole %s: %w", n, shutdownError{})
	}

	now := time.Now()
	exp, known := f.open[n]
	refresh := known && now.Before(exp.Add(expiryGrace))
	if refresh {
		err = f.queueRemoveAll(els)
	}
	add := func(err error) error {
		for _, e := range els {
			if err == nil {
				err = f.conn.SetAddElements(e.set, []nftables.SetElement{{Key: e.key, Val: e.val, Timeout: life}})
			}
		}
		return f.flush(err)
	}
	err = add(err)
	if err != nil && refresh && !f.destroy && errors.Is(err, unix.ENOENT) {
		// It expired between our look and the kernel's delete. Adding
		// an element that exists is no error.
		err = add(nil)
	}
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, f.explainChange(els[0].set, err))
	}
	f.open[n] = now.Add(life)
	f.sweep(now)
	if ce := f.log.Check(zap.DebugLevel, "pinhole open"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n), zap.Duration("ttl", life), zap.Bool("refresh", refresh))
	}
	return nil
}

// Close deletes the pinhole's element: one netlink batch. After Shutdown
// there is nothing left to close.
func (f *kernelFirewall) Close(ctx context.Context, p Pinhole) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	els, err := f.elementsFor(n)
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	if err := f.acquire(ctx); err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	defer f.release()
	if f.closed {
		return nil
	}
	err = f.flush(f.queueRemoveAll(els))
	if !f.destroy && errors.Is(err, unix.ENOENT) {
		// Expired or never opened. The batch failed as a whole, so with
		// more than one element delete them one at a time.
		err = nil
		for i := 0; len(els) > 1 && i < len(els); i++ {
			if e := f.flush(f.queueRemove(els[i].set, els[i].key)); e != nil && !errors.Is(e, unix.ENOENT) {
				err = e
			}
		}
	}
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, f.explainChange(els[0].set, err))
	}
	delete(f.open, n)
	if ce := f.log.Check(zap.DebugLevel, "pinhole closed"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n))
	}
	return nil
}

// queueRemove queues the deletion of elements of set: destroy where the
// kernel has it (absent is fine), delete otherwise (absent is ENOENT).
func (f *kernelFirewall) queueRemove(set *nftables.Set, keys ...[]byte) error {
	els := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		els[i] = nftables.SetElement{Key: k}
	}
	if f.destroy {
		return f.conn.SetDestroyElements(set, els)
	}
	return f.conn.SetDeleteElements(set, els)
}

// queueRemoveAll queues the deletion of a pinhole's elements.
func (f *kernelFirewall) queueRemoveAll(els []element) error {
	for _, e := range els {
		if err := f.queueRemove(e.set, e.key); err != nil {
			return err
		}
	}
	return nil
}

// sweep forgets pinholes that have certainly expired in the kernel, once
// the map has doubled since the last sweep, so it stays bounded.
func (f *kernelFirewall) sweep(now time.Time) {
	if len(f.open) < f.sweepAt {
		return
	}
	for p, exp := range f.open {
		if now.After(exp.Add(expiryGrace)) {
			delete(f.open, p)
		}
	}
	f.sweepAt = max(minSweep, 2*len(f.open))
}

// element is one set or map element that a pinhole consists of.
type element struct {
	set      *nftables.Set
	key, val []byte
}

// elementsFor returns the elements of a normalized pinhole: its pinhole
// set element first, then, if it diverts, its divert map element.
func (f *kernelFirewall) elementsFor(p Pinhole) ([]element, error) {
	set, err := f.setFor(p)
	if err != nil {
		return nil, err
	}
	els := []element{{set: set, key: elementKey(p)}}
	if p.diverts() {
		m, err := f.divertFor(p)
		if err != nil {
			return nil, err
		}
		key, val := divertElement(p)
		els = append(els, element{set: m, key: key, val: val})
	}
	return els, nil
}

func (f *kernelFirewall) setFor(p Pinhole) (*nftables.Set, error) {
	if p.Peer.Is4() {
		if f.set4 == nil {
			return nil, fmt.Errorf("no IPv4 pinhole set: table %s %s is of family %s", f.cfg.Family, f.cfg.Table, f.cfg.Family)
		}
		return f.set4, nil
	}
	if f.set6 == nil {
		return nil, fmt.Errorf("no IPv6 pinhole set: table %s %s is of family %s", f.cfg.Family, f.cfg.Table, f.cfg.Family)
	}
	return f.set6, nil
}

// explainChange adds what to do to an error from changing set's elements.
func (f *kernelFirewall) explainChange(set *nftables.Set, err error) error {
	if f.cfg.Mode == ModeExternalSet && errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w (set %s %s %s is gone: was the ruleset reloaded without it? restore it, then ftpgate can continue)",
			err, f.cfg.Family, f.cfg.Table, set.Name)
	}
	return explain(err)
}

// elementKey encodes a normalized pinhole as a set key: peer address, local
// address, local port in network byte order padded to 4 bytes.
func elementKey(p Pinhole) []byte {
	return appendAddrPort(p.Peer.AsSlice(), p.Local)
}

// appendAddrPort appends ap as nftables stores "address . inet_service" in
// a concatenation: the address, then the port in network byte order padded
// to 4 bytes.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	b = append(b, ap.Addr().AsSlice()...)
	return append(b, byte(ap.Port()>>8), byte(ap.Port()), 0, 0)
}

// divertFor returns the divert map for a normalized, diverting pinhole.
func (f *kernelFirewall) divertFor(p Pinhole) (*nftables.Set, error) {
	if f.divert4 == nil {
		return nil, fmt.Errorf("diverting needs interception: set firewall intercept mode %s or %s",
			InterceptRedirect, InterceptTProxy)
	}
	if p.Peer.Is4() {
		return f.divert4, nil
	}
	return f.divert6, nil
}

// divertElement encodes a normalized, diverting pinhole as a divert map
// element: key peer . intercept address . intercept port, value local
// address . local port; ports in network byte order padded to 4 bytes.
func divertElement(p Pinhole) (key, val []byte) {
	return appendAddrPort(p.Peer.AsSlice(), p.Intercept), appendAddrPort(nil, p.Local)
}
