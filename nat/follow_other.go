//go:build !linux

package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"go.uber.org/zap"
)

// FollowInterface needs Linux (netlink).
func FollowInterface(ctx context.Context, name string, log *zap.Logger) (*Follower, error) {
	return nil, fmt.Errorf("follow interface %s: needs Linux (netlink)", name)
}

// SourceFor needs Linux (netlink).
func SourceFor(dst netip.Addr) (netip.Addr, error) {
	return netip.Addr{}, errors.New("source address: needs Linux (netlink)")
}

// LocalAddrs needs Linux (netlink).
func LocalAddrs() ([]netip.Addr, error) {
	return nil, errors.New("local addresses: needs Linux (netlink)")
}
