package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
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
	Mode                   string              `yaml:"mode"`
	Listen                 []string            `yaml:"listen"`
	Upstream               string              `yaml:"upstream"`
	Advertise              string              `yaml:"advertise"`
	PassivePorts           string              `yaml:"passive_ports"`
	ServerMode             string              `yaml:"server_mode"`
	TrustServerPASVAddress bool                `yaml:"trust_server_pasv_address"`
	LogLevel               string              `yaml:"log_level"`
	LogFormat              string              `yaml:"log_format"`
	AdminListen            string              `yaml:"admin_listen"`
	AdminPprof             bool                `yaml:"admin_pprof"` // admin.go
	AuditLog               string              `yaml:"audit_log"`   // audit.go
	Xferlog                string              `yaml:"xferlog"`     // xferlog.go
	UpstreamSource         string              `yaml:"upstream_source"`
	PreserveClientAddress  bool                `yaml:"preserve_client_address"`
	Intercept              interceptConfig     `yaml:"intercept"`
	AdvertiseRules         []advertiseRule     `yaml:"advertise_rules"`
	ProxyProtocol          proxyProtocolConfig `yaml:"proxy_protocol"`
	Firewall               firewallConfig      `yaml:"firewall"`
	Timeouts               timeoutConfig       `yaml:"timeouts"`
	Policy                 policyConfig        `yaml:"policy"`
	Limits                 policy.Limits       `yaml:"limits"`     // limits.go
	TLS                    tlsConfig           `yaml:"tls"`        // tls.go
	ServerTLS              serverTLSConfig     `yaml:"server_tls"` // tls.go
	Explicit               explicitConfig      `yaml:"explicit"`   // explicit.go
	replicaConfig          `yaml:",inline"`    // replicas.go: replicas, replica_index
	DataPath               string              `yaml:"data_path"`      // datapath.go
	FlowLogGroup           int                 `yaml:"flow_log_group"` // datapath.go
	Procs                  int                 `yaml:"procs"`          // procs.go
	Sysmon                 string              `yaml:"sysmon"`         // sysmon.go
}

type firewallConfig struct {
	Mode   string        `yaml:"mode"`
	TTL    time.Duration `yaml:"ttl"`
	Table  string        `yaml:"table"`
	Family string        `yaml:"family"`
	Set4   string        `yaml:"set4"`
	Set6   string        `yaml:"set6"`
}

// advertiseRule is one split-horizon rule: what clients of some networks
// are told in passive replies.
type advertiseRule struct {
	Clients    []string          `yaml:"clients"`
	Address    string            `yaml:"address"`
	PortOffset int               `yaml:"port_offset"`
	Ports      map[uint16]uint16 `yaml:"ports"`
}

// proxyProtocolConfig is the PROXY protocol of balancers in front.
type proxyProtocolConfig struct {
	Trusted      []string `yaml:"trusted"`
	Control      bool     `yaml:"control"`
	Data         bool     `yaml:"data"`
	SendUpstream int      `yaml:"send_upstream"`
}

// interceptConfig says what the transparent modes catch.
type interceptConfig struct {
	Ports      portList `yaml:"ports"`
	Interfaces []string `yaml:"interfaces"`
	Sources    []string `yaml:"sources"`
	Exclude    []string `yaml:"exclude"`
	Output     bool     `yaml:"output"`
}

