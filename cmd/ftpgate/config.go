package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/proxy"
	"gopkg.in/yaml.v3"
)

// defaultPassivePorts is the data port range of the own-table firewall mode
// when none is configured.
var defaultPassivePorts = nat.PortRange{Lo: 40000, Hi: 40999}

// fileConfig is the YAML config file. Every key is optional; flags given on
// the command line override the file. Unknown keys are errors.
type fileConfig struct {
	Listen                 []string       `yaml:"listen"`
	Upstream               string         `yaml:"upstream"`
	Advertise              string         `yaml:"advertise"`
	PassivePorts           string         `yaml:"passive_ports"`
	ServerMode             string         `yaml:"server_mode"`
	TrustServerPASVAddress bool           `yaml:"trust_server_pasv_address"`
	LogLevel               string         `yaml:"log_level"`
	LogFormat              string         `yaml:"log_format"`
	AdminListen            string         `yaml:"admin_listen"`
	Firewall               firewallConfig `yaml:"firewall"`
	Timeouts               timeoutConfig  `yaml:"timeouts"`
	Policy                 policyConfig   `yaml:"policy"`
}

type firewallConfig struct {
	Mode   string        `yaml:"mode"`
	TTL    time.Duration `yaml:"ttl"`
	Table  string        `yaml:"table"`
	Family string        `yaml:"family"`
	Set4   string        `yaml:"set4"`
	Set6   string        `yaml:"set6"`
}

