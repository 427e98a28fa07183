package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"gopkg.in/yaml.v3"
)

// cmdCheck is `ftpgate check`: it reads the configuration as `ftpgate run`
// would (file and flags), checks it without touching the kernel (no netlink,
// no firewall, no listeners), and prints the effective configuration with
// every default filled in. Any error exits 1.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	rf := newRunFlags()
	rf.fs.SetOutput(stderr)
	fc, err := rf.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ftpgate check: %v\n", err)
		return 1
	}
	eff, err := fc.effective()
	if err != nil {
		fmt.Fprintf(stderr, "ftpgate check: %v\n", err)
		return 1
	}
	out, err := eff.marshal()
	if err != nil {
		fmt.Fprintf(stderr, "ftpgate check: %v\n", err)
		return 1
	}
	src := "flags"
	if rf.config != "" {
		src = rf.config
	}
	fmt.Fprintf(stdout, "# ftpgate check: %s is valid; the effective configuration follows.\n", src)
	pc, nc, err := eff.settings()
	if err != nil { // effective already checked the same settings
		fmt.Fprintf(stderr, "ftpgate check: %v\n", err)
		return 1
	}
	for _, n := range capabilityNeeds(pc, nc, eff.AdminListen, unprivilegedPortStart()) {
		fmt.Fprintf(stdout, "# needs %s: %s\n", n.cap, n.why)
	}
	stdout.Write(out)
	return 0
}

// effective checks fc as `ftpgate run` does and returns it with every
// default filled in, so that the result read back gives itself again.
func (fc fileConfig) effective() (fileConfig, error) {
	pc, nc, err := fc.settings()
	if err != nil {
		return fc, err
	}
	e := fc
	e.Mode = string(pc.Mode)
	e.Listen = pc.Listen
	if pc.PassivePorts != (nat.PortRange{}) {
		e.PassivePorts = pc.PassivePorts.String()
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&e.ServerMode, string(proxy.ServerPassive))
	def(&e.LogLevel, "info")
	def(&e.LogFormat, "json")
	def(&e.Firewall.Mode, string(nat.ModeOwnTable))
	defDur(&e.Firewall.TTL, nat.DefaultTTL)
	if nc.Mode == nat.ModeExternalSet {
		def(&e.Firewall.Family, nat.DefaultExternalFamily)
		if e.Firewall.Family != "ip6" {
			def(&e.Firewall.Set4, nat.DefaultSet4)
		}
		if e.Firewall.Family != "ip" {
			def(&e.Firewall.Set6, nat.DefaultSet6)
		}
	}
	if pc.Mode.Transparent() && len(e.Intercept.Ports) == 0 {
		e.Intercept.Ports = portList{nat.DefaultInterceptPort}
	}
	t := &e.Timeouts
	defDur(&t.Connect, proxy.DefaultConnectTimeout)
	defDur(&t.Login, proxy.DefaultLoginTimeout)
	defDur(&t.Idle, proxy.DefaultIdleTimeout)
	defDur(&t.Data, proxy.DefaultDataTimeout)
	defDur(&t.ShutdownGrace, proxy.DefaultShutdownGrace)
	defDur(&t.KeepAlive, proxy.DefaultKeepAlive)
	def(&e.TLS.MinVersion, "1.2")
	def(&e.TLS.MaxVersion, "1.3")
	def(&e.TLS.SessionReuse, "required")
	def(&e.TLS.CCC, string(proxy.CCCRefuse))
	def(&e.ServerTLS.Mode, string(proxy.ServerTLSMirror))
	def(&e.Sysmon, sysmonPoll)
	return e, nil
}

// marshal writes fc as YAML that loadFile reads back.
func (fc fileConfig) marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(fc); err != nil {
		return nil, fmt.Errorf("write effective config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write effective config: %w", err)
	}
	return b.Bytes(), nil
}

// unprivilegedPortStart is the lowest port an unprivileged process may bind
// (net.ipv4.ip_unprivileged_port_start, 1024 unless changed; containers
// often set 0).
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	var n int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &n); err != nil {
		return 1024
	}
	return n
}
