// Package demo is `ftpgate demo`: a throw-away lab of three network
// namespaces (client, gateway, server) in which ftpgate, an embedded FTP
// server and a Go FTP client show what an FTP-aware gateway does behind a
// default-drop firewall, with narration.
//
// The command runs in the root network namespace and never changes it: it
// creates the namespaces, links, addresses, routes and its firewall table
// with netlink and nftables, and starts every process that lives in another
// namespace as a re-exec of the same binary (ftpgate run, and the hidden
// sub-commands __demo-server and __demo-client) from an OS thread switched
// into that namespace. It removes everything on exit, on SIGINT/SIGTERM, and
// on the next start after a kill -9 (state under /run/ftpgate-demo).
//
// What it never does: install anything, talk to an address outside
// 198.18.0.0/15, or touch a namespace, table or process it did not create.
package demo
