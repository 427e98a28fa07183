package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"go.uber.org/zap"
)

// Stats are live counters for health and leak checks.
type Stats struct {
	Sessions  int64 // control sessions open now
	Listeners int64 // listening sockets open now (control and data)
	Pinholes  int64 // pinholes this process believes open now
	Accepted  int64 // control connections accepted since start
	Transfers int64 // transfers completed since start

	DataPortsInUse int // ports of the passive range with a listener or a running transfer
	DataPortsTotal int // the size of the passive range; 0 for kernel-chosen ports
}

// Server accepts control connections and runs a session for each.
type Server struct {
	cfg atomic.Pointer[Config] // swapped by Reload; each session pins the one it began with
	fw  nat.Firewall
	// flows is fw when it can forward data flows in the kernel
	// (flowpath.go); nil otherwise.
	flows nat.FlowForwarder
	log   *zap.Logger
	obs   Observer

	lnMu      sync.Mutex
	listeners []*ctrlListener
	serving   bool            // Serve has started the accept loops
	sessCtx   context.Context // the sessions' context, once serving
	acceptWG  sync.WaitGroup

	draining  chan struct{}
	ports     *dataPorts // data listeners and their pinholes
	live      liveSessions
	adm       admission // session counts and failed-login buckets
	ticketKey [32]byte  // encrypts the TLS session tickets of client legs (ticketBinding)
	sessionWG sync.WaitGroup
	nextID    atomic.Uint64

	sessions, lns, accepted, transfers atomic.Int64
}

// ctrlListener is one control listener and the setting it came from.
type ctrlListener struct {
	spec     string // the configured address, e.g. "198.18.0.1:21"
	implicit bool   // implicit FTPS: TLS before anything else
	ln       *net.TCPListener
	addr     netip.AddrPort
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
	s := &Server{fw: fw, log: log, obs: obs, draining: make(chan struct{})}
	if _, err := rand.Read(s.ticketKey[:]); err != nil {
		return nil, fmt.Errorf("session ticket key: %w", err)
	}
	s.flows, _ = fw.(nat.FlowForwarder)
	s.cfg.Store(&cfg)
	s.ports = newDataPorts(s.dataPortsConfig(&cfg), fw)
	return s, nil
}

// config is the configuration new sessions and data plans use.
func (s *Server) config() *Config { return s.cfg.Load() }

func (s *Server) dataPortsConfig(cfg *Config) dataPortsConfig {
	pp := cfg.ProxyProtocol
	return dataPortsConfig{
		Ports:       cfg.PassivePorts,
		PinholeTTL:  cfg.PinholeTTL,
		KeepAlive:   dataKeepAlive(cfg),
		ProxyHeader: func(a netip.Addr) bool { return pp.Data && pp.trusted(a) },
		DataPeer:    cfg.Policy.DataPeer,
		Log:         s.log,
		Observer:    s.obs,
	}
}

// Stats returns a snapshot of the live counters.
func (s *Server) Stats() Stats {
	inUse, total := s.ports.usage()
	return Stats{
		DataPortsInUse: inUse,
		DataPortsTotal: total,
		Sessions:       s.sessions.Load(),
		Listeners:      s.lns.Load() + s.ports.lns.Load(),
		Pinholes:       s.ports.pinholes.Load(),
		Accepted:       s.accepted.Load(),
		Transfers:      s.transfers.Load(),
	}
}

// listenSpecs are the control listeners cfg asks for: the plain ones, then
// the implicit FTPS ones.
func listenSpecs(cfg *Config) []ctrlListener {
	var out []ctrlListener
	for _, a := range cfg.Listen {
		out = append(out, ctrlListener{spec: a})
	}
	for _, a := range cfg.TLS.ImplicitListen {
		out = append(out, ctrlListener{spec: a, implicit: true})
	}
	return out
}

