//go:build nodemo

package main

import (
	"fmt"
	"os"
)

// demoCommand: this build (-tags nodemo, for small appliances) has no demo.
func demoCommand(name string, _ []string) (code int, ok bool) {
	if name != "demo" {
		return 0, false
	}
	fmt.Fprintln(os.Stderr, "ftpgate: this build has no demo (built with -tags nodemo); run the demo from a full build: go run ./cmd/ftpgate demo")
	return 2, true
}
