package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
	proxyproto "github.com/pires/go-proxyproto"
)

// ProxyProtocol configures the PROXY protocol (v1 and v2) of load
// balancers: the real client address then drives policy, logs and the
// data-connection peer check.
type ProxyProtocol struct {
	// Trusted are the networks whose connections carry a PROXY header (and
	// must). Headers from anywhere else are refused.
	Trusted []netip.Prefix
	// Control expects headers on control connections from Trusted.
	Control bool
	// Data expects headers on data connections from Trusted; the header's
	// source then selects the session.
	Data bool
	// SendUpstream, 1 or 2, sends a header of that version with the real
	// client address to the server; 0 sends none.
	SendUpstream int
}

// Enabled reports whether any PROXY protocol handling is on.
func (pp ProxyProtocol) Enabled() bool { return pp.Control || pp.Data || pp.SendUpstream != 0 }

// Validate reports whether the settings make sense.
func (pp ProxyProtocol) Validate() error {
	if (pp.Control || pp.Data) && len(pp.Trusted) == 0 {
		return errors.New("PROXY protocol: no trusted networks; headers are accepted only from configured load balancers")
	}
	if pp.SendUpstream != 0 && pp.SendUpstream != 1 && pp.SendUpstream != 2 {
		return fmt.Errorf("PROXY protocol: version %d to send upstream: want 1 or 2", pp.SendUpstream)
	}
	for _, p := range pp.Trusted {
		if !p.IsValid() {
			return fmt.Errorf("PROXY protocol: trusted network %v is not valid", p)
		}
	}
	return nil
}

func (pp ProxyProtocol) trusted(a netip.Addr) bool { return inPrefixes(pp.Trusted, a) }

// maxV1Header is the longest v1 header, CRLF included (the spec's limit).
const maxV1Header = 107

// headerTimeout bounds the wait for a PROXY header.
const headerTimeout = 5 * time.Second

// readProxyHeader reads one PROXY header from c, and not one byte more, so
// that c stays a plain *net.TCPConn (and data relays keep splice). It
// returns the source the header names; a LOCAL header (a balancer's health
// check) names the connection's own peer.
func readProxyHeader(c *net.TCPConn) (netip.AddrPort, error) {
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	defer c.SetReadDeadline(time.Time{})
	raw, err := readHeaderBytes(c)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("PROXY header: %w", err)
	}
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("PROXY header: %w", err)
	}
	if h.Command.IsLocal() {
		return addrPortOf(c.RemoteAddr()), nil
	}
	src, _, ok := h.TCPAddrs()
	if !ok {
		return netip.AddrPort{}, errors.New("PROXY header: not a TCP connection")
	}
	ap := src.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// readHeaderBytes frames a v1 header (to CRLF, byte by byte: it is short and
// comes once per connection) or a v2 header (16 bytes, then the length they
// announce).
func readHeaderBytes(r io.Reader) ([]byte, error) {
	first := make([]byte, 1)
	if _, err := io.ReadFull(r, first); err != nil {
		return nil, err
	}
	switch first[0] {
	case 'P':
		buf := first
		for len(buf) < maxV1Header {
			b := make([]byte, 1)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, err
			}
			buf = append(buf, b[0])
			if bytes.HasSuffix(buf, []byte("\r\n")) {
				return buf, nil
			}
		}
		return nil, errors.New("v1 header too long")
	case proxyproto.SIGV2[0]:
		buf := make([]byte, 16)
		buf[0] = first[0]
		if _, err := io.ReadFull(r, buf[1:]); err != nil {
			return nil, err
		}
		if !bytes.Equal(buf[:12], proxyproto.SIGV2) {
			return nil, errors.New("not a v2 signature")
		}
		n := int(buf[14])<<8 | int(buf[15])
		rest := make([]byte, n)
		if _, err := io.ReadFull(r, rest); err != nil {
			return nil, err
		}
		return append(buf, rest...), nil
	}
	return nil, errors.New("no PROXY header")
}

// writeProxyHeader sends a header naming client (connected to local) to w.
func writeProxyHeader(w io.Writer, version int, client, local netip.AddrPort) error {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(local))
	_, err := h.WriteTo(w)
	return err
}

// looksLikeProxyHeader reports whether a client's first command line is
// the start of a PROXY header: "PROXY ..." (v1), or the empty line that
// begins the v2 signature.
func looksLikeProxyHeader(ev cmdEvent) bool {
	if ev.err == nil {
		return ev.cmd.Verb == "PROXY"
	}
	var pe *rewrite.ProtocolError
	return errors.As(ev.err, &pe) && pe.Msg == "empty command line"
}
