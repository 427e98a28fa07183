package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// effectiveCapabilities returns this process's effective capability set,
// one bit per capability number (capget(2), version 3: two 32-bit words).
func effectiveCapabilities() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}
