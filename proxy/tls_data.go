package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// FTPS on data connections: once both legs of a transfer are connected, TLS
// goes on each leg whose protection level (PROT P) asks for it, before the
// relay starts. Plain legs are left as *net.TCPConn so that they splice.

// secureData puts TLS on the transfer's data connections where the legs'
// protection levels say so: ftpgate is the TLS server toward the client
// (also when it dialed the client, RFC 4217 §7) and the TLS client toward
// the server. Both handshakes run at once, bounded by the data timeout. A
// client's data connection that does not resume this session's control TLS
// session is refused unless DataReuseOptional. Plain legs come back as the
// *net.TCPConn they were, so that relay can splice them.
func (s *session) secureData(ctx context.Context, cli, srv *net.TCPConn) (net.Conn, net.Conn, error) {
	t := s.ftps
	t.dataClient, t.dataServer = nil, nil
	cliP := prot(t.prot) == 'P'
	srvP := t.server != nil && prot(t.serverProt) == 'P'
	var cliOut, srvOut net.Conn = cli, srv
	if !cliP && !srvP {
		return cliOut, srvOut, nil
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := s.cfg.DataTimeout
	var wg sync.WaitGroup
	var cliTLS, srvTLS *tls.Conn
	var cliErr, srvErr error
	if cliP {
		cfg, err := s.ftps.clientConfig()
		if err != nil {
			return nil, nil, err
		}
		cliTLS = tls.Server(cli, cfg)
		wg.Go(func() {
			lift := handshakeDeadline(cli, timeout)
			defer lift()
			if cliErr = cliTLS.HandshakeContext(hctx); cliErr != nil {
				cancel()
			}
		})
	}
	if srvP {
		srvTLS = tls.Client(srv, s.ftps.serverConfig(s.serverPeer.Addr()))
		wg.Go(func() {
			lift := handshakeDeadline(srv, timeout)
			defer lift()
			if srvErr = srvTLS.HandshakeContext(hctx); srvErr != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if cliP {
		s.srv.obs.Observe(TLSHandshakeEvent{Leg: "client-data", Err: cliErr,
			Resumed: cliErr == nil && cliTLS.ConnectionState().DidResume})
	}
	if srvP {
		s.srv.obs.Observe(TLSHandshakeEvent{Leg: "server-data", Err: srvErr,
			Resumed: srvErr == nil && srvTLS.ConnectionState().DidResume})
	}
	switch {
	case cliErr != nil && !errors.Is(cliErr, context.Canceled):
		s.peerWarn("client data TLS handshake failed", zap.Error(cliErr))
		return nil, nil, &dataTLSError{leg: "client", code: 425, msg: "TLS handshake failed", err: cliErr}
	case srvErr != nil && !errors.Is(srvErr, context.Canceled):
		s.peerWarn("server data TLS handshake failed", zap.Error(srvErr))
		return nil, nil, &dataTLSError{leg: "server", code: 425, msg: "TLS handshake with the server failed", err: srvErr}
	case cliErr != nil || srvErr != nil:
		return nil, nil, &dataTLSError{leg: "client", code: 425, msg: "TLS handshake interrupted", err: errors.Join(cliErr, srvErr)}
	}
	if cliP {
		cs := cliTLS.ConnectionState()
		if !cs.DidResume && !s.cfg.TLS.DataReuseOptional {
			s.peerWarn("data connection refused: its TLS session does not resume the control connection's",
				zap.Stringer("from", addrPortOf(cli.RemoteAddr())), zap.String("version", tls.VersionName(cs.Version)))
			return nil, nil, &dataTLSError{leg: "client", code: 522, msg: "TLS session reuse required"}
		}
		t.dataClient = stateOf(cs)
		cliOut = cliTLS
	}
	if srvP {
		t.dataServer = stateOf(srvTLS.ConnectionState())
		srvOut = srvTLS
	}
	return cliOut, srvOut, nil
}

// dataTLSFailed ends a transfer whose data connection could not be
// protected: both data connections are closed, the server's final reply is
// swallowed (unless it came early, while the legs were connecting) and the
// client hears why.
func (s *session) dataTLSFailed(ctx context.Context, err error, early *rewrite.Reply, conns ...*net.TCPConn) error {
	for _, c := range conns {
		c.Close()
	}
	var de *dataTLSError
	if !errors.As(err, &de) {
		return err
	}
	if early == nil {
		if _, err := s.ctl.serverReply(ctx, s.cfg.IdleTimeout); err != nil {
			return err
		}
	}
	if de.code == 522 {
		return s.ctl.replyf(522, "Data connection refused: its TLS session must resume the control connection's.")
	}
	return s.ctl.replyf(de.code, "Can't open data connection: %s.", de.msg)
}

// tlsTransferFields are the TLS facts of a transfer record: each data leg's
// version and cipher suite, or "none".
func (t *sessionTLS) transferFields() []zap.Field {
	if t.clientState == nil && t.serverState == nil {
		return nil
	}
	return []zap.Field{tlsField("client_tls", t.dataClient), tlsField("server_tls", t.dataServer)}
}
