package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/policy"
)

// ListenMode is how control connections reach ftpgate and how it finds their server.
type ListenMode string

// Modes.
const (
	// ModeReverse: clients connect to ftpgate; every session goes to Upstream.
	ModeReverse ListenMode = "reverse"
	// ModeRedirect: forwarded connections are caught by an nftables redirect;
	// the server is the original destination (SO_ORIGINAL_DST).
	ModeRedirect ListenMode = "redirect"
	// ModeTProxy: forwarded connections are caught by nftables tproxy on an
	// IP_TRANSPARENT listener; the server is the connection's local address.
	ModeTProxy ListenMode = "tproxy"
	// ModeExplicit: clients configure ftpgate as their FTP proxy and name
	// the server at login (USER user@host and the other forms of
	// explicit.go); ftpgate greets them itself.
	ModeExplicit ListenMode = "explicit"
)

// Transparent reports whether the mode intercepts connections addressed to
// servers (as opposed to clients addressing ftpgate).
func (m ListenMode) Transparent() bool { return m == ModeRedirect || m == ModeTProxy }

// Hooks are the kernel helpers the transparent modes need. cmd fills them
// from package nat; tests may fake them. Nil hooks are not used.
type Hooks struct {
	// OriginalDst returns where a redirected connection was addressed.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// ListenControl sets socket options on control listeners (IP_TRANSPARENT
	// in tproxy mode).
	ListenControl func(network, address string, c syscall.RawConn) error
	// DialControl sets socket options on connections ftpgate opens to servers
	// (the loop-guard mark).
	DialControl func(network, address string, c syscall.RawConn) error
	// TransparentDialControl is DialControl for connections that leave from
	// a non-local address (tproxy with PreserveClientAddress).
	TransparentDialControl func(network, address string, c syscall.RawConn) error
	// LocalToward returns this host's address toward peer (a route lookup).
	LocalToward func(peer netip.Addr) (netip.Addr, error)
	// IsLocal reports whether addr is one of this host's addresses.
	IsLocal func(addr netip.Addr) bool
}

// ServerDataMode is how ftpgate opens data connections toward the server.
type ServerDataMode string

// Server modes.
const (
	ServerPassive ServerDataMode = "passive" // we dial the server (EPSV, falling back to PASV)
	ServerActive  ServerDataMode = "active"  // the server dials us (EPRT, falling back to PORT)
	ServerClient  ServerDataMode = "client"  // mirror what the client asked for
)

// Defaults for the zero values of Config.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultLoginTimeout   = 60 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultDataTimeout    = 30 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
	DefaultKeepAlive      = 30 * time.Second
)

