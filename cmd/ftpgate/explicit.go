package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/proxy"
)

// explicitConfig is explicit mode's part of the config file ("explicit:").
type explicitConfig struct {
	// Auth is the proxy users file (name:hash lines, bcrypt or SHA-512
	// crypt; see policy.Users); empty or "off" turns proxy authentication
	// off.
	Auth string `yaml:"auth"`
}

// addExplicitFlags registers the flags of explicit mode.
func addExplicitFlags(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.Explicit.Auth, "explicit-auth", "", "explicit mode: proxy users `file` (name:bcrypt or SHA-512 crypt hash a line), or off (default)")
	fs.Func("destination-ports", "server `ports` clients may reach in the transparent and explicit modes, e.g. 21,2121 (explicit default: 21)", func(s string) error {
		l, err := parsePorts(s)
		fc.Policy.DestinationPorts = append(fc.Policy.DestinationPorts, l...)
		return err
	})
}

// explicitOverrides lets the flags that were given override the file.
func explicitOverrides(over func(string, func()), fc fileConfig, base *fileConfig) {
	over("explicit-auth", func() { base.Explicit.Auth = fc.Explicit.Auth })
	over("destination-ports", func() { base.Policy.DestinationPorts = fc.Policy.DestinationPorts })
}

// explicitSettings fills explicit mode's part of pc; it reads the proxy
// users file.
func (fc fileConfig) explicitSettings(pc *proxy.Config) error {
	if fc.Explicit.Auth == "" || fc.Explicit.Auth == "off" {
		return nil
	}
	if pc.Mode != proxy.ModeExplicit {
		return fmt.Errorf("explicit.auth %s: proxy users are for --mode explicit", fc.Explicit.Auth)
	}
	b, err := os.ReadFile(fc.Explicit.Auth)
	if err != nil {
		return fmt.Errorf("explicit.auth: %w", err)
	}
	users, err := policy.ParseUsers(b)
	if err != nil {
		return fmt.Errorf("explicit.auth %s: %w", fc.Explicit.Auth, err)
	}
	if users.Len() == 0 {
		return fmt.Errorf("explicit.auth %s: no users (use off to turn proxy authentication off)", fc.Explicit.Auth)
	}
	pc.Explicit.Users = users
	return nil
}