type timeoutConfig struct {
	Connect       time.Duration `yaml:"connect"`
	Login         time.Duration `yaml:"login"`
	Idle          time.Duration `yaml:"idle"`
	Data          time.Duration `yaml:"data"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	ShutdownDelay time.Duration `yaml:"shutdown_delay"` // admin.go: accepting on after /readyz turned 503
	KeepAlive     time.Duration `yaml:"keepalive"`
}

type policyConfig struct {
	AllowLowActivePorts bool     `yaml:"allow_low_active_ports"`
	TrustedDataSources  []string `yaml:"trusted_data_sources"`
	AllowDestinations   []string `yaml:"allow_destinations"`
	DenyDestinations    []string `yaml:"deny_destinations"`
	DestinationPorts    portList `yaml:"destination_ports"`
	// The command policy (limits.go): policy's own types.
	Clients          []policy.ClientRule `yaml:"clients"`
	Commands         policy.Commands     `yaml:"commands"`
	RequireClientTLS bool                `yaml:"require_client_tls"`
}

// portList is a list of ports, in YAML as a list or as "21,2121".
type portList []uint16

func (p *portList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		l, err := parsePorts(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*p = l
		return nil
	}
	var l []uint16
	if err := n.Decode(&l); err != nil {
		return err
	}
	*p = l
	return nil
}

func parsePorts(s string) (portList, error) {
	var out portList
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want a number from 1 to 65535", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// listFlag is a comma-separated (or repeated) string list flag.
func listFlag(dst *[]string) func(string) error {
	return func(s string) error {
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				*dst = append(*dst, f)
			}
		}
		return nil
	}
}

// parsePrefixes parses networks ("198.18.0.0/24") or single addresses.
func parsePrefixes(what string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want a network like 198.18.0.0/24 or an address", what, s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
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
		return fc, fileError(path, err)
	}
	return fc, nil
}

// yamlLine matches the "line N: " that yaml.v3 starts its messages with.
var yamlLine = regexp.MustCompile(`^line (\d+): `)

// fileError turns a decoder error into "config FILE:LINE: message", one
// message per problem, as compilers name places.
func fileError(path string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		msgs = append([]string(nil), te.Errors...)
	}
	for i, m := range msgs {
		m = unknownField.ReplaceAllString(strings.TrimSpace(m), "unknown setting $1")
		if yamlLine.MatchString(m) {
			msgs[i] = yamlLine.ReplaceAllString(m, path+":$1: ")
		} else {
			msgs[i] = path + ": " + m
		}
	}
	return fmt.Errorf("config %s", strings.Join(msgs, "; "))
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
	fs.StringVar(&fc.Mode, "mode", "", "how clients reach ftpgate: reverse (default with --upstream), redirect, tproxy or explicit (clients name the server: USER user@host)")
	fs.Func("intercept-ports", "transparent modes: destination `ports` caught, e.g. 21,2121 (default 21)", func(s string) error {
		l, err := parsePorts(s)
		fc.Intercept.Ports = append(fc.Intercept.Ports, l...)
		return err
	})
	fs.Func("intercept-interfaces", "transparent modes: incoming `interfaces` caught (default any)", listFlag(&fc.Intercept.Interfaces))
	fs.Func("intercept-sources", "transparent modes: source `networks` caught (default any)", listFlag(&fc.Intercept.Sources))
	fs.Func("intercept-exclude", "transparent modes: destination `networks` never caught", listFlag(&fc.Intercept.Exclude))
	fs.BoolVar(&fc.Intercept.Output, "intercept-output", false, "redirect mode: also catch this host's own outgoing FTP (sidecar)")
	fs.StringVar(&fc.UpstreamSource, "upstream-source", "", "source `address` toward servers, or interface:NAME (default: the kernel's choice)")
	fs.BoolVar(&fc.PreserveClientAddress, "preserve-client-address", false, "tproxy mode: connect to servers from the client's own address")
	fs.Func("advertise-rule", "split horizon: `NETS=ADDR` tells clients of NETS (comma-separated) ADDR in passive replies (repeatable)", func(v string) error {
		nets, addr, ok := strings.Cut(v, "=")
		if !ok || nets == "" || addr == "" {
			return fmt.Errorf("%q: want NETS=ADDR, e.g. 10.0.0.0/8=10.96.0.10", v)
		}
		var r advertiseRule
		listFlag(&r.Clients)(nets)
		r.Address = addr
		fc.AdvertiseRules = append(fc.AdvertiseRules, r)
		return nil
	})
	fs.Func("proxy-protocol-trusted", "`networks` of balancers whose PROXY headers are accepted", listFlag(&fc.ProxyProtocol.Trusted))
	fs.Func("proxy-protocol", "expect PROXY headers from trusted balancers on `control,data` connections", func(v string) error {
		for _, f := range strings.Split(v, ",") {
			switch strings.TrimSpace(f) {
			case "control":
				fc.ProxyProtocol.Control = true
			case "data":
				fc.ProxyProtocol.Data = true
			default:
				return fmt.Errorf("%q: want control, data or control,data", f)
			}
		}
		return nil
	})
	fs.IntVar(&fc.ProxyProtocol.SendUpstream, "proxy-protocol-upstream", 0, "send a PROXY header of `version` 1 or 2 with the real client to the server")
	fs.Func("allow-destinations", "`networks` whose servers may be reached (default all)", listFlag(&fc.Policy.AllowDestinations))
	fs.Func("deny-destinations", "`networks` whose servers are never reached", listFlag(&fc.Policy.DenyDestinations))
	fs.Func("listen", "control listen `address` (repeat for IPv4 and IPv6)", func(s string) error {
		fc.Listen = append(fc.Listen, s)
		return nil
	})
	fs.StringVar(&fc.Upstream, "upstream", "", "FTP server `host:port`")
	fs.StringVar(&fc.Advertise, "advertise", "", "`address` written into passive replies: an IP, interface:NAME or a host name (default: the address the client connected to; the server's in transparent modes)")
	fs.StringVar(&fc.PassivePorts, "passive-ports", "", "data port `range` LO-HI (default 40000-40999 with the own-table firewall, else any free port)")
	fs.StringVar(&fc.ServerMode, "server-mode", "", "data connections toward the server: passive, active or client (default passive)")
	fs.BoolVar(&fc.TrustServerPASVAddress, "trust-server-pasv-address", false, "dial the address in the server's 227 reply instead of its control address")
	fs.StringVar(&fc.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&fc.LogFormat, "log-format", "", "json or console (default json)")
	fs.StringVar(&fc.AdminListen, "admin-listen", "", "`address` for /metrics, /healthz, /readyz and /debug/vars (default off)")
	fs.BoolVar(&fc.AdminPprof, "admin-pprof", false, "also serve net/http/pprof under /debug/pprof/ on --admin-listen, with block and mutex profiling on (profiling only)")
	fs.StringVar(&fc.AuditLog, "audit-log", "", "append a JSON line per transfer, file command and denial to `file`; reopened on SIGUSR1")
	fs.StringVar(&fc.Xferlog, "xferlog", "", "append an xferlog(5) line per file transfer to `file`; reopened on SIGUSR1")
	fs.StringVar(&fc.Firewall.Mode, "firewall", "", "pinholes: own-table, external-set or none (default own-table)")
	fs.DurationVar(&fc.Firewall.TTL, "pinhole-ttl", 0, "how long a pinhole waits for its peer (default 10s)")
	fs.StringVar(&fc.Firewall.Table, "firewall-table", "", "external-set: the operator's table (family inet)")
	fs.StringVar(&fc.Firewall.Set4, "firewall-set4", "", "external-set: IPv4 pinhole set name")
	fs.StringVar(&fc.Firewall.Set6, "firewall-set6", "", "external-set: IPv6 pinhole set name")
	fs.DurationVar(&fc.Timeouts.Data, "data-timeout", 0, "how long to wait for a data connection (default 30s)")
	fs.DurationVar(&fc.Timeouts.Idle, "idle-timeout", 0, "idle control connection timeout (default 5m)")
	fs.DurationVar(&fc.Timeouts.ShutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep accepting for this `duration` after /readyz turned 503, so a load balancer can take ftpgate out first (default 0)")
	addReplicaFlags(fs, &fc.replicaConfig)
	addTLSFlags(fs, fc)
	addLimitFlags(fs, fc)
	addExplicitFlags(fs, fc) // explicit.go
	addDataPathFlag(fs, fc)
	addProcsFlag(fs, fc)
	addSysmonFlag(fs, fc)
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
		return f.fc.withCredentials()
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
	over("mode", func() { base.Mode = fc.Mode })
	over("intercept-ports", func() { base.Intercept.Ports = fc.Intercept.Ports })
	over("intercept-interfaces", func() { base.Intercept.Interfaces = fc.Intercept.Interfaces })
	over("intercept-sources", func() { base.Intercept.Sources = fc.Intercept.Sources })
	over("intercept-exclude", func() { base.Intercept.Exclude = fc.Intercept.Exclude })
	over("intercept-output", func() { base.Intercept.Output = fc.Intercept.Output })
	over("upstream-source", func() { base.UpstreamSource = fc.UpstreamSource })
	over("preserve-client-address", func() { base.PreserveClientAddress = fc.PreserveClientAddress })
	over("advertise-rule", func() { base.AdvertiseRules = fc.AdvertiseRules })
	over("proxy-protocol-trusted", func() { base.ProxyProtocol.Trusted = fc.ProxyProtocol.Trusted })
	over("proxy-protocol", func() {
		base.ProxyProtocol.Control, base.ProxyProtocol.Data = fc.ProxyProtocol.Control, fc.ProxyProtocol.Data
	})
	over("proxy-protocol-upstream", func() { base.ProxyProtocol.SendUpstream = fc.ProxyProtocol.SendUpstream })
	over("allow-destinations", func() { base.Policy.AllowDestinations = fc.Policy.AllowDestinations })
	over("deny-destinations", func() { base.Policy.DenyDestinations = fc.Policy.DenyDestinations })
	over("listen", func() { base.Listen = fc.Listen })
	over("upstream", func() { base.Upstream = fc.Upstream })
	over("advertise", func() { base.Advertise = fc.Advertise })
	over("passive-ports", func() { base.PassivePorts = fc.PassivePorts })
	over("server-mode", func() { base.ServerMode = fc.ServerMode })
	over("trust-server-pasv-address", func() { base.TrustServerPASVAddress = fc.TrustServerPASVAddress })
	over("log-level", func() { base.LogLevel = fc.LogLevel })
	over("log-format", func() { base.LogFormat = fc.LogFormat })
	over("admin-listen", func() { base.AdminListen = fc.AdminListen })
	over("admin-pprof", func() { base.AdminPprof = fc.AdminPprof })
	over("audit-log", func() { base.AuditLog = fc.AuditLog })
	over("xferlog", func() { base.Xferlog = fc.Xferlog })
	over("firewall", func() { base.Firewall.Mode = fc.Firewall.Mode })
	over("pinhole-ttl", func() { base.Firewall.TTL = fc.Firewall.TTL })
	over("firewall-table", func() { base.Firewall.Table = fc.Firewall.Table })
	over("firewall-set4", func() { base.Firewall.Set4 = fc.Firewall.Set4 })
	over("firewall-set6", func() { base.Firewall.Set6 = fc.Firewall.Set6 })
	over("data-timeout", func() { base.Timeouts.Data = fc.Timeouts.Data })
	over("idle-timeout", func() { base.Timeouts.Idle = fc.Timeouts.Idle })
	over("shutdown-delay", func() { base.Timeouts.ShutdownDelay = fc.Timeouts.ShutdownDelay })
	replicaOverrides(over, fc, &base)
	tlsOverrides(over, fc, &base)
	limitOverrides(over, fc, &base)
	explicitOverrides(over, fc, &base) // explicit.go
	over("data-path", func() { base.DataPath = fc.DataPath })
	over("flow-log-group", func() { base.FlowLogGroup = fc.FlowLogGroup })
	over("procs", func() { base.Procs = fc.Procs })
	over("sysmon", func() { base.Sysmon = fc.Sysmon })
	return base.withCredentials()
}

// settings turns the file-and-flags configuration into the packages' own
// Config values, checking each.
func (fc fileConfig) settings() (proxy.Config, nat.Config, error) {
	pc := proxy.Config{
		Mode:                   proxy.ListenMode(fc.Mode),
		PreserveClientAddress:  fc.PreserveClientAddress,
		Listen:                 fc.Listen,
		Upstream:               fc.Upstream,
		ServerMode:             proxy.ServerDataMode(fc.ServerMode),
		TrustServerPASVAddress: fc.TrustServerPASVAddress,
		PinholeTTL:             fc.Firewall.TTL,
		ConnectTimeout:         fc.Timeouts.Connect,
		LoginTimeout:           fc.Timeouts.Login,
		IdleTimeout:            fc.Timeouts.Idle,
		DataTimeout:            fc.Timeouts.Data,
		ShutdownGrace:          fc.Timeouts.ShutdownGrace,
		KeepAlive:              fc.Timeouts.KeepAlive,
		Policy:                 policy.Config{AllowLowActivePorts: fc.Policy.AllowLowActivePorts},
		DataPath:               fc.DataPath,
	}
	nc := nat.Config{
		Mode:   nat.FirewallMode(fc.Firewall.Mode),
		TTL:    fc.Firewall.TTL,
		Table:  fc.Firewall.Table,
		Family: fc.Firewall.Family,
		Set4:   fc.Firewall.Set4,
		Set6:   fc.Firewall.Set6,
	}
	// The kernel data path forwards flows in the own table; in the other
	// firewall modes every transfer says why it is spliced.
	nc.Flows.Enabled = fc.DataPath == proxy.DataPathKernel && nc.Mode != nat.ModeExternalSet && nc.Mode != nat.ModeNone
	if pc.Mode == "" {
		pc.Mode = proxy.ModeReverse
		if fc.Upstream == "" {
			return pc, nc, errors.New("no upstream server: give --upstream HOST:PORT (reverse proxy), --mode redirect|tproxy (transparent gateway) or --mode explicit (forward proxy)")
		}
	}
	if fc.PassivePorts != "" {
		r, err := nat.ParsePortRange(fc.PassivePorts)
		if err != nil {
			return pc, nc, fmt.Errorf("passive ports: %w", err)
		}
		pc.PassivePorts = r
		nc.DataPorts = []nat.PortRange{r}
	}
	var err error
	if nc.Flows.LogGroup, err = flowLogGroup(fc.FlowLogGroup); err != nil {
		return pc, nc, err
	}
	if err := checkSysmon(fc.Sysmon); err != nil {
		return pc, nc, err
	}
	if pc.Policy.TrustedDataSources, err = parsePrefixes("trusted data source", fc.Policy.TrustedDataSources); err != nil {
		return pc, nc, err
	}
	if pc.Policy.AllowDestinations, err = parsePrefixes("allowed destination", fc.Policy.AllowDestinations); err != nil {
		return pc, nc, err
	}
	if pc.Policy.DenyDestinations, err = parsePrefixes("denied destination", fc.Policy.DenyDestinations); err != nil {
		return pc, nc, err
	}
	pc.Policy.DestinationPorts = fc.Policy.DestinationPorts
	fc.limitSettings(&pc)
	pc.AbsolutePaths = fc.AuditLog != "" || fc.Xferlog != "" // the records name files by absolute path
	if pc.ProxyProtocol.Trusted, err = parsePrefixes("PROXY protocol trusted network", fc.ProxyProtocol.Trusted); err != nil {
		return pc, nc, err
	}
	pc.ProxyProtocol.Control = fc.ProxyProtocol.Control
	pc.ProxyProtocol.Data = fc.ProxyProtocol.Data
	pc.ProxyProtocol.SendUpstream = fc.ProxyProtocol.SendUpstream
	for i, r := range fc.AdvertiseRules {
		clients, err := parsePrefixes(fmt.Sprintf("advertise rule %d client network", i+1), r.Clients)
		if err != nil {
			return pc, nc, err
		}
		// The address source is attached at run time (it may follow an
		// interface); here only the shape is checked.
		pc.AdvertiseRules = append(pc.AdvertiseRules, proxy.AdvertiseRule{Clients: clients, PortOffset: r.PortOffset, Ports: r.Ports})
	}
	if len(pc.Listen) == 0 {
		pc.Listen = []string{":21"}
		if pc.Mode.Transparent() {
			pc.Listen = defaultTransparentListen()
		}
	}
	if pc.Mode.Transparent() {
		if err := fc.interception(&pc, &nc); err != nil {
			return pc, nc, err
		}
	}
	if err := fc.tlsSettings(&pc); err != nil {
		return pc, nc, err
	}
	if err := fc.explicitSettings(&pc); err != nil { // explicit.go
		return pc, nc, err
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
	if err := fc.replicaSettings(&pc, &nc); err != nil {
		return pc, nc, err
	}
	if err := nc.Validate(); err != nil {
		return pc, nc, fmt.Errorf("firewall: %w", err)
	}
	return pc, nc, nil
}

// defaultTransparentPort is where intercepted control connections land when
// --listen is not given in a transparent mode.
const defaultTransparentPort = 8021

func defaultTransparentListen() []string {
	l := []string{fmt.Sprintf("0.0.0.0:%d", defaultTransparentPort)}
	if hasIPv6() {
		l = append(l, fmt.Sprintf("[::]:%d", defaultTransparentPort))
	}
	return l
}

// hasIPv6 reports whether this host has IPv6: its loopback address ::1 is
// configured. It reads /proc instead of opening a socket, so that `ftpgate
// check` listens on nothing.
func hasIPv6() bool {
	b, err := os.ReadFile("/proc/net/if_inet6")
	return err == nil && bytes.Contains(b, []byte("00000000000000000000000000000001 "))
}

// interception fills the firewall's interception rules for a transparent
// mode from the listen port and the intercept settings.
func (fc fileConfig) interception(pc *proxy.Config, nc *nat.Config) error {
	var port uint16
	for _, l := range pc.Listen {
		_, p, err := net.SplitHostPort(l)
		if err != nil {
			return fmt.Errorf("listen address %q: %w", l, err)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("listen address %q: a transparent mode needs a fixed port", l)
		}
		if port != 0 && uint16(n) != port {
			return fmt.Errorf("listen addresses %v: a transparent mode needs one port for all of them", pc.Listen)
		}
		port = uint16(n)
	}
	ic := nat.Intercept{
		Mode:       nat.InterceptMode(pc.Mode),
		ListenPort: port,
		Ports:      fc.Intercept.Ports,
		Interfaces: fc.Intercept.Interfaces,
		Output:     fc.Intercept.Output,
	}
	var err error
	if ic.Sources, err = parsePrefixes("intercept source", fc.Intercept.Sources); err != nil {
		return err
	}
	if ic.Exclude, err = parsePrefixes("intercept exclude", fc.Intercept.Exclude); err != nil {
		return err
	}
	if nc.Mode == nat.ModeNone {
		// The operator installs interception rules; nothing is diverted, so
		// passive replies carry ftpgate's own address.
		return nil
	}
	nc.Intercept = ic
	pc.DivertData = true
	return nil
}