// Config is the proxy's configuration. Zero durations mean the default;
// a negative KeepAlive turns keepalive off.
type Config struct {
	// Mode is how clients reach ftpgate; the zero value means ModeReverse.
	Mode ListenMode
	// Listen are the control-connection addresses, e.g. "198.18.0.1:21".
	Listen []string
	// Upstream is the FTP server, "host:port" (reverse mode only). A name
	// is resolved again for every session.
	Upstream string
	// Advertise is the address written into passive replies to clients. Nil
	// means the address of the data listener (the one the client connected
	// to), or in the transparent modes with DivertData the server's address.
	Advertise nat.AddrSource
	// AdvertiseRules choose the advertised address and port by client
	// network; the first match wins, and clients no rule matches get
	// Advertise.
	AdvertiseRules []AdvertiseRule
	// UpstreamSource is the source address of connections to servers; nil
	// means the kernel's choice.
	UpstreamSource nat.AddrSource
	// PreserveClientAddress (tproxy mode) makes connections to the server
	// leave from the client's own address, so the server sees the client.
	// The server leg of data connections is then always passive.
	PreserveClientAddress bool
	// DivertData (transparent modes) means the firewall diverts a data
	// connection the client addresses to the server (Pinhole.Intercept), so
	// passive replies can carry the server's address as clients expect.
	DivertData bool
	// Hooks are the kernel helpers of the transparent modes.
	Hooks Hooks
	// PassivePorts is the range data listeners use, toward clients and toward
	// servers in active mode. The zero value means kernel-chosen ports.
	PassivePorts nat.PortRange
	// ServerMode is how data connections toward the server are opened; the
	// zero value means ServerPassive.
	ServerMode ServerDataMode
	// TrustServerPASVAddress makes ftpgate dial the address in the server's
	// 227 reply instead of the server's control address.
	TrustServerPASVAddress bool
	// PinholeTTL is how long a pinhole waits for its peer; zero means the
	// firewall's default.
	PinholeTTL time.Duration
	// DataPath is how plain data connections are relayed: DataPathSplice
	// (the zero value); DataPathKernel, the firewall forwarding passive
	// flows itself where the host routes (flowpath.go); or DataPathSockmap,
	// BPF socket redirection (kernelpath.go). Both kernel paths are chosen
	// per transfer, with a logged fallback to splice.
	DataPath string

	// ProxyProtocol is the PROXY protocol of load balancers in front.
	ProxyProtocol ProxyProtocol

	// Explicit is the explicit mode's login: proxy users and the resolver
	// of the server names clients give (explicit.go).
	Explicit ExplicitConfig

	Policy policy.Config
	// Limits are the session limits (the limits: section): sessions in all
	// and per client, failed logins, lazy upstream connect, the data idle
	// timeout, the upload size cap and the control channel's line and reply
	// bounds. The zero value means policy's defaults.
	Limits policy.Limits
	// TLS is FTPS on both legs; the zero value means none toward clients.
	TLS TLSConfig

	// AbsolutePaths makes transfer and file-command records name files by
	// absolute path: each session asks the server for its working directory
	// once logged in (one PWD) and follows CWD and CDUP. cmd turns it on with
	// the audit log or xferlog.
	AbsolutePaths bool

	// Observer is told of sessions, transfers, pinholes and denials (metrics
	// and audit records); nil means NopObserver.
	Observer Observer

	ConnectTimeout time.Duration // dialing the server, or an active-mode client
	LoginTimeout   time.Duration // from connect until the server accepted a login
	IdleTimeout    time.Duration // waiting for a client command; paused while a transfer runs
	DataTimeout    time.Duration // waiting for a data connection to arrive
	ShutdownGrace  time.Duration // how long running transfers may finish on shutdown
	KeepAlive      time.Duration // TCP keepalive idle time on control connections
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.LoginTimeout, DefaultLoginTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.DataTimeout, DefaultDataTimeout)
	c.Limits = c.Limits.WithDefaults()
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	def(&c.KeepAlive, DefaultKeepAlive)
	if c.ServerMode == "" {
		c.ServerMode = ServerPassive
	}
	if c.Mode == "" {
		c.Mode = ModeReverse
	}
}

// Validate reports whether the configuration can run.
func (c Config) Validate() error {
	if len(c.Listen) == 0 {
		return errors.New("no listen address")
	}
	for _, l := range c.Listen {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return fmt.Errorf("listen address %q: %w", l, err)
		}
	}
	switch c.Mode {
	case "", ModeReverse:
		if c.Upstream == "" {
			return errors.New("no upstream server")
		}
		if _, _, err := net.SplitHostPort(c.Upstream); err != nil {
			return fmt.Errorf("upstream %q: %w", c.Upstream, err)
		}
	case ModeRedirect, ModeTProxy:
		if c.Upstream != "" {
			return fmt.Errorf("mode %s takes each session's server from the intercepted connection; --upstream is for reverse mode", c.Mode)
		}
	case ModeExplicit:
		if c.Upstream != "" {
			return errors.New("mode explicit takes each session's server from the client's login; --upstream is for reverse mode")
		}
	default:
		return fmt.Errorf("mode %q: want reverse, redirect, tproxy or explicit", c.Mode)
	}
	if c.Explicit.Users != nil && c.Mode != ModeExplicit {
		return fmt.Errorf("proxy users (explicit.auth) are for explicit mode, not %s", c.Mode)
	}
	if c.PreserveClientAddress && c.Mode != ModeTProxy {
		return errors.New("preserving the client address needs tproxy mode")
	}
	switch c.ServerMode {
	case "", ServerPassive, ServerActive, ServerClient:
	default:
		return fmt.Errorf("server mode %q: want passive, active or client", c.ServerMode)
	}
	if c.PassivePorts.Lo > c.PassivePorts.Hi {
		return fmt.Errorf("passive ports %d-%d: low end above high end", c.PassivePorts.Lo, c.PassivePorts.Hi)
	}
	if c.PassivePorts.Lo == 0 && c.PassivePorts.Hi != 0 {
		return errors.New("passive ports: port 0 is not a valid data port")
	}
	for _, r := range c.AdvertiseRules {
		if err := r.validate([2]uint16{c.PassivePorts.Lo, c.PassivePorts.Hi}); err != nil {
			return err
		}
	}
	if err := validateDataPath(c.DataPath); err != nil {
		return err
	}
	if err := c.ProxyProtocol.Validate(); err != nil {
		return err
	}
	if err := c.TLS.validate(c.Mode); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	return c.Policy.Validate()
}
