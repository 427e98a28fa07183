package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/zap"
)

// resolveEvery is how often a host name given as an address is resolved
// again.
const resolveEvery = time.Minute

// addrSource turns an address setting into a nat.AddrSource: an IP
// address, "interface:NAME" (that interface's current address, followed
// live through netlink), or a host name (resolved again every minute). The
// returned stop func releases what it holds.
func addrSource(ctx context.Context, what, spec string, log *zap.Logger) (nat.AddrSource, func(), error) {
	if spec == "" {
		return nil, func() {}, nil
	}
	if a, err := netip.ParseAddr(spec); err == nil {
		return nat.StaticAddr(a), func() {}, nil
	}
	if name, ok := strings.CutPrefix(spec, "interface:"); ok {
		f, err := nat.FollowInterface(ctx, name, log.Named("follow"))
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", what, spec, err)
		}
		log.Info("following interface address", zap.String("setting", what), zap.String("interface", name))
		return f, func() { f.Close() }, nil
	}
	r := &resolved{name: spec}
	if err := r.resolve(ctx); err != nil {
		return nil, nil, fmt.Errorf("%s %q: not an IP address, not interface:NAME, and %w", what, spec, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.refresh(ctx, log.With(zap.String("setting", what), zap.String("name", spec)))
	}()
	return r, func() { cancel(); wg.Wait() }, nil
}

// resolved is an AddrSource for a host name, resolved periodically.
type resolved struct {
	name string
	mu   sync.Mutex
	v4   netip.Addr
	v6   netip.Addr
}

var _ nat.AddrSource = (*resolved)(nil)

func (r *resolved) Addr(v6 bool) (netip.Addr, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.v4
	if v6 {
		a = r.v6
	}
	return a, a.IsValid()
}

func (r *resolved) resolve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", r.name)
	if err != nil {
		return fmt.Errorf("resolve: %w", err)
	}
	var v4, v6 netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() && !v4.IsValid() {
			v4 = a
		} else if a.Is6() && !v6.IsValid() {
			v6 = a
		}
	}
	r.mu.Lock()
	r.v4, r.v6 = v4, v6
	r.mu.Unlock()
	return nil
}

func (r *resolved) refresh(ctx context.Context, log *zap.Logger) {
	t := time.NewTicker(resolveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.resolve(ctx); err != nil {
				log.Warn("resolving again failed; keeping the last addresses", zap.Error(err))
			}
		}
	}
}
