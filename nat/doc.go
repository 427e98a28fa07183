// Package nat owns everything ftpgate does to the kernel's firewall: the
// owned nftables table "inet ftpgate" with its pinhole sets and input chain,
// elements in an operator's sets (external-set mode), and the removal of all
// of it. It is the only package that imports the netfilter libraries.
//
// The proxy sees one small declarative seam, Firewall: open (or refresh) a
// pinhole, close it, shut everything down. Fake implements the same seam in
// memory for tests of the proxy.
//
// A pinhole admits exactly one expected data connection, (peer address,
// local address, local port), for a few seconds; there are no wildcards.
// The owned table is created with the owner flag over one lasting netlink
// connection, so the kernel deletes it when ftpgate exits, even on kill -9,
// and no pinhole can outlive the proxy. Every change is one netlink batch.
//
// Package nat never parses FTP, never decides policy (which peer may connect
// is the caller's decision), never touches tables, sets or rules it did not
// create, and never edits routes or interfaces.
package nat
