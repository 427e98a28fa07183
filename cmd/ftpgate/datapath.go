package main

import "flag"

// The data path: --data-path / data_path chooses how plain data connections
// are relayed (proxy.Config.DataPath): splice (the default) or kernel, BPF
// socket redirection between the two legs, per transfer with a logged
// fallback to splice (TLS data legs, a kernel without it, data complete
// before the redirect).

func addDataPathFlag(fs *flag.FlagSet, fc *fileConfig) {
	fs.StringVar(&fc.DataPath, "data-path", "", "how plain data connections are relayed: splice, or kernel (BPF socket redirection: the bytes never enter ftpgate; needs CAP_BPF and CAP_NET_ADMIN) (default splice)")
}
