//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// setOOBInline is a no-op where SO_OOBINLINE is not set this way; ftpgate's
// kernel parts are Linux-only, the pure parts build elsewhere.
func setOOBInline(*net.TCPConn) error { return nil }

// bindAddressOnly returns control unchanged: binding the address without
// a port until connect (IP_BIND_ADDRESS_NO_PORT) is Linux's.
func bindAddressOnly(control func(network, address string, c syscall.RawConn) error) func(string, string, syscall.RawConn) error {
	return control
}
