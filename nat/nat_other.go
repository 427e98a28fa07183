//go:build !linux

package nat

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

func newKernel(ctx context.Context, cfg Config, log *zap.Logger) (Firewall, error) {
	return nil, fmt.Errorf("firewall mode %s needs Linux nftables: use firewall mode %s here", cfg.Mode, ModeNone)
}

func cleanupKernel(ctx context.Context, cfg Config) error {
	return fmt.Errorf("firewall cleanup: mode %s needs Linux nftables", cfg.Mode)
}
