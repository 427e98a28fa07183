package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// TestFTPSBothLegs moves files both ways over protected data connections in
// every client data mode, for each server TLS mode, and checks what the
// server saw: TLS on its control connection and resumed data sessions
// exactly when the mode says so.
func TestFTPSBothLegs(t *testing.T) {
	want := payload(200 << 10)
	for _, tc := range []struct {
		mode      ServerTLSMode
		serverTLS bool // the fake server speaks TLS (and requires it)
	}{
		{ServerTLSMirror, true},
		{ServerTLSRequire, true},
		{ServerTLSOff, false},
	} {
		for _, smode := range []ServerDataMode{ServerPassive, ServerActive} {
			for _, cmode := range []string{"EPSV", "PASV", "EPRT", "PORT"} {
				t.Run(fmt.Sprintf("%s/%s/%s", tc.mode, smode, cmode), func(t *testing.T) {
					ts := newTLSSetup(t)
					h := newHarness(t, smode, func(f *fakeFTP, c *Config) {
						if tc.serverTLS {
							ts.fakeTLS(t, f)
						}
						ts.gateTLS(c, tc.mode)
					})
					h.ftp.files["f"] = want
					cfg := ts.clientConfig()
					cl := h.dialFTPS(cfg)
					if got := cl.xfer(cmode, "RETR f", nil, cfg, 226); !bytes.Equal(got, want) {
						t.Fatalf("download: got %d bytes, want %d identical", len(got), len(want))
					}
					cl.xfer(cmode, "STOR up", want, cfg, 226)
					cl.cmd(221, "QUIT")
					h.ftp.mu.Lock()
					up, secure, data := h.ftp.files["up"], slices.Clone(h.ftp.secureCmds), slices.Clone(h.ftp.dataTLS)
					h.ftp.mu.Unlock()
					if !bytes.Equal(up, want) {
						t.Fatalf("upload: server got %d bytes, want %d identical", len(up), len(want))
					}
					if tc.serverTLS {
						if !slices.Contains(secure, "USER") || !slices.Contains(secure, "PASS") {
							t.Errorf("server saw %v over TLS, want the login", secure)
						}
						if !slices.Equal(data, []string{"resumed", "resumed"}) {
							t.Errorf("server's data TLS sessions: %v, want two resumed", data)
						}
					} else if len(secure) != 0 || len(data) != 0 {
						t.Errorf("server leg off, yet the server saw TLS: control %v, data %v", secure, data)
					}
					checkTLSTransferLogs(t, h.logs, tc.serverTLS)
				})
			}
		}
	}
}

// TestFTPSSlowServerUpload: a protected upload to a server that is slow to
// read, and that sent something on the data connection, arrives whole. (An
// OpenSSL TLS 1.3 server sends session tickets after the handshake; closing
// the connection with them unread would reset it and drop the end of the
// upload still queued in the kernel.)
func TestFTPSSlowServerUpload(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		ts.fakeTLS(t, f)
		f.configure(func(f *fakeFTP) { f.slowStore = 300 * time.Millisecond })
		ts.gateTLS(c, ServerTLSMirror)
	})
	want := payload(32 << 20)
	cfg := ts.clientConfig()
	cl := h.dialFTPS(cfg)
	cl.xfer("EPSV", "STOR big", want, cfg, 226)
	h.ftp.mu.Lock()
	got := h.ftp.files["big"]
	h.ftp.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("server stored %d bytes, want %d identical", len(got), len(want))
	}
}

