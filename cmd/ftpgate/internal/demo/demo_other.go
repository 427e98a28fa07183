//go:build !linux

package demo

import (
	"fmt"
	"os"
)

// Main is `ftpgate demo`; the lab needs Linux network namespaces.
func Main([]string) int {
	fmt.Fprintln(os.Stderr, "ftpgate demo: needs Linux (network namespaces, nftables)")
	return 1
}
