package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"
)

// BPF socket redirection (Config.DataPath "sockmap"), the first of the two
// kernel data paths measured (flowpath.go has the one DataPathKernel
// chooses): the bytes of a plain data connection never enter ftpgate. Both
// legs stay ftpgate's own TCP connections, as with the splice relay, so it
// works wherever the relay works (sidecar to 127.0.0.1, DMZ host without
// forwarding); the kernel moves every segment that arrives on the source
// leg straight to the other leg's send queue (kernelpath_linux.go). ftpgate
// still learns when the data ended (the source's end-of-file) and how many
// bytes moved (a counter the BPF program keeps), so the final reply waits
// for the data and the records stay exact. It is chosen per transfer; a
// transfer it cannot serve is spliced as before, with a log line saying why.
//
// Measured on Linux 6.18 (veth, 2 vCPUs; e2e TestBenchmarkKernelPath): the
// kernel's redirect to a socket's egress moves about 100-130 MB/s at some
// 20 CPU seconds per GiB in kworkers and softirq, far below the splice relay
// (about 0.8x of plain routing). Redirected data outruns the destination,
// so the relay bounds the kernel's backlog (16 MiB) and finishes such a
// transfer in user space (copy mode, logged). Setting up costs about 160 µs
// per transfer. Keep splice, or the forwarded flows of DataPathKernel where
// the host routes, unless a later kernel measures better.

// Data paths (Config.DataPath).
const (
	DataPathSplice  = "splice"  // splice(2) through ftpgate; the default
	DataPathKernel  = "kernel"  // the kernel forwards passive flows itself (flowpath.go); splice otherwise
	DataPathSockmap = "sockmap" // BPF socket redirection between ftpgate's two legs
)

// validateDataPath reports whether p names a data path.
func validateDataPath(p string) error {
	switch p {
	case "", DataPathSplice, DataPathKernel, DataPathSockmap:
		return nil
	}
	return fmt.Errorf("data path %q: want splice, kernel or sockmap", p)
}

// kernelRelay is one transfer's kernel data path, set up and ready: run moves
// the bytes until the source ends, half-closes the destination and reports on
// done exactly as relayData does; it releases every kernel object it holds
// before it returns. openKernelRelay (per platform) sets one up or says why it
// cannot; nothing is left behind when it fails.
type kernelRelay interface {
	run(done chan<- relayResult)
}

// errSourceEnded: the source leg had sent all its data and its FIN before
// the redirect could begin (a small file), and the kernel only redirects
// established connections. The bytes wait in the source's receive queue, and
// one splice moves them.
var errSourceEnded = errors.New("the source leg has ended already")

// startRelay starts the relay of one transfer from src to dst: in the kernel
// when the configuration asks for it and the legs allow it, else the splice
// relay (or the user-space copy of TLS legs). toServer says that dst is the
// server's leg (an upload). The result comes on done either way.
func (s *session) startRelay(dst, src net.Conn, toServer bool, limit int64, done chan<- relayResult) {
	if s.cfg.DataPath == DataPathSockmap {
		if s.startKernelRelay(dst, src, limit, done) {
			return
		}
	}
	go relay(dst, src, toServer, limit, done)
}

// startKernelRelay starts the kernel data path and reports whether it did;
// when it did not, it has logged why.
func (s *session) startKernelRelay(dst, src net.Conn, limit int64, done chan<- relayResult) bool {
	if why := kernelPathVeto(dst, src, limit); why != "" {
		s.log.Info("sockmap data path not used: "+why+"; splicing instead", zap.String("reason", why))
		return false
	}
	kr, err := openKernelRelay(dst.(*net.TCPConn), src.(*net.TCPConn), s.log)
	if errors.Is(err, errSourceEnded) {
		s.log.Info("sockmap data path not used: the data had all arrived before the redirect; splicing instead",
			zap.String("reason", "data complete before the redirect"))
		return false
	}
	if err != nil {
		s.log.Warn("sockmap data path unavailable; splicing instead", zap.String("reason", "sockmap unavailable"), zap.Error(err))
		return false
	}
	if ce := s.log.Check(zap.DebugLevel, "sockmap data path"); ce != nil {
		ce.Write(zap.Stringer("from", src.RemoteAddr()), zap.Stringer("to", dst.RemoteAddr()))
	}
	go kr.run(done)
	return true
}

// kernelPathVeto says why a transfer between dst and src cannot take the
// kernel data path, or "" when it can. Policy that needs to see the bytes
// (an upload size cap cut by the relay) must veto here too.
func kernelPathVeto(dst, src net.Conn, limit int64) string {
	if limit > 0 {
		return "the upload size cap needs the relay to count the bytes"
	}
	for _, c := range []net.Conn{dst, src} {
		switch c.(type) {
		case *tls.Conn:
			return "TLS data"
		case *net.TCPConn:
		default:
			return "a data leg is not a plain TCP connection"
		}
	}
	return ""
}