// TestFTPSImplicit: a client of the implicit listener speaks TLS from the
// first byte; mirroring it, ftpgate uses AUTH TLS toward the explicit server.
func TestFTPSImplicit(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		ts.fakeTLS(t, f)
		ts.gateTLS(c, ServerTLSMirror)
		c.TLS.ImplicitListen = []string{"127.0.0.1:0"}
	})
	h.ftp.files["f"] = []byte("implicit")
	cfg := ts.clientConfig()
	addr := h.srv.ImplicitAddrs()
	if len(addr) != 1 {
		t.Fatalf("implicit listeners: %v", addr)
	}
	c, err := tls.Dial("tcp", addr[0].String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c, tp: textproto.NewConn(c)}
	cl.expect(220)
	cl.cmd(503, "AUTH TLS") // already protected
	cl.cmd(331, "USER u")
	cl.cmd(230, "PASS p")
	cl.cmd(200, "PBSZ 0")
	cl.cmd(200, "PROT P")
	if got := cl.xfer("EPRT", "RETR f", nil, cfg, 226); string(got) != "implicit" {
		t.Fatalf("got %q", got)
	}
	cl.cmd(221, "QUIT")
	h.ftp.mu.Lock()
	defer h.ftp.mu.Unlock()
	if !slices.Contains(h.ftp.log, "AUTH") || !slices.Contains(h.ftp.secureCmds, "USER") {
		t.Errorf("server saw %v (TLS: %v), want AUTH TLS and a protected login", h.ftp.log, h.ftp.secureCmds)
	}
}

// TestFTPSServerSide: a clear-text client reaches a TLS-only server (require),
// also an implicit one (ftps:// upstream); the server sees TLS everywhere,
// data sessions resumed.
func TestFTPSServerSide(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("implicit=%v", implicit), func(t *testing.T) {
			ts := newTLSSetup(t)
			h := newHarness(t, ServerActive, func(f *fakeFTP, c *Config) {
				ts.fakeTLS(t, f)
				f.configure(func(f *fakeFTP) { f.implicitTLS = implicit })
				c.TLS.Server = ServerTLSRequire
				c.TLS.ServerImplicit = implicit
				c.TLS.ServerCAs = ts.serverPKI.pool
			})
			want := payload(64 << 10)
			h.ftp.files["f"] = want
			cl := h.dial()
			if got := cl.transfer("EPSV", "RETR f", nil); !bytes.Equal(got, want) {
				t.Fatalf("download: %d bytes", len(got))
			}
			cl.transfer("PORT", "STOR up", want)
			cl.cmd(502, "AUTH TLS") // no certificate: nothing for the client
			cl.cmd(221, "QUIT")
			h.ftp.mu.Lock()
			defer h.ftp.mu.Unlock()
			if !bytes.Equal(h.ftp.files["up"], want) {
				t.Fatal("upload differs")
			}
			if !slices.Equal(h.ftp.dataTLS, []string{"resumed", "resumed"}) {
				t.Errorf("server's data TLS sessions: %v", h.ftp.dataTLS)
			}
			if slices.Contains(h.ftp.log, "AUTH") == implicit {
				t.Errorf("server commands %v: AUTH expected only for the explicit server", h.ftp.log)
			}
			recs := transferRecords(t, h.logs, 2)
			for _, r := range recs {
				m := r.ContextMap()
				if m["client_tls"] != "none" {
					t.Errorf("client_tls = %v, want none", m["client_tls"])
				}
				if _, ok := m["server_tls"].(map[string]any); !ok {
					t.Errorf("server_tls = %v, want the data leg's TLS", m["server_tls"])
				}
			}
		})
	}
}

// TestFTPSServerVerification: a server certificate from an unknown CA ends
// the session with 421 and an error record; insecure mode lets it through
// with a warning.
func TestFTPSServerVerification(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			ts := newTLSSetup(t)
			other := newTestPKI(t, "unknown CA")
			h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
				ts.fakeTLS(t, f)
				impostor := other.leaf(t, "impostor")
				f.configure(func(f *fakeFTP) { f.tlsCfg.Certificates = []tls.Certificate{*impostor} })
				ts.gateTLS(c, ServerTLSMirror)
				c.TLS.ServerInsecure = insecure
			})
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl := &client{t: t, c: c, tp: newTextproto(c)}
			cl.expect(220)
			if !insecure {
				cl.cmd(421, "AUTH TLS")
				if n := h.logs.FilterMessage("server TLS handshake failed").FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
					t.Errorf("%d error records for the failed server handshake, want 1", n)
				}
				return
			}
			cl.cmd(234, "AUTH TLS")
			cl.startTLS(ts.clientConfig())
			cl.cmd(331, "USER u")
			if n := h.logs.FilterMessage("tls: server certificate NOT verified (insecure mode)").Len(); n != 1 {
				t.Errorf("%d warnings for the unverified server certificate, want 1", n)
			}
		})
	}
}

