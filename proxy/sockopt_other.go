//go:build !linux

package proxy

import "net"

// setOOBInline is a no-op where SO_OOBINLINE is not set this way; ftpgate's
// kernel parts are Linux-only, the pure parts build elsewhere.
func setOOBInline(*net.TCPConn) error { return nil }
