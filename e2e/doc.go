// Package e2e holds ftpgate's end-to-end acceptance tests: real kernels (network namespaces,
// veth pairs, nftables), real FTP servers (vsftpd, proftpd, pure-ftpd) and real clients (curl,
// lftp, Python ftplib) around a freshly built ftpgate binary, with checksums of what crossed.
//
// It owns the test harness and nothing else: it never touches the root network namespace's
// firewall or routes, never sends traffic outside 198.18.0.0/15 and fd00::/8, never kills a
// process it did not start, and nothing imports it.
//
// The tests need root and the packages installed by scripts/install-test-deps.sh. Without them
// they skip, unless CI=true or FTPGATE_E2E=1 is set, in which case they fail and say what is
// missing. Other switches: FTPGATE_RACE=1 builds ftpgate with -race, FTPGATE_BIN=path uses a
// prebuilt binary, FTPGATE_BENCH=1 runs the 1 GiB throughput and strace benchmark,
// FTPGATE_E2E_LOG_LEVEL sets ftpgate's --log-level (default info). Without an explicit -parallel
// the package runs 8 tests at a time: they mostly wait on servers and sessions, not the CPU.
//
// # Where each feature is tested
//
// Test files are named by the feature they prove; TestDocTable keeps this table complete.
//
//	feature                                                               test                                     file
//	suite setup: fixtures, the ftpgate build, prerequisites, -parallel    TestMain                                 harness_suite_linux_test.go
//	the harness itself: every client and mode straight to every server    TestBaseline                             baseline_linux_test.go
//	interop: vsftpd, proftpd, pure-ftpd; curl, ftplib, lftp; every mode   TestInterop                              interop_linux_test.go
//	IPv6 clients to IPv6 servers                                          TestIPv6EndToEnd                         ipv6_linux_test.go
//	ABOR as urgent data in the middle of a download                       TestAbort                                abort_linux_test.go
//	--data-path sockmap vs splice, routing, flow NAT (FTPGATE_BENCH=1)     TestBenchmarkKernelPath                  benchmark_kernelpath_linux_test.go
//	--data-path kernel: forwarded flows, exact counts, fallbacks, ABOR     TestKernelDataPath                       kernelpath_linux_test.go
//	own-table pinholes: closed ports, one exact element, gone on connect  TestOwnTablePinholes                     pinholes_linux_test.go
//	pinhole expiry (--pinhole-ttl), 425 after --data-timeout              TestPinholeExpiry                        pinholes_linux_test.go
//	kill -9: the owned table and its pinholes go with the process         TestKillNine                             killnine_linux_test.go
//	--firewall external-set: an operator's sets, ruleset untouched        TestExternalSet                          externalset_linux_test.go
//	data connection theft by a third host (firewall none, own-table)      TestDataConnectionTheft                  datatheft_linux_test.go
//	PORT/EPRT bounce attempts refused                                     TestBounceRefused                        bounce_linux_test.go
//	transparent edge gateway: redirect, tproxy, divert maps               TestGatewayTransfers                     gateway_linux_test.go
//	--preserve-client-address (tproxy)                                    TestGatewayTransfers                     gateway_linux_test.go
//	Multipath TCP clients (mptcpize curl): plain TCP listeners, fallback  TestMPTCPClients                         mptcp_linux_test.go
//	200 uploads, 8 ephemeral ports: connect picks a bound leg's port      TestFewLocalPorts                        localports_linux_test.go
//	--upstream-source: the server sees that address, control and data     TestFewLocalPorts                        localports_linux_test.go
//	the gateway as nobody with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only   TestGatewayUnprivileged                  gateway_unprivileged_linux_test.go
//	--intercept-ports                                                     TestGatewayInterceptPorts                gateway_interceptports_linux_test.go
//	--allow-destinations                                                  TestGatewayAllowDestinations             gateway_allowdestinations_linux_test.go
//	--advertise interface:NAME follows address changes                    TestAdvertiseFollowsInterface            advertise_interface_linux_test.go
//	split horizon (advertise_rules): pod address or load balancer's       TestClusterInboundSidecar/split-horizon  splithorizon_linux_test.go
//	Kubernetes inbound sidecar behind kube-proxy, 8 data ports, load      TestClusterInboundSidecar                sidecar_inbound_linux_test.go
//	Kubernetes outbound sidecar (--intercept-output) behind SNAT          TestClusterOutboundSidecar               sidecar_outbound_linux_test.go
//	--replicas behind one address: 300 sessions, rolling restart          TestReplicas                             replicas_linux_test.go
//	PROXY protocol v1/v2 from haproxy: real client, trusted sources       TestHAProxyProxyProtocol                 proxyprotocol_linux_test.go
//	FTPS with vsftpd and proftpd: TLS required, session reuse             TestFTPSInterop                          ftps_interop_linux_test.go
//	FTPS implicit listener for clients (--implicit-listen)                TestFTPSImplicitClient                   ftps_implicit_linux_test.go
//	FTPS implicit toward the server (--upstream ftps://)                  TestFTPSImplicitServer                   ftps_implicit_linux_test.go
//	clear-text clients to TLS-only servers (--server-tls require)         TestFTPSClearClientRequire               ftps_clearclient_linux_test.go
//	FTPS data connections must resume the control TLS session             TestFTPSSessionReuseRefused              ftps_sessionreuse_linux_test.go
//	certificate reload on SIGHUP                                          TestFTPSCertificateReload                ftps_certreload_linux_test.go
//	CCC: --tls-ccc allow and refuse                                       TestFTPSCCC                              ftps_ccc_linux_test.go
//	TLS 1.2 on both legs (--tls-max-version)                              TestFTPSTLS12                            ftps_tls12_linux_test.go
//	FTPS interception on the edge gateway (--tls-intercept)               TestFTPSEdgeGateway                      ftps_edgegateway_linux_test.go
//	ftpgate status: sessions, a transfer in flight, pinholes, --watch     TestStatus                               status_linux_test.go
//	explicit proxy mode: lftp ftp:proxy, curl, ftplib USER user@host      TestExplicitProxy                        explicit_linux_test.go
//	explicit mode: refused destinations (trap), names, proxy auth         TestExplicitProxy/denied                 explicit_linux_test.go
//	session limits: 50 idle connections from one host, vsftpd max_per_ip  TestSessionLimitPerClient                limits_linux_test.go
//	--data-idle-timeout: a stalled download gets 426 and its records      TestDataIdleTimeout                      limits_linux_test.go
//	--commands-preset read-only: STOR DELE RNFR refused, RETR served      TestCommandPolicyReadOnly                commandpolicy_linux_test.go
//	FTPS clients sharing one TLS session cache over parallel sessions     TestFTPSSharedSessionCache               ftps_sharedcache_linux_test.go
//	Prometheus byte counters; promtool check metrics on a live scrape     TestMetricsTransferBytes                 operator_linux_test.go
//	SIGTERM: /readyz 503, a running 100 MiB download completes, exit 0    TestDrainOnSIGTERM                       operator_linux_test.go
//	SIGHUP: a new advertised address; a broken config file refused        TestReloadOnSIGHUP                       operator_linux_test.go
//	--audit-log and --xferlog records of a 550 and a 425                  TestAuditRecords                         operator_linux_test.go
//	this table names every test and the file that holds it                TestDocTable                             doc_test.go
//
// # Harness
//
// Files named harness_* hold no test of a feature, only what the tests share:
//
//	harness_suite_linux_test.go    TestMain, fixtures and checksums, prerequisites (requirePrereqs)
//	harness_netns_linux_test.go    topology (client, proxy, server, host), lab, processes in namespaces
//	harness_cluster_linux_test.go  the simulated Kubernetes node, pods and kube-proxy rules
//	testdata/ftpload.py            hundreds of concurrent ftplib sessions, fed and reported as JSON lines
//	harness_gateway_linux_test.go  the operator's default-drop edge gateway
//	harness_servers_linux_test.go  vsftpd (startVsftpd, vsftpdOptions), proftpd, pure-ftpd, FTPS config
//	harness_pki_linux_test.go      a test's CAs and certificates
//	harness_clients_linux_test.go  curl, ftplib, their FTPS forms, lftp (runLftp, lftpRun.settings)
//	harness_ftpctl_linux_test.go   a scripted control connection that stops where real clients do not
//	harness_ftpgate_linux_test.go  ftpgate's command line, process, JSON log and /debug/vars
//	harness_nft_linux_test.go      nft read-back: sets, maps, counters, ruleset shape (readPinholes)
//	harness_checks_linux_test.go   checks shared by tests: transfer records, warm-up, settling
package e2e
