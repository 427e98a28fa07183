//go:build !linux

package main

import "errors"

// reexec is Linux's only (it finds its own file through /proc/self/exe).
func reexec([]string, string) error {
	return errors.New("executing itself again is implemented on Linux only")
}
