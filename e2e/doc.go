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
package e2e
