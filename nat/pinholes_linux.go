package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
// netlink batch, shared with other callers' Opens and Closes that wait
// meanwhile (see commitQueued). A refresh deletes and re-adds the element
// in that batch, because kernels before 6.10 ignore a new timeout on an
// existing element.
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
	return f.submit(ctx, &pinholeOp{p: n, els: els, life: life})
}

// Close deletes the pinhole's element: one netlink batch, shared as Open's
// is. After Shutdown there is nothing left to close.
func (f *kernelFirewall) Close(ctx context.Context, p Pinhole) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	els, err := f.elementsFor(n)
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	return f.submit(ctx, &pinholeOp{p: n, els: els, close: true})
}

// maxMerged is the most Opens and Closes one batch carries.
const maxMerged = 256

// pinholeOp is one caller's Open or Close, queued until a holder of the
// lock sends it, maybe in one batch with other callers' operations.
type pinholeOp struct {
	p     Pinhole // normalized
	els   []element
	life  time.Duration // an Open's timeout
	close bool
	done  chan error // its result; buffered, sent once
}

func (op *pinholeOp) verb() string {
	if op.close {
		return "close"
	}
	return "open"
}

// submit queues op and waits for its result. Whoever takes the lock sends
// what is queued (group commit): while one batch is in flight, the Opens
// and Closes of other callers gather and leave together in the next. ctx
// ends only the wait for a batch to take op; once taken, op completes.
func (f *kernelFirewall) submit(ctx context.Context, op *pinholeOp) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s pinhole %s: %w", op.verb(), op.p, err)
	}
	op.done = make(chan error, 1)
	f.queueMu.Lock()
	f.queue = append(f.queue, op)
	f.queueMu.Unlock()
	select {
	case err := <-op.done:
		return err
	case f.lock <- struct{}{}:
		defer f.release()
		for {
			// A holder before us may have taken op, and then sent its
			// result before it let go of the lock.
			select {
			case err := <-op.done:
				return err
			default:
				f.commitQueued()
			}
		}
	case <-ctx.Done():
		if f.dequeue(op) {
			return fmt.Errorf("%s pinhole %s: %w", op.verb(), op.p, ctx.Err())
		}
		return <-op.done // in a batch now
	}
}

// dequeue removes op from the queue and reports whether it was there.
func (f *kernelFirewall) dequeue(op *pinholeOp) bool {
	f.queueMu.Lock()
	defer f.queueMu.Unlock()
	i := slices.Index(f.queue, op)
	if i < 0 {
		return false
	}
	f.queue = slices.Delete(f.queue, i, i+1)
	return true
}

// commitQueued takes up to maxMerged queued operations, in order, and
// sends them; each gets its own result. The caller holds the lock.
//
// Several go in one batch only where none can fail on its own in ordinary
// use: with "destroy element", removing an absent element and adding an
// existing one are no errors. A batch fails as a whole, so when a merged
// one fails, its operations are sent again one at a time and each gets
// its own error.
func (f *kernelFirewall) commitQueued() {
	f.queueMu.Lock()
	ops := slices.Clone(f.queue[:min(len(f.queue), maxMerged)])
	f.queue = slices.Delete(f.queue, 0, len(ops))
	f.queueMu.Unlock()
	if len(ops) > 1 && f.destroy && !f.closed {
		err := f.commitMerged(ops)
		if err == nil {
			return
		}
		if ce := f.log.Check(zap.DebugLevel, "merged pinhole batch failed, sending its operations one at a time"); ce != nil {
			ce.Write(zap.Int("operations", len(ops)), zap.Error(err))
		}
	}
	for _, op := range ops {
		if op.close {
			op.done <- f.closeOne(op.p, op.els)
		} else {
			op.done <- f.openOne(op.p, op.els, op.life)
		}
	}
}

// commitMerged sends ops in one batch and on success does each one's
// bookkeeping, in order, and sends each its result. On failure nothing
// changed, in the kernel or here.
//
// The batch holds, per set, one message destroying elements and then one
// adding elements, rather than messages per operation (fewer to build and
// for the kernel to parse). It ends as running ops one after the other
// would: a pinhole whose last op is a Close is destroyed; one whose last
// op is an Open is added with that Open's timeout, after a destroy if we
// added it before or an earlier op of the batch touched it (the refresh
// of kernels before 6.10).
func (f *kernelFirewall) commitMerged(ops []*pinholeOp) error {
	now := time.Now()
	b := &f.batch
	b.reset()
	refresh := b.refresh[:0]
	for _, op := range ops {
		i, ok := b.index[op.p]
		if !ok {
			exp, known := f.open[op.p]
			known = known && now.Before(exp.Add(expiryGrace))
			i = len(b.plans)
			b.index[op.p] = i
			b.plans = append(b.plans, mergedPlan{known: known, destroy: known})
		} else {
			// An earlier op of the batch added or removed it: remove,
			// then add, as one after the other would.
			b.plans[i].destroy = true
		}
		pl := &b.plans[i]
		refresh = append(refresh, !op.close && pl.known)
		pl.known = !op.close
		pl.last = op
	}
	b.refresh = refresh
	for _, pl := range b.plans {
		for _, e := range pl.last.els {
			so := b.forSet(e.set)
			if pl.last.close || pl.destroy {
				so.destroy = append(so.destroy, e.key)
			}
			if !pl.last.close {
				so.add = append(so.add, nftables.SetElement{Key: e.key, Val: e.val, Timeout: pl.last.life})
			}
		}
	}
	var err error
	for _, so := range b.sets {
		if len(so.destroy) > 0 {
			err = errors.Join(err, f.queueRemove(so.set, so.destroy...))
		}
	}
	for _, so := range b.sets {
		if len(so.add) > 0 {
			err = errors.Join(err, f.conn.SetAddElements(so.set, so.add))
		}
	}
	if err := f.flush(err); err != nil {
		return err
	}
	for i, op := range ops {
		if op.close {
			f.noteClose(op.p)
		} else {
			f.noteOpen(op.p, op.life, refresh[i], now)
		}
		op.done <- nil
	}
	return nil
}

