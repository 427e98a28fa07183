//go:build !linux

package proxy

import (
	"errors"
	"net"

	"go.uber.org/zap"
)

// openKernelRelay: BPF socket redirection is Linux's; elsewhere every
// transfer is spliced (or copied).
func openKernelRelay(dst, src *net.TCPConn, log *zap.Logger) (kernelRelay, error) {
	return nil, errors.New("the kernel data path needs Linux")
}