// TestFTPSCCC: with CCC allowed the control channel returns to clear text
// and ftpgate goes on parsing it (a protected transfer still works); refused,
// CCC gets 534 and the channel stays protected.
func TestFTPSCCC(t *testing.T) {
	for _, tc := range []struct {
		policy      CCCPolicy
		closeNotify bool // the client sends its own close_notify (curl's active CCC mode)
	}{
		{CCCAllow, true}, {CCCAllow, false}, {CCCRefuse, false},
	} {
		policy := tc.policy
		t.Run(fmt.Sprintf("%s/close_notify=%v", policy, tc.closeNotify), func(t *testing.T) {
			ts := newTLSSetup(t)
			h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
				ts.gateTLS(c, ServerTLSOff)
				c.TLS.CCC = policy
			})
			h.ftp.files["f"] = []byte("after ccc")
			cfg := ts.clientConfig()
			cl := h.dialFTPS(cfg)
			feat := cl.cmd(211, "FEAT")
			if strings.Contains(feat, "CCC") != (policy == CCCAllow) {
				t.Errorf("FEAT lists CCC: %v, policy %s:\n%s", strings.Contains(feat, "CCC"), policy, feat)
			}
			if policy == CCCRefuse {
				cl.cmd(534, "CCC")
				cl.cmd(200, "TYPE I") // still over TLS
				return
			}
			cl.cmd(200, "CCC")
			conn := cl.c.(*tls.Conn)
			if tc.closeNotify {
				if err := conn.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if err := awaitCloseNotify(conn); err != nil {
				t.Fatalf("ftpgate's close_notify: %v", err)
			}
			raw := conn.NetConn()
			raw.SetWriteDeadline(time.Time{}) // crypto/tls blocks writes after close_notify
			cl.c, cl.tp = raw, newTextproto(raw)
			cl.cmd(200, "TYPE I") // in clear text now
			if got := cl.xfer("EPSV", "RETR f", nil, cfg, 226); string(got) != "after ccc" {
				t.Fatalf("protected transfer after CCC got %q", got)
			}
			if h.logs.FilterMessage("control channel back in clear text (CCC)").Len() != 1 {
				t.Error("CCC not logged")
			}
		})
	}
}

// TestFTPSProtocolErrors: out-of-order and unsupported security commands get
// the RFC 4217 / 2228 replies; a client that sends more after AUTH before the
// handshake is cut off.
func TestFTPSProtocolErrors(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { ts.gateTLS(c, ServerTLSOff) })
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := &client{t: t, c: c, tp: newTextproto(c)}
	cl.expect(220)
	for _, step := range []struct {
		cmd  string
		code int
	}{
		{"PBSZ 0", 503}, {"PROT P", 503}, {"CCC", 533}, {"AUTH KERBEROS_V4", 504}, {"ADAT abc", 502},
	} {
		cl.cmd(step.code, "%s", step.cmd)
	}
	cl.cmd(234, "AUTH TLS")
	cl.startTLS(ts.clientConfig())
	cl.cmd(503, "PROT P") // before PBSZ
	cl.cmd(200, "PBSZ 0")
	cl.cmd(536, "PROT E")
	cl.cmd(504, "PROT X")
	cl.cmd(503, "AUTH TLS")

	// Pipelining after AUTH: the commands would be read in clear text by a
	// naive proxy, then TLS would start under them.
	p, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pc := &client{t: t, c: p, tp: newTextproto(p)}
	pc.expect(220)
	p.Write([]byte("AUTH TLS\r\nUSER injected\r\n"))
	pc.expect(421)
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection still open after 421 (read %d bytes)", n)
	}
	if slices.Contains(h.ftp.commands(), "USER") {
		t.Error("the pipelined USER reached the server")
	}
}

