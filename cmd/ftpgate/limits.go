package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/proxy"
)

// The limits: section and the command policy keys of policy:, with their
// flags. The YAML shapes are policy's own types (policy.Limits,
// policy.Commands, policy.ClientRule), decoded strictly like the rest.

// addLimitFlags registers the limit and command-policy flags.
func addLimitFlags(fs *flag.FlagSet, fc *fileConfig) {
	l := &fc.Limits
	fs.IntVar(&l.MaxSessions, "max-sessions", 0, fmt.Sprintf("most control sessions at once; over it a client gets 421 before any upstream connection (default %d; -1: no limit)", policy.DefaultMaxSessions))
	fs.IntVar(&l.MaxSessionsPerClient, "max-sessions-per-client", 0, fmt.Sprintf("most sessions from one client address, after a trusted PROXY header (default %d; -1: no limit)", policy.DefaultMaxSessionsPerClient))
	fs.IntVar(&l.MaxLoginFailures, "max-login-failures", 0, fmt.Sprintf("failed logins per client address per minute before a cool-down with 421 (default %d; -1: no limit)", policy.DefaultMaxLoginFailures))
	fs.StringVar(&l.UpstreamConnect, "upstream-connect", "", "when to dial the server: eager (at connect, default) or lazy (after the client's USER; ftpgate greets)")
	fs.DurationVar(&l.DataIdleTimeout, "data-idle-timeout", 0, "abort a transfer that moves no byte in either direction for this `duration` (426; default 60s; -1s: never)")
	fs.Func("max-upload-size", "cut an upload after this many `bytes` and answer 552 (default: no limit; K, M, G suffixes)", func(s string) error {
		n, err := parseSize(s)
		l.MaxUploadSize = n
		return err
	})
	fs.Func("commands-preset", "command policy `preset`: "+strings.Join(policy.PresetNames(), ", ")+" (repeat or comma-separate)", listFlag(&fc.Policy.Commands.Presets))
	fs.BoolVar(&fc.Policy.RequireClientTLS, "require-client-tls", false, "FTPS required of clients: USER before AUTH TLS gets 530, a transfer without PROT P gets 521")
}

// limitOverrides lets the limit flags that were given override the file.
func limitOverrides(over func(string, func()), fc fileConfig, base *fileConfig) {
	over("max-sessions", func() { base.Limits.MaxSessions = fc.Limits.MaxSessions })
	over("max-sessions-per-client", func() { base.Limits.MaxSessionsPerClient = fc.Limits.MaxSessionsPerClient })
	over("max-login-failures", func() { base.Limits.MaxLoginFailures = fc.Limits.MaxLoginFailures })
	over("upstream-connect", func() { base.Limits.UpstreamConnect = fc.Limits.UpstreamConnect })
	over("data-idle-timeout", func() { base.Limits.DataIdleTimeout = fc.Limits.DataIdleTimeout })
	over("max-upload-size", func() { base.Limits.MaxUploadSize = fc.Limits.MaxUploadSize })
	over("commands-preset", func() { base.Policy.Commands.Presets = fc.Policy.Commands.Presets })
	over("require-client-tls", func() { base.Policy.RequireClientTLS = fc.Policy.RequireClientTLS })
}

// limitSettings copies the limits and the command policy into pc; the
// proxy validates them with the rest.
func (fc fileConfig) limitSettings(pc *proxy.Config) {
	pc.Limits = fc.Limits
	pc.Policy.Clients = fc.Policy.Clients
	pc.Policy.Commands = fc.Policy.Commands
	pc.Policy.RequireClientTLS = fc.Policy.RequireClientTLS
}

// parseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a byte count such as 10485760 or 10M", s)
	}
	return n * mult, nil
}
