// Package nat owns everything ftpgate does to the kernel's network stack:
// the owned nftables table "inet ftpgate" with its pinhole sets and input
// chain, elements in an operator's sets (external-set mode), the
// transparent gateway's interception rules and divert maps, tproxy's
// policy-routing rule and local route, the socket options of transparent
// and marked sockets (IP_TRANSPARENT, SO_MARK, SO_ORIGINAL_DST), address
// discovery and following through netlink, and the removal of all of it.
// It is the only package that imports the netfilter and netlink libraries.
//
// The proxy sees one small declarative seam, Firewall: open (or refresh) a
// pinhole, close it, shut everything down. Fake implements the same seam in
// memory for tests of the proxy.
//
// With Config.Flows the owned table also forwards data flows itself (the
// kernel data path, FlowForwarder): exactly one expected connection (peer,
// local address, local port) is DNAT'ed to the server's data endpoint and
// SNAT'ed to our address, and its SYN, FIN and RST packets (and one in
// 256) are logged to an NFLOG group that FlowLog reads, so the proxy
// learns the end of data and the exact byte count from sequence numbers.
//
// A pinhole admits exactly one expected data connection, (peer address,
// local address, local port), for a few seconds; there are no wildcards.
// In transparent mode a pinhole may also divert exactly the flow (peer,
// original server address, port) to ftpgate's local address and port.
// The owned table is created with the owner flag over one lasting netlink
// connection, so the kernel deletes it when ftpgate exits, even on kill -9,
// and no pinhole or interception rule can outlive the proxy. Every change
// is one netlink batch; Opens and Closes that come while a batch is in
// flight share the next one (group commit), each with its own result.
// (tproxy's policy-routing rule and route are not
// tied to the process: Shutdown and Cleanup remove them.)
//
// Package nat never parses FTP, never decides policy (which peer may connect
// is the caller's decision), never touches tables, sets or rules it did not
// create, never edits interfaces or addresses, and changes routing only by
// the one rule "fwmark <TProxyMark> lookup <RouteTable>" and the one local
// default route in that table, per family, that tproxy needs.
package nat
