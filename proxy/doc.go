// Package proxy owns ftpgate's connections: control listeners, sessions, data
// plans, the data relay and TLS on both legs (FTPS). It decides nothing itself
// (that is policy's job), speaks the wire protocol only through rewrite, and
// touches the kernel only through the nat.Firewall it is given.
package proxy