type timeoutConfig struct {
	Connect       time.Duration `yaml:"connect"`
	Login         time.Duration `yaml:"login"`
	Idle          time.Duration `yaml:"idle"`
	Data          time.Duration `yaml:"data"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	KeepAlive     time.Duration `yaml:"keepalive"`
}

type policyConfig struct {
	AllowLowActivePorts bool     `yaml:"allow_low_active_ports"`
	TrustedDataSources  []string `yaml:"trusted_data_sources"`
}

// unknownField matches yaml.v3's words for an unknown key.
var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// loadFile reads a config file strictly: an unknown key or a wrong type is an
// error naming the file and line.
func loadFile(path string) (fileConfig, error) {
	var fc fileConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return fc, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = unknownField.ReplaceAllString(msg, "unknown setting $1")
		return fc, fmt.Errorf("config %s: %s", path, msg)
	}
	return fc, nil
}

// runFlags are the flags of `ftpgate run`; they fill a fileConfig so that the
// file and the command line share one path to the real configuration.
type runFlags struct {
	fs     *flag.FlagSet
	config string
	fc     fileConfig
}

func newRunFlags() *runFlags {
	f := &runFlags{fs: flag.NewFlagSet("run", flag.ContinueOnError)}
	fs, fc := f.fs, &f.fc
	fs.StringVar(&f.config, "config", "", "YAML config `file`; flags override it")
	fs.Func("listen", "control listen `address` (repeat for IPv4 and IPv6)", func(s string) error {
		fc.Listen = append(fc.Listen, s)
		return nil
	})
	fs.StringVar(&fc.Upstream, "upstream", "", "FTP server `host:port`")
	fs.StringVar(&fc.Advertise, "advertise", "", "`address` written into passive replies (default: the address the client connected to)")
	fs.StringVar(&fc.PassivePorts, "passive-ports", "", "data port `range` LO-HI (default 40000-40999 with the own-table firewall, else any free port)")
	fs.StringVar(&fc.ServerMode, "server-mode", "", "data connections toward the server: passive, active or client (default passive)")
	fs.BoolVar(&fc.TrustServerPASVAddress, "trust-server-pasv-address", false, "dial the address in the server's 227 reply instead of its control address")
	fs.StringVar(&fc.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&fc.LogFormat, "log-format", "", "json or console (default json)")
	fs.StringVar(&fc.AdminListen, "admin-listen", "", "`address` for /healthz and /debug/vars (default off)")
	fs.StringVar(&fc.Firewall.Mode, "firewall", "", "pinholes: own-table, external-set or none (default own-table)")
	fs.DurationVar(&fc.Firewall.TTL, "pinhole-ttl", 0, "how long a pinhole waits for its peer (default 10s)")
	fs.StringVar(&fc.Firewall.Table, "firewall-table", "", "external-set: the operator's table (family inet)")
	fs.StringVar(&fc.Firewall.Set4, "firewall-set4", "", "external-set: IPv4 pinhole set name")
	fs.StringVar(&fc.Firewall.Set6, "firewall-set6", "", "external-set: IPv6 pinhole set name")
	fs.DurationVar(&fc.Timeouts.Data, "data-timeout", 0, "how long to wait for a data connection (default 30s)")
	fs.DurationVar(&fc.Timeouts.Idle, "idle-timeout", 0, "idle control connection timeout (default 5m)")
	return f
}

// parse parses args, reads the config file if one is named, and lets the
// flags that were given override it.
func (f *runFlags) parse(args []string) (fileConfig, error) {
	if err := f.fs.Parse(args); err != nil {
		return fileConfig{}, err
	}
	if f.fs.NArg() > 0 {
		return fileConfig{}, fmt.Errorf("unexpected argument %q", f.fs.Arg(0))
	}
	if f.config == "" {
		return f.fc, nil
	}
	base, err := loadFile(f.config)
	if err != nil {
		return fileConfig{}, err
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	over := func(name string, apply func()) {
		if set[name] {
			apply()
		}
	}
	fc := f.fc
	over("listen", func() { base.Listen = fc.Listen })
	over("upstream", func() { base.Upstream = fc.Upstream })
	over("advertise", func() { base.Advertise = fc.Advertise })
	over("passive-ports", func() { base.PassivePorts = fc.PassivePorts })
	over("server-mode", func() { base.ServerMode = fc.ServerMode })
	over("trust-server-pasv-address", func() { base.TrustServerPASVAddress = fc.TrustServerPASVAddress })
	over("log-level", func() { base.LogLevel = fc.LogLevel })
	over("log-format", func() { base.LogFormat = fc.LogFormat })
	over("admin-listen", func() { base.AdminListen = fc.AdminListen })
	over("firewall", func() { base.Firewall.Mode = fc.Firewall.Mode })
	over("pinhole-ttl", func() { base.Firewall.TTL = fc.Firewall.TTL })
	over("firewall-table", func() { base.Firewall.Table = fc.Firewall.Table })
	over("firewall-set4", func() { base.Firewall.Set4 = fc.Firewall.Set4 })
	over("firewall-set6", func() { base.Firewall.Set6 = fc.Firewall.Set6 })
	over("data-timeout", func() { base.Timeouts.Data = fc.Timeouts.Data })
	over("idle-timeout", func() { base.Timeouts.Idle = fc.Timeouts.Idle })
	return base, nil
}

// settings turns the file-and-flags configuration into the packages' own
// Config values, checking each.
func (fc fileConfig) settings() (proxy.Config, nat.Config, error) {
	pc := proxy.Config{
		Listen:                 fc.Listen,
		Upstream:               fc.Upstream,
		ServerMode:             proxy.ServerMode(fc.ServerMode),
		TrustServerPASVAddress: fc.TrustServerPASVAddress,
		PinholeTTL:             fc.Firewall.TTL,
		ConnectTimeout:         fc.Timeouts.Connect,
		LoginTimeout:           fc.Timeouts.Login,
		IdleTimeout:            fc.Timeouts.Idle,
		DataTimeout:            fc.Timeouts.Data,
		ShutdownGrace:          fc.Timeouts.ShutdownGrace,
		KeepAlive:              fc.Timeouts.KeepAlive,
		Policy:                 policy.Config{AllowLowActivePorts: fc.Policy.AllowLowActivePorts},
	}
	nc := nat.Config{
		Mode:   nat.Mode(fc.Firewall.Mode),
		TTL:    fc.Firewall.TTL,
		Table:  fc.Firewall.Table,
		Family: fc.Firewall.Family,
		Set4:   fc.Firewall.Set4,
		Set6:   fc.Firewall.Set6,
	}
	if fc.Advertise != "" {
		a, err := netip.ParseAddr(fc.Advertise)
		if err != nil {
			return pc, nc, fmt.Errorf("advertise: %q is not an IP address", fc.Advertise)
		}
		pc.Advertise = proxy.StaticAddr(a)
	}
	if fc.PassivePorts != "" {
		r, err := nat.ParsePortRange(fc.PassivePorts)
		if err != nil {
			return pc, nc, fmt.Errorf("passive ports: %w", err)
		}
		pc.PassivePorts = r
		nc.DataPorts = []nat.PortRange{r}
	}
	for _, s := range fc.Policy.TrustedDataSources {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pc, nc, fmt.Errorf("trusted data source %q: want a network like 198.18.3.0/24", s)
		}
		pc.Policy.TrustedDataSources = append(pc.Policy.TrustedDataSources, p)
	}
	if len(pc.Listen) == 0 {
		pc.Listen = []string{":21"}
	}
	if err := pc.Validate(); err != nil {
		return pc, nc, err
	}
	if len(nc.DataPorts) == 0 && (nc.Mode == nat.ModeOwnTable || nc.Mode == "") {
		// The own table closes the data port range except for pinholes, so
		// it needs a range; this one is the documented default.
		pc.PassivePorts = defaultPassivePorts
		nc.DataPorts = []nat.PortRange{defaultPassivePorts}
	}
	if err := nc.Validate(); err != nil {
		return pc, nc, fmt.Errorf("firewall: %w", err)
	}
	return pc, nc, nil
}
