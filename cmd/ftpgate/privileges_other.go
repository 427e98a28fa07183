//go:build !linux

package main

import "errors"

// effectiveCapabilities: capabilities are Linux's; elsewhere nothing the
// firewall modes need exists.
func effectiveCapabilities() (uint64, error) {
	return 0, errors.New("capabilities are only known on Linux")
}
