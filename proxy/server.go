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
	"go.uber.org/zap"
)

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
