package main

import "flag"

// The data path: --data-path / data_path chooses how plain data connections
// are relayed (proxy.Config.DataPath): splice (the default); kernel, the
// firewall forwarding passive data flows itself (DNAT and SNAT of exactly
// the expected connection in table inet ftpgate, nat.Config.Flows) where
// the host routes between client and server; or sockmap, BPF socket
// redirection between the two legs. Both kernel paths fall back to splice
// per transfer, with a log line saying why (TLS data, an active leg, an
// upload size cap, a host that does not forward, ...).

func addDataPathFlag(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.DataPath, "data-path", "", "how plain data connections are relayed: splice; kernel (the firewall forwards passive data connections itself, so the bytes never enter ftpgate; needs a host that routes and firewall mode own-table); or sockmap (BPF socket redirection between the legs; needs CAP_BPF) (default splice)")
}