// TestFTPSFeatures: with a certificate FEAT offers ftpgate's own AUTH TLS,
// PBSZ and PROT once each, whatever the server lists.
func TestFTPSFeatures(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { ts.gateTLS(c, ServerTLSOff) })
	cl := h.dial()
	msg := cl.cmd(211, "FEAT")
	for _, f := range []string{"AUTH TLS", "PBSZ", "PROT"} {
		if n := strings.Count(msg, f); n != 1 {
			t.Errorf("FEAT lists %q %d times:\n%s", f, n, msg)
		}
	}
	for _, kept := range []string{"EPSV", "SIZE", "UTF8"} {
		if !strings.Contains(msg, kept) {
			t.Errorf("FEAT lost %s:\n%s", kept, msg)
		}
	}
}

// TestFTPSCertificateReload: after the store's certificate is replaced, a
// new session is served with the new one, while a running session keeps
// its own and its protected transfers go on resuming.
func TestFTPSCertificateReload(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { ts.gateTLS(c, ServerTLSOff) })
	h.ftp.files["f"] = []byte("reload")
	oldCfg := ts.clientConfig()
	old := h.dialFTPS(oldCfg)
	serial := func(cl *client) *big.Int {
		return cl.c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
	}
	if serial(old).Cmp(ts.gateCert.Leaf.SerialNumber) != 0 {
		t.Fatal("first session does not see the first certificate")
	}
	next := ts.clientPKI.leaf(t, "ftpgate renewed")
	ts.store.Store(next)
	fresh := h.dialFTPS(ts.clientConfig())
	if serial(fresh).Cmp(next.Leaf.SerialNumber) != 0 {
		t.Fatal("a session after the reload does not see the new certificate")
	}
	if got := old.xfer("EPSV", "RETR f", nil, oldCfg, 226); string(got) != "reload" {
		t.Fatalf("running session's transfer after the reload got %q", got)
	}
}

// TestFTPSTransparentIntercept: in a transparent mode only destinations the
// operator listed get TLS (interception); others get 502 and no TLS in FEAT.
func TestFTPSTransparentIntercept(t *testing.T) {
	for _, tc := range []struct {
		name      string
		intercept string
		auth      int
	}{
		{"listed", "127.0.0.1/32", 234},
		{"not-listed", "198.18.0.0/15", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTLSSetup(t)
			h := transparentHarness(t, fakeAddr, func(c *Config) {
				ts.gateTLS(c, ServerTLSOff)
				c.TLS.Intercept = []netip.Prefix{netip.MustParsePrefix(tc.intercept)}
			})
			cl := h.dial()
			if feat := cl.cmd(211, "FEAT"); strings.Contains(feat, "AUTH TLS") != (tc.auth == 234) {
				t.Errorf("FEAT:\n%s", feat)
			}
			cl.cmd(tc.auth, "AUTH TLS")
		})
	}
}

