// Package proxy owns ftpgate's connections: control listeners, sessions, data
// plans, the data relay and TLS on both legs (FTPS). It decides nothing itself
// (that is policy's job), speaks the wire protocol only through rewrite, and
// touches the kernel only through the nat.Firewall it is given.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/policy"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// ServerMode is how ftpgate opens data connections toward the server.
type ServerMode string

// Server modes.
const (
	ServerPassive ServerMode = "passive" // we dial the server (EPSV, falling back to PASV)
	ServerActive  ServerMode = "active"  // the server dials us (EPRT, falling back to PORT)
	ServerClient  ServerMode = "client"  // mirror what the client asked for
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
	Mode Mode
	// Listen are the control-connection addresses, e.g. "198.18.0.1:21".
	Listen []string
	// Upstream is the FTP server, "host:port" (reverse mode only). A name
	// is resolved again for every session.
	Upstream string
	// Advertise is the address written into passive replies to clients. Nil
	// means the address of the data listener (the one the client connected
	// to), or in the transparent modes with DivertData the server's address.
	Advertise AddrSource
	// AdvertiseRules choose the advertised address and port by client
	// network; the first match wins, and clients no rule matches get
	// Advertise.
	AdvertiseRules []AdvertiseRule
	// UpstreamSource is the source address of connections to servers; nil
	// means the kernel's choice.
	UpstreamSource AddrSource
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
	ServerMode ServerMode
	// TrustServerPASVAddress makes ftpgate dial the address in the server's
	// 227 reply instead of the server's control address.
	TrustServerPASVAddress bool
	// PinholeTTL is how long a pinhole waits for its peer; zero means the
	// firewall's default.
	PinholeTTL time.Duration

	// ProxyProtocol is the PROXY protocol of load balancers in front.
	ProxyProtocol ProxyProtocol

	Policy policy.Config
	Limits rewrite.Limits
	// TLS is FTPS on both legs; the zero value means none toward clients.
	TLS TLSConfig

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
	default:
		return fmt.Errorf("mode %q: want reverse, redirect or tproxy", c.Mode)
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
	if err := c.ProxyProtocol.Validate(); err != nil {
		return err
	}
	if err := c.TLS.validate(c.Mode); err != nil {
		return err
	}
	return c.Policy.Validate()
}

// Stats are live counters for health and leak checks.
type Stats struct {
	Sessions  int64 // control sessions open now
	Listeners int64 // listening sockets open now (control and data)
	Pinholes  int64 // pinholes this process believes open now
	Accepted  int64 // control connections accepted since start
	Transfers int64 // transfers completed since start
}

// Server accepts control connections and runs a session for each.
type Server struct {
	cfg Config
	fw  nat.Firewall
	log *zap.Logger

	listeners []*net.TCPListener
	implicit  map[*net.TCPListener]bool // implicit FTPS listeners; fixed once Listen returns
	ctrlAddrs []netip.AddrPort          // fixed once Listen returns
	draining  chan struct{}
	ports     *dataPorts // data listeners and their pinholes
	obs       Observer
	sessionWG sync.WaitGroup
	nextID    atomic.Uint64

	sessions, lns, accepted, transfers atomic.Int64
}

// New checks cfg and returns a Server. fw may be nat's fake or a real firewall.
func New(cfg Config, fw nat.Firewall, log *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fw == nil {
		return nil, errors.New("no firewall (use nat mode none for no kernel changes)")
	}
	cfg.setDefaults()
	obs := cfg.Observer
	if obs == nil {
		obs = NopObserver{}
	}
	s := &Server{cfg: cfg, fw: fw, log: log, obs: obs, draining: make(chan struct{})}
	pp := cfg.ProxyProtocol
	s.ports = newDataPorts(dataPortsConfig{
		Ports:      cfg.PassivePorts,
		PinholeTTL: cfg.PinholeTTL,
		ProxyHeader: func(a netip.Addr) bool {
			return pp.Data && pp.trusted(a)
		},
		DataPeer: cfg.Policy.DataPeer,
		Log:      log,
		Observer: obs,
	}, fw)
	return s, nil
}

// Stats returns a snapshot of the live counters.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions:  s.sessions.Load(),
		Listeners: s.lns.Load() + s.ports.lns.Load(),
		Pinholes:  s.ports.pinholes.Load(),
		Accepted:  s.accepted.Load(),
		Transfers: s.transfers.Load(),
	}
}

// Listen opens every control listener, so that address errors show before
// Serve is called. On error nothing stays open.
func (s *Server) Listen(ctx context.Context) error {
	lc := net.ListenConfig{KeepAliveConfig: s.keepAlive(), Control: s.cfg.Hooks.ListenControl}
	for _, addr := range s.cfg.Listen {
		l, err := lc.Listen(ctx, listenNetwork(addr), addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, l.(*net.TCPListener))
		s.ctrlAddrs = append(s.ctrlAddrs, addrPortOf(l.Addr()))
		s.lns.Add(1)
		s.log.Info("listening", zap.Stringer("addr", l.Addr()), zap.String("mode", string(s.cfg.Mode)),
			zap.String("upstream", s.cfg.Upstream), zap.String("server_mode", string(s.cfg.ServerMode)))
	}
	if err := s.listenImplicit(ctx, lc); err != nil {
		s.closeListeners()
		return err
	}
	return nil
}

// Addrs returns the addresses the control listeners are bound to.
func (s *Server) Addrs() []netip.AddrPort { return s.ctrlAddrs }

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
		s.lns.Add(-1)
	}
	s.listeners = nil
}

func (s *Server) keepAlive() net.KeepAliveConfig {
	if s.cfg.KeepAlive < 0 {
		return net.KeepAliveConfig{Enable: false}
	}
	return net.KeepAliveConfig{Enable: true, Idle: s.cfg.KeepAlive, Interval: s.cfg.KeepAlive / 2, Count: 4}
}

// Serve accepts sessions until ctx is done, then shuts down: it stops
// accepting, lets running transfers finish for up to ShutdownGrace, and closes
// every session. It returns once every session has ended.
func (s *Server) Serve(ctx context.Context) error {
	if len(s.listeners) == 0 {
		if err := s.Listen(ctx); err != nil {
			return err
		}
	}
	// Sessions get their own context: shutdown first drains, then cancels.
	sessCtx, cancelSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSessions()

	var acceptWG sync.WaitGroup
	for _, l := range s.listeners {
		acceptWG.Add(1)
		go s.acceptLoop(sessCtx, l, &acceptWG)
	}
	<-ctx.Done()
	s.log.Info("shutting down: no new sessions", zap.Int64("sessions", s.sessions.Load()),
		zap.Duration("grace", s.cfg.ShutdownGrace))
	s.closeListeners()
	acceptWG.Wait()
	close(s.draining)

	done := make(chan struct{})
	go func() { s.sessionWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("shutdown grace over: closing remaining sessions", zap.Int64("sessions", s.sessions.Load()))
		cancelSessions()
		<-done
	}
	s.log.Info("all sessions closed")
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, l *net.TCPListener, wg *sync.WaitGroup) {
	defer wg.Done()
	var backoff time.Duration
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or similar: back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed", zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.accepted.Add(1)
		s.sessions.Add(1)
		s.sessionWG.Add(1)
		go func() {
			defer s.sessionWG.Done()
			defer s.sessions.Add(-1)
			newSession(s, c, s.implicit[l]).run(ctx)
		}()
	}
}