// mergedBatch is commitMerged's working memory, kept between batches
// (under the lock) so that a busy firewall makes little garbage.
type mergedBatch struct {
	index   map[Pinhole]int // into plans
	plans   []mergedPlan    // per pinhole, in order of first appearance
	refresh []bool          // per op: whether an Open refreshes
	sets    []mergedSet     // per set, in order of first appearance
}

// mergedPlan is what a merged batch does to one pinhole: what its last op
// says, after a destroy if it may exist before that op's add.
type mergedPlan struct {
	last    *pinholeOp
	destroy bool // before last's add
	known   bool // f.open's view after the ops so far: for the log's refresh
}

// mergedSet is what a merged batch sends for one set: one message
// destroying elements, then one adding elements.
type mergedSet struct {
	set     *nftables.Set
	destroy [][]byte
	add     []nftables.SetElement
}

func (b *mergedBatch) reset() {
	if b.index == nil {
		b.index = make(map[Pinhole]int, maxMerged)
	}
	clear(b.index)
	clear(b.plans) // no pointers kept to ops that are done
	b.plans = b.plans[:0]
	for i := range b.sets {
		clear(b.sets[i].destroy)
		clear(b.sets[i].add)
		b.sets[i].destroy, b.sets[i].add = b.sets[i].destroy[:0], b.sets[i].add[:0]
	}
}

func (b *mergedBatch) forSet(set *nftables.Set) *mergedSet {
	for i := range b.sets {
		if b.sets[i].set == set {
			return &b.sets[i]
		}
	}
	b.sets = append(b.sets, mergedSet{set: set})
	return &b.sets[len(b.sets)-1]
}

// openOne is Open in a batch of its own; the caller holds the lock.
func (f *kernelFirewall) openOne(n Pinhole, els []element, life time.Duration) error {
	if f.closed {
		return fmt.Errorf("open pinhole %s: %w", n, shutdownError{})
	}
	now := time.Now()
	exp, known := f.open[n]
	refresh := known && now.Before(exp.Add(expiryGrace))
	var err error
	if refresh {
		err = f.queueRemoveAll(els)
	}
	add := func(err error) error {
		if err == nil {
			err = f.queueAdd(els, life)
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
	f.noteOpen(n, life, refresh, now)
	return nil
}

// noteOpen does the bookkeeping of an Open the kernel took at now.
func (f *kernelFirewall) noteOpen(n Pinhole, life time.Duration, refresh bool, now time.Time) {
	f.open[n] = now.Add(life)
	f.sweep(now)
	if ce := f.log.Check(zap.DebugLevel, "pinhole open"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n), zap.Duration("ttl", life), zap.Bool("refresh", refresh))
	}
}

// closeOne is Close in a batch of its own; the caller holds the lock.
func (f *kernelFirewall) closeOne(n Pinhole, els []element) error {
	if f.closed {
		return nil
	}
	if err := f.removeAll(els); err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, f.explainChange(els[0].set, err))
	}
	f.noteClose(n)
	return nil
}

// removeAll deletes els in one batch. An element already gone (expired, or
// never added) is no error: with destroy the kernel ignores it; without
// (before Linux 6.3) the batch fails as a whole with ENOENT, and then each
// element is deleted on its own. The caller holds the lock.
func (f *kernelFirewall) removeAll(els []element) error {
	err := f.flush(f.queueRemoveAll(els))
	if !f.destroy && errors.Is(err, unix.ENOENT) {
		err = nil
		for i := 0; len(els) > 1 && i < len(els); i++ {
			if e := f.flush(f.queueRemove(els[i].set, els[i].key)); e != nil && !errors.Is(e, unix.ENOENT) {
				err = e
			}
		}
	}
	return err
}

// noteClose does the bookkeeping of a Close the kernel took.
func (f *kernelFirewall) noteClose(n Pinhole) {
	delete(f.open, n)
	if ce := f.log.Check(zap.DebugLevel, "pinhole closed"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n))
	}
}

// queueAdd queues the addition of a pinhole's elements with a timeout.
func (f *kernelFirewall) queueAdd(els []element, life time.Duration) error {
	for _, e := range els {
		if err := f.conn.SetAddElements(e.set, []nftables.SetElement{{Key: e.key, Val: e.val, Timeout: life}}); err != nil {
			return err
		}
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