// open opens the listeners of specs; on error it closes those it opened.
func (s *Server) open(ctx context.Context, cfg *Config, specs []ctrlListener) ([]*ctrlListener, error) {
	lc := listenConfig(keepAlive(cfg))
	lc.Control = cfg.Hooks.ListenControl
	var opened []*ctrlListener
	for _, sp := range specs {
		l, err := lc.Listen(ctx, listenNetwork(sp.spec), sp.spec)
		if err != nil {
			s.closeAll(opened)
			what := ""
			if sp.implicit {
				what = " (implicit FTPS)"
			}
			return nil, fmt.Errorf("listen on %s%s: %w", sp.spec, what, err)
		}
		cl := &ctrlListener{spec: sp.spec, implicit: sp.implicit, ln: l.(*net.TCPListener), addr: addrPortOf(l.Addr())}
		opened = append(opened, cl)
		s.lns.Add(1)
		s.log.Info("listening", zap.Stringer("addr", cl.addr), zap.Bool("implicit_tls", cl.implicit),
			zap.String("mode", string(cfg.Mode)), zap.String("upstream", cfg.Upstream),
			zap.String("server_mode", string(cfg.ServerMode)))
	}
	return opened, nil
}

func (s *Server) closeAll(ls []*ctrlListener) {
	for _, l := range ls {
		l.ln.Close()
		s.lns.Add(-1)
	}
}

// Listen opens every control listener, so that address errors show before
// Serve is called. On error nothing stays open.
func (s *Server) Listen(ctx context.Context) error {
	cfg := s.config()
	ls, err := s.open(ctx, cfg, listenSpecs(cfg))
	if err != nil {
		return err
	}
	s.lnMu.Lock()
	s.listeners = ls
	s.lnMu.Unlock()
	if c := cfg.TLS; c.ServerInsecure && c.serverMode() != ServerTLSOff {
		s.log.Warn("server certificates are NOT verified (insecure mode): anyone between ftpgate and the server can read and change FTPS sessions")
	}
	return nil
}

// Addrs returns the addresses the control listeners are bound to: the
// plain ones, then the implicit FTPS ones.
func (s *Server) Addrs() []netip.AddrPort { return s.addrs(func(*ctrlListener) bool { return true }) }

// ImplicitAddrs returns the addresses the implicit FTPS listeners are bound to.
func (s *Server) ImplicitAddrs() []netip.AddrPort {
	return s.addrs(func(l *ctrlListener) bool { return l.implicit })
}

func (s *Server) addrs(keep func(*ctrlListener) bool) []netip.AddrPort {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	var out []netip.AddrPort
	for _, l := range s.listeners {
		if keep(l) {
			out = append(out, l.addr)
		}
	}
	return out
}

func keepAlive(cfg *Config) net.KeepAliveConfig {
	if cfg.KeepAlive < 0 {
		return net.KeepAliveConfig{Enable: false}
	}
	return net.KeepAliveConfig{Enable: true, Idle: cfg.KeepAlive, Interval: cfg.KeepAlive / 2, Count: 4}
}

// listenConfig is how ftpgate listens, for control and data connections:
// TCP keepalive as kc says, and plain TCP, not Multipath TCP (Go's default
// for listeners since 1.24). An MPTCP client then falls back to TCP in the
// handshake, as MPTCP is designed to. Accepting MPTCP would break more
// than it gives: an MPTCP socket has no conntrack original destination
// (SO_ORIGINAL_DST fails with EOPNOTSUPP, so redirect mode could not serve
// the client), an exact pinhole admits the first subflow and no other, and
// ftpgate's own connections to the server are TCP, so no path is multiple
// end to end.
func listenConfig(kc net.KeepAliveConfig) net.ListenConfig {
	lc := net.ListenConfig{KeepAlive: keepAliveIdle(kc), KeepAliveConfig: kc}
	lc.SetMultipathTCP(false)
	return lc
}

// keepAliveIdle is the net package's KeepAlive duration to go with kc: -1
// when kc turns probes off (a zero duration would mean Go's default, 15 s
// probes, whatever kc says).
func keepAliveIdle(kc net.KeepAliveConfig) time.Duration {
	if kc.Enable {
		return 0 // ignored
	}
	return -1
}

// dataKeepAlive is TCP keepalive on data connections: none while the data
// idle timeout ends a data connection that moves nothing (a keepalive
// would only ever probe a connection that is about to be cut), which saves
// each transfer eight setsockopt calls.
func dataKeepAlive(cfg *Config) net.KeepAliveConfig {
	if cfg.Limits.DataIdleTimeout > 0 {
		return net.KeepAliveConfig{Enable: false}
	}
	return keepAlive(cfg)
}

