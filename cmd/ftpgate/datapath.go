package main

import (
	"flag"
	"fmt"

	"github.com/ftpgate/ftpgate/nat"
)

// The data path: --data-path / data_path chooses how plain data connections
// are relayed (proxy.Config.DataPath): splice (the default); kernel, the
// firewall forwarding passive data flows itself (DNAT and SNAT of exactly
// the expected connection in table inet ftpgate, nat.Config.Flows) where
// the host routes between client and server; or sockmap, BPF socket
// redirection between the two legs. Both kernel paths fall back to splice
// per transfer, with a log line saying why (TLS data, an active leg, an
// upload size cap, a host that does not forward, ...).
//
// The kernel path reads the ends of the forwarded flows from an NFLOG group
// (--flow-log-group / flow_log_group, nat.DefaultFlowLogGroup by default),
// which no other program in the namespace may bind.

func addDataPathFlag(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.DataPath, "data-path", "", "how plain data connections are relayed: splice; kernel (the firewall forwards passive data connections itself, so the bytes never enter ftpgate; needs a host that routes and firewall mode own-table); or sockmap (BPF socket redirection between the legs; needs CAP_BPF) (default splice)")
	fs.IntVar(&fc.FlowLogGroup, "flow-log-group", 0, fmt.Sprintf("NFLOG group (1-65535) from which --data-path kernel reads the ends of the flows it forwards; no other program in ftpgate's network namespace may use it (default %d)", nat.DefaultFlowLogGroup))
}

// flowLogGroup checks a configured NFLOG group (0: the default).
func flowLogGroup(g int) (uint16, error) {
	if g < 0 || g > 65535 {
		return 0, fmt.Errorf("flow_log_group %d: want an NFLOG group from 1 to 65535 (0 or none: %d)", g, nat.DefaultFlowLogGroup)
	}
	return uint16(g), nil
}
