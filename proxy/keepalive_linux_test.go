//go:build linux

package proxy

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpSocket is one TCP socket of this process (ftpgate runs in the test's
// process): its ends and whether SO_KEEPALIVE is on.
type tcpSocket struct {
	local, peer netip.AddrPort
	keepAlive   bool
}

func tcpSockets(t *testing.T) []tcpSocket {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []tcpSocket
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		ka, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if err != nil {
			continue
		}
		ls, lerr := unix.Getsockname(fd)
		ps, perr := unix.Getpeername(fd)
		l4, ok1 := ls.(*unix.SockaddrInet4)
		p4, ok2 := ps.(*unix.SockaddrInet4)
		if lerr != nil || perr != nil || !ok1 || !ok2 {
			continue // not a connected IPv4 socket (a listener, netlink, ...)
		}
		out = append(out, tcpSocket{
			local:     netip.AddrPortFrom(netip.AddrFrom4(l4.Addr), uint16(l4.Port)),
			peer:      netip.AddrPortFrom(netip.AddrFrom4(p4.Addr), uint16(p4.Port)),
			keepAlive: ka != 0,
		})
	}
	return out
}

// TestKeepAlive: control connections have TCP keepalive unless it is
// configured off (a negative keepalive; it used to leave Go's 15 s default
// on); data connections have none while the data idle timeout watches them.
func TestKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keepAlive time.Duration
		control   bool
	}{{"default", 0, true}, {"off", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
				f.slow = "s"
				c.KeepAlive = tc.keepAlive
			})
			h.ftp.files["s"] = []byte("x")
			cl := h.dial()
			dataAP := cl.passive("EPSV")
			d := dialData(t, dataAP)
			defer d.Close()
			cl.cmd(150, "RETR s")
			h.ftp.mu.Lock()
			serverData := netip.MustParseAddrPort(h.ftp.pasvAt)
			h.ftp.mu.Unlock()
			ctrlLocal := netip.MustParseAddrPort(h.addr)
			upstream := netip.MustParseAddrPort(h.ftp.addr())
			clientData := d.LocalAddr().(*net.TCPAddr).AddrPort()
			want := map[string]bool{ // ftpgate's four sockets of the session, by role
				"client control": tc.control, "server control": tc.control, "client data": false, "server data": false,
			}
			seen := map[string]bool{}
			deadline := time.Now().Add(5 * time.Second)
			for len(seen) < len(want) && time.Now().Before(deadline) {
				for _, s := range tcpSockets(t) {
					role := ""
					switch {
					case s.local == ctrlLocal && s.peer == cl.c.LocalAddr().(*net.TCPAddr).AddrPort():
						role = "client control"
					case s.peer == upstream:
						role = "server control"
					case s.local == dataAP && s.peer == clientData:
						role = "client data"
					case s.peer == serverData:
						role = "server data"
					default:
						continue
					}
					seen[role] = true
					if s.keepAlive != want[role] {
						t.Fatalf("ftpgate's %s socket %v→%v: keepalive %v, want %v", role, s.local, s.peer, s.keepAlive, want[role])
					}
				}
				time.Sleep(10 * time.Millisecond) // the server leg may still be connecting
			}
			if len(seen) != len(want) {
				t.Fatalf("found ftpgate's sockets %v, want all of %v", seen, want)
			}
		})
	}
}
