package nat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

var _ Firewall = (*Fake)(nil)

// Fake is an in-memory Firewall for tests of its callers. It checks its
// arguments like the real one, records every operation, and keeps the set of
// open pinholes. It does not expire pinholes by itself; TTL reports the
// lifetime each was last given. The zero value is not usable; call NewFake.
type Fake struct {
	mu       sync.Mutex
	ttl      time.Duration
	open     map[Pinhole]time.Duration
	ops      []string
	fail     func(op string, p Pinhole) error
	shutdown bool
	ports    []PortRange // the latest SetDataPorts
}

// NewFake returns an empty Fake whose default pinhole lifetime is DefaultTTL.
func NewFake() *Fake {
	return &Fake{ttl: DefaultTTL, open: make(map[Pinhole]time.Duration)}
}

// FailWith makes every later operation call fail first; a non-nil result is
// returned (and the operation not applied, but still logged with a " failed"
// suffix). op is "open", "close" or "shutdown"; p is zero for shutdown.
// FailWith(nil) turns failures off.
func (f *Fake) FailWith(fail func(op string, p Pinhole) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// Open records "open <pinhole>" and adds or refreshes the pinhole.
func (f *Fake) Open(ctx context.Context, p Pinhole, ttl time.Duration) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	life, err := lifetime(ttl, f.ttl)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutdown {
		return fmt.Errorf("open pinhole %s: %w", n, shutdownError{})
	}
	if err := f.failed("open", n); err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	f.ops = append(f.ops, "open "+n.String())
	f.open[n] = life
	return nil
}

// Close records "close <pinhole>" and removes the pinhole if it is open.
func (f *Fake) Close(ctx context.Context, p Pinhole) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("close", n); err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	f.ops = append(f.ops, "close "+n.String())
	delete(f.open, n)
	return nil
}

// Shutdown records "shutdown" and removes every pinhole; later Opens fail.
func (f *Fake) Shutdown(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("firewall shutdown: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failed("shutdown", Pinhole{}); err != nil {
		return fmt.Errorf("firewall shutdown: %w", err)
	}
	f.ops = append(f.ops, "shutdown")
	clear(f.open)
	f.shutdown = true
	return nil
}

// failed asks the FailWith function, logging a failed operation. f.mu is held.
func (f *Fake) failed(op string, p Pinhole) error {
	if f.fail == nil {
		return nil
	}
	err := f.fail(op, p)
	if err != nil {
		entry := op
		if op != "shutdown" {
			entry += " " + p.String()
		}
		f.ops = append(f.ops, entry+" failed")
	}
	return err
}

// Dump returns the open pinholes as nft prints set elements, sorted by peer,
// local address and port, one per line, each line ending in "\n":
// "198.18.0.2 . 198.18.1.1 . 40001". A diverting pinhole's line ends in
// " via 198.18.5.5:40001" (its Intercept). IPv4 sorts before IPv6.
func (f *Fake) Dump() string {
	f.mu.Lock()
	keys := make([]Pinhole, 0, len(f.open))
	for p := range f.open {
		keys = append(keys, p)
	}
	f.mu.Unlock()
	slices.SortFunc(keys, comparePinholes)
	var b strings.Builder
	for _, p := range keys {
		b.WriteString(p.element())
		if p.diverts() {
			b.WriteString(" via ")
			b.WriteString(p.Intercept.String())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Ops returns a copy of the operation log: "open 198.18.0.2 ->
// 198.18.1.1:40001" ("... via 198.18.5.5:40001" for a diverting pinhole),
// "close ...", "shutdown", with " failed" appended to operations that
// FailWith rejected.
func (f *Fake) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// TTL reports the lifetime p was last opened with, and whether p is open.
func (f *Fake) TTL(p Pinhole) (time.Duration, bool) {
	n, err := p.normalize()
	if err != nil {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.open[n]
	return ttl, ok
}

func comparePinholes(a, b Pinhole) int {
	if c := a.Peer.Compare(b.Peer); c != 0 {
		return c
	}
	if c := a.Local.Compare(b.Local); c != 0 {
		return c
	}
	return a.Intercept.Compare(b.Intercept)
}

// Ping reports the fake as healthy unless it was shut down.
func (f *Fake) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutdown {
		return errors.New("firewall shut down")
	}
	return nil
}

// SetDataPorts records the ranges (DataPorts returns them).
func (f *Fake) SetDataPorts(_ context.Context, ports []PortRange) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ports = append([]PortRange(nil), ports...)
	return nil
}

// DataPorts returns the ranges of the latest SetDataPorts.
func (f *Fake) DataPorts() []PortRange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]PortRange(nil), f.ports...)
}
