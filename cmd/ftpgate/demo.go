//go:build !nodemo

package main

import "github.com/ftpgate/ftpgate/cmd/ftpgate/internal/demo"

// demoCommand runs `ftpgate demo` and the demo's hidden re-execs; ok is
// false for any other command. Builds for small appliances leave the demo
// out (-tags nodemo; scripts/build-appliances.sh).
func demoCommand(name string, args []string) (code int, ok bool) {
	switch name {
	case "demo":
		return demo.Main(args), true
	case demo.ServerCommand:
		return demo.ServerMain(args), true
	case demo.ClientCommand:
		return demo.ClientMain(args), true
	}
	return 0, false
}
