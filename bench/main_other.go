//go:build !linux

// Command bench measures ftpgate against plain routing in network namespaces; Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: needs Linux (network namespaces, nftables, splice)")
	os.Exit(1)
}
