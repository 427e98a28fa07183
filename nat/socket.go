package nat

// SocketOptions configures sockets ftpgate opens. Control is usable as
// net.ListenConfig.Control and net.Dialer.Control.
type SocketOptions struct {
	// Transparent sets IP_TRANSPARENT (IPv4 sockets) or IPV6_TRANSPARENT
	// (IPv6 sockets, which covers their IPv4-mapped traffic): a listener
	// gets the connections tproxy hands it, and a dialer may bind to an
	// address that is not this host's (the client's, in tproxy mode).
	// Needs CAP_NET_ADMIN or CAP_NET_RAW.
	Transparent bool
	// Mark sets SO_MARK, e.g. Intercept.LoopMark on ftpgate's own
	// outgoing sockets; zero leaves it unset. Needs CAP_NET_ADMIN.
	Mark uint32
}