// Serve accepts sessions until ctx is done, then shuts down: it stops
// accepting, lets running transfers finish for up to ShutdownGrace, and closes
// every session. It returns once every session has ended.
func (s *Server) Serve(ctx context.Context) error {
	s.lnMu.Lock()
	none := len(s.listeners) == 0
	s.lnMu.Unlock()
	if none {
		if err := s.Listen(ctx); err != nil {
			return err
		}
	}
	// Sessions get their own context: shutdown first drains, then cancels.
	sessCtx, cancelSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSessions()

	s.lnMu.Lock()
	s.serving, s.sessCtx = true, sessCtx
	for _, l := range s.listeners {
		s.startAccepting(l)
	}
	s.lnMu.Unlock()
	<-ctx.Done()
	grace := s.config().ShutdownGrace
	s.log.Info("shutting down: no new sessions", zap.Int64("sessions", s.sessions.Load()), zap.Duration("grace", grace))
	s.lnMu.Lock()
	s.serving = false
	s.closeAll(s.listeners)
	s.listeners = nil
	s.lnMu.Unlock()
	s.acceptWG.Wait()
	close(s.draining)

	done := make(chan struct{})
	go func() { s.sessionWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.log.Warn("shutdown grace over: closing remaining sessions", zap.Int64("sessions", s.sessions.Load()))
		cancelSessions()
		<-done
	}
	s.ports.closing.Wait() // the last forwarded flows' closes
	s.log.Info("all sessions closed")
	return nil
}

// startAccepting runs l's accept loop. s.lnMu is held.
func (s *Server) startAccepting(l *ctrlListener) {
	s.acceptWG.Add(1)
	go s.acceptLoop(s.sessCtx, l)
}

func (s *Server) acceptLoop(ctx context.Context, l *ctrlListener) {
	defer s.acceptWG.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
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
			newSession(s, c, l.implicit).run(ctx)
		}()
	}
}

// Reload makes cfg the configuration of new sessions and new data plans:
// advertised addresses and rules, policy, limits, TLS, upstream, the passive
// port range, and the control listeners (new addresses are opened, removed
// ones closed). Running sessions and transfers keep the configuration they
// began with. The mode cannot change. On error nothing changes.
func (s *Server) Reload(ctx context.Context, cfg Config) (err error) {
	defer func() { s.obs.Observe(ReloadEvent{Time: time.Now(), Err: err}) }()
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.setDefaults()
	old := s.config()
	if cfg.Mode != old.Mode {
		return fmt.Errorf("mode %s -> %s: the mode cannot change on reload; restart ftpgate", old.Mode, cfg.Mode)
	}
	if cfg.Observer == nil {
		cfg.Observer = old.Observer
	}

	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	want := listenSpecs(&cfg)
	var keep, gone []*ctrlListener
	var add []ctrlListener
	for _, l := range s.listeners {
		if slices.ContainsFunc(want, func(w ctrlListener) bool { return w.spec == l.spec && w.implicit == l.implicit }) {
			keep = append(keep, l)
		} else {
			gone = append(gone, l)
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(s.listeners, func(l *ctrlListener) bool { return w.spec == l.spec && w.implicit == l.implicit }) {
			add = append(add, w)
		}
	}
	opened, err := s.open(ctx, &cfg, add)
	if err != nil {
		return err
	}
	s.cfg.Store(&cfg)
	s.ports.reconfigure(s.dataPortsConfig(&cfg))
	for _, l := range gone {
		s.log.Info("listener removed by reload; its sessions run on", zap.Stringer("addr", l.addr))
	}
	s.closeAll(gone)
	s.listeners = append(keep, opened...)
	slices.SortStableFunc(s.listeners, func(a, b *ctrlListener) int { // plain ones first, as Addrs promises
		return cmpBool(a.implicit, b.implicit)
	})
	if s.serving {
		for _, l := range opened {
			s.startAccepting(l)
		}
	}
	s.log.Info("configuration reloaded", zap.Int("listeners", len(s.listeners)), zap.Int("opened", len(opened)),
		zap.Int("closed", len(gone)))
	return nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// listenNetwork picks tcp4 or tcp6 for a literal IP address, so that an
// IPv6 wildcard listener does not also take IPv4 (tproxy needs one listener
// per family), and plain tcp for names.
func listenNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "tcp"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "tcp"
	}
	if ip.Is4() {
		return "tcp4"
	}
	return "tcp6"
}

// addrPortOf turns a net.Addr of a TCP socket into an unmapped AddrPort.
func addrPortOf(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