// TestTLSConfigValidate checks the configuration rules.
func TestTLSConfigValidate(t *testing.T) {
	ts := newTLSSetup(t)
	for _, tc := range []struct {
		name string
		mode ListenMode
		cfg  TLSConfig
		want string // substring of the error; "" for none
	}{
		{"zero", ModeReverse, TLSConfig{}, ""},
		{"full", ModeReverse, TLSConfig{Certificate: ts.store, ImplicitListen: []string{"127.0.0.1:990"}, CCC: CCCAllow,
			Server: ServerTLSRequire, ServerImplicit: true, MinVersion: tls.VersionTLS13}, ""},
		{"implicit-no-cert", ModeReverse, TLSConfig{ImplicitListen: []string{":990"}}, "need a certificate"},
		{"implicit-transparent", ModeRedirect, TLSConfig{Certificate: ts.store, ImplicitListen: []string{":990"}}, "reverse mode"},
		{"implicit-bad-addr", ModeReverse, TLSConfig{Certificate: ts.store, ImplicitListen: []string{"990"}}, "implicit listen address"},
		{"empty-store", ModeReverse, TLSConfig{Certificate: NewCertStore(nil)}, "no certificate"},
		{"ccc", ModeReverse, TLSConfig{CCC: "sometimes"}, "CCC policy"},
		{"server-mode", ModeReverse, TLSConfig{Server: "maybe"}, "server TLS mode"},
		{"implicit-upstream-off", ModeReverse, TLSConfig{Server: ServerTLSOff, ServerImplicit: true}, "ftps://"},
		{"versions", ModeReverse, TLSConfig{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}, "above maximum"},
		{"version-range", ModeReverse, TLSConfig{MinVersion: 0x0200}, "want TLS 1.0 to 1.3"},
		{"intercept-reverse", ModeReverse, TLSConfig{Certificate: ts.store, Intercept: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}, "transparent"},
		{"intercept-no-cert", ModeRedirect, TLSConfig{Intercept: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}, "needs a certificate"},
		{"intercept", ModeTProxy, TLSConfig{Certificate: ts.store, Intercept: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate(tc.mode)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRecordConn: after the peer's close_notify, the clear text it sends at
// once is still there for a plain reader, even when both arrive together.
func TestRecordConn(t *testing.T) {
	ts := newTLSSetup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		tc := tls.Client(c, ts.clientConfig())
		if _, err := tc.Write([]byte("over tls\n")); err != nil {
			errc <- err
			return
		}
		// close_notify and the clear text in one segment, as fast as possible.
		if err := tc.CloseWrite(); err != nil {
			errc <- err
			return
		}
		c.SetWriteDeadline(time.Time{}) // crypto/tls blocks writes after close_notify
		_, err = c.Write([]byte("USER clear\r\n"))
		errc <- err
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	cfg, err := newClientTLSConfig(ts.gateCert, tls.VersionTLS12, tls.VersionTLS13, ticketBinding{issuer: 1})
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Server(&recordConn{Conn: raw}, cfg)
	line := make([]byte, 9)
	if _, err := io.ReadFull(tc, line); err != nil || string(line) != "over tls\n" {
		t.Fatalf("over TLS: %q %v", line, err)
	}
	if err := awaitCloseNotify(tc); err != nil {
		t.Fatalf("close_notify: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	clear := make([]byte, 12)
	if _, err := io.ReadFull(raw, clear); err != nil || string(clear) != "USER clear\r\n" {
		t.Fatalf("clear text after close_notify: %q %v", clear, err)
	}
	if _, err := tc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("TLS layer after close_notify: %v, want EOF", err)
	}
}

// TestPlainLegsStaySpliceable: without PROT P on either leg, secureData hands
// back the very *net.TCPConn values, so relay splices them in the kernel.
func TestPlainLegsStaySpliceable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []*net.TCPConn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		conns = append(conns, c.(*net.TCPConn))
	}
	ts := newTLSSetup(t)
	cfg := &Config{TLS: TLSConfig{Certificate: ts.store}}
	s := &session{srv: &Server{obs: NopObserver{}}, cfg: cfg, ftps: newSessionTLS(cfg, false)}
	cli, sv, err := s.secureData(t.Context(), conns[0], conns[1])
	if err != nil {
		t.Fatal(err)
	}
	if cli != net.Conn(conns[0]) || sv != net.Conn(conns[1]) {
		t.Fatalf("plain legs came back as %T and %T, not the original *net.TCPConn", cli, sv)
	}
	if s.ftps.dataClient != nil || s.ftps.dataServer != nil {
		t.Fatal("plain legs recorded as TLS")
	}
}
