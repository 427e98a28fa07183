//go:build !linux

package nat

import (
	"fmt"

	"go.uber.org/zap"
)

// ListenFlowLog needs Linux (NFLOG over netfilter netlink).
func ListenFlowLog(group uint16, deliver func(FlowPacket), lost func(error), log *zap.Logger) (*FlowLog, error) {
	return nil, fmt.Errorf("listen NFLOG group %d: needs Linux (NFLOG over netfilter netlink)", group)
}
