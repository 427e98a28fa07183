// Package proxy owns ftpgate's connections: control listeners, sessions, data
// plans, the data relay and TLS on both legs (FTPS). It decides nothing itself
// (that is policy's job), speaks the wire protocol only through rewrite,
// touches the kernel only through the nat.Firewall it is given, and reports
// what happens through the Observer in its Config (metrics and audit records
// are cmd's business, not this package's).
//
// # One file per phase
//
// A passive download (EPSV, then RETR) reads top to bottom through these
// files, in this order:
//
//	server.go      Server: listeners, the accept loop, shutdown, Reload, Stats
//	session.go     session: its state, the command loop, dispatch, forward
//	limits.go      admission: session limits and client rules, failed-login buckets
//	connect.go     the session's start: PROXY header, choice of server, upstream dial
//	explicit.go    explicit mode and lazy connect: ftpgate greets, the login names the server
//	control.go     control: both control connections, framing, the reply pipeline
//	datasetup.go   the data plan: PASV/EPSV/LPSV/SPSV, PORT/EPRT/LPRT, the server leg
//	advertise.go   what a passive reply advertises (split horizon), a pure function
//	dataports.go   dataPorts: data ports, their listeners, waiters and pinholes
//	transfer.go    a transfer: 150, connecting the legs, the final reply, ABOR, records
//	tls_data.go    TLS on the data legs, when PROT P asks for it
//	relay.go       the relay: splice for plain legs, a user-space copy for TLS
//	flowpath.go    --data-path kernel: the firewall forwards the data connection itself (no relay)
//	kernelpath*.go --data-path sockmap: BPF socket redirection between the legs, falling back to relay.go
//
// FTPS on the control channel lives in tls.go (configuration), tls_control.go
// (AUTH, PBSZ, PROT, CCC and the handshakes; the per-session state sessionTLS)
// and tls_conn.go (the record-aware connections CCC needs). proxyproto.go reads
// and writes PROXY protocol headers; errors.go lists every error kind and what
// the client hears for it; events.go defines the Observer and its events;
// config.go the Config and the modes; snapshot.go the live view for the
// admin endpoint (progress read from TCP_INFO, tcpinfo_*.go); logcore.go the
// session logger, whose context stays fields until a line is written.
//
// # The modes
//
//	ListenMode       how control connections reach ftpgate: reverse, redirect, tproxy, explicit
//	ServerDataMode   how data connections toward the server open: passive, active, client
//	ServerTLSMode    whether the server legs use TLS: mirror, require, off
//	nat.FirewallMode how pinholes are kept: own-table, external-set, none
//
// # Tests
//
//	harness_test.go             the proxy in front of a scripted fake server (harness_fakeserver_test.go)
//	harness_tls_test.go         a throw-away PKI and FTPS clients
//	transfer_test.go            every data mode, fallbacks, ABOR, a client that never connects
//	ahead_test.go               passive replies answered before the server's
//	keepalive_linux_test.go     TCP keepalive on control and data sockets
//	dataports_test.go           one data port shared by several clients
//	dataports_pinholes_test.go  pinholes of different plans at once, a shared one in order
//	logcore_test.go             the session logger writes what zap's With would, smaller
//	security_test.go            bounce, data peers, no password in logs
//	session_test.go             FEAT, concurrent sessions, shutdown
//	transparent_test.go         redirect and tproxy: server choice, loops, divert
//	advertise_test.go           the advertised address and port, as a table
//	proxyproto_test.go          PROXY protocol headers
//	ftps_test.go                FTPS on both legs, reuse, CCC, certificate reload
//	events_test.go              what the Observer is told
//	hostile_test.go             48 misbehaving clients and servers, with leak checks
//	fuzz_test.go                FuzzSession: arbitrary client and server bytes through a session
//	explicit_test.go            explicit mode: every USER form, proxy login, refused destinations
//	lazy_test.go                lazy connect: nothing reaches the server before USER
//	harness_lineserver_test.go  a line-scripted server for explicit and lazy tests
//	reload_test.go              Reload: listeners, advertised address, refused reloads
//	snapshot_test.go            Snapshot: sessions, a transfer in flight, pinholes
//	kernelpath_*test.go         the kernel data path: checksums, byte counts, ABOR, fallbacks, no leaks
//	paths_test.go               absolute paths in the records
package proxy
