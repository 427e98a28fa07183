package nat

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Pinhole admits exactly one expected data connection: from Peer to Local
// (our address and port). IPv4-mapped IPv6 addresses are unmapped and IPv6
// zones dropped before use; Peer and Local must then be of the same family,
// specified, and the port non-zero. The same holds for Intercept when it
// is valid.
type Pinhole struct {
	Peer  netip.Addr
	Local netip.AddrPort
	// Intercept, when valid, is the address the peer was told to connect
	// to (in transparent mode, the original server's address and the data
	// port). The firewall then also diverts exactly the flow Peer ->
	// Intercept to Local (nothing wider), with a nat rule
	// "dnat ip to ip saddr . ip daddr . tcp dport map @divert4" whose map
	// value is Local's address and port, so the proxy may choose Local
	// freely among its own addresses. The map element gets the same
	// timeout as the pinhole and is removed with it. The pinhole element
	// itself stays keyed by (Peer . Local address . Local port) and admits
	// the diverted connection in the input chain (post-DNAT daddr).
	// Diverting needs Config.Intercept (Open fails without it); the
	// firewall diverts in prerouting and, with Intercept.Output, in
	// output. In firewall mode none Open only checks the field and
	// nothing is diverted: a proxy there must advertise its own address.
	Intercept netip.AddrPort
}

// String returns the pinhole as "198.18.0.2 -> 198.18.1.1:40001" (IPv6:
// "fd00::2 -> [fd00::1]:40001"), followed by " via 198.18.5.5:40001" when
// Intercept is valid.
func (p Pinhole) String() string {
	s := p.Peer.String() + " -> " + p.Local.String()
	if p.Intercept.IsValid() {
		s += " via " + p.Intercept.String()
	}
	return s
}

// diverts reports whether p also diverts Peer -> Intercept to Local.
func (p Pinhole) diverts() bool { return p.Intercept.IsValid() }

// normalize returns the pinhole in the form used as a set element, or an
// error saying why it cannot be one.
func (p Pinhole) normalize() (Pinhole, error) {
	peer := p.Peer.Unmap().WithZone("")
	local := p.Local.Addr().Unmap().WithZone("")
	switch {
	case !peer.IsValid():
		return Pinhole{}, fmt.Errorf("pinhole %s: no peer address", p)
	case !local.IsValid():
		return Pinhole{}, fmt.Errorf("pinhole %s: no local address", p)
	case peer.Is4() != local.Is4():
		return Pinhole{}, fmt.Errorf("pinhole %s: peer and local address are of different families", p)
	case peer.IsUnspecified():
		return Pinhole{}, fmt.Errorf("pinhole %s: peer address is unspecified; a pinhole names one peer", p)
	case local.IsUnspecified():
		return Pinhole{}, fmt.Errorf("pinhole %s: local address is unspecified; a pinhole names one local address", p)
	case p.Local.Port() == 0:
		return Pinhole{}, fmt.Errorf("pinhole %s: local port is 0", p)
	}
	n := Pinhole{Peer: peer, Local: netip.AddrPortFrom(local, p.Local.Port())}
	if !p.Intercept.IsValid() {
		return n, nil
	}
	via := p.Intercept.Addr().Unmap().WithZone("")
	switch {
	case via.Is4() != peer.Is4():
		return Pinhole{}, fmt.Errorf("pinhole %s: peer and intercept address are of different families", p)
	case via.IsUnspecified():
		return Pinhole{}, fmt.Errorf("pinhole %s: intercept address is unspecified; a pinhole diverts one address", p)
	case p.Intercept.Port() == 0:
		return Pinhole{}, fmt.Errorf("pinhole %s: intercept port is 0", p)
	}
	n.Intercept = netip.AddrPortFrom(via, p.Intercept.Port())
	return n, nil
}

// element returns the pinhole as nft prints a set element:
// "198.18.0.2 . 198.18.1.1 . 40001". p must be normalized.
func (p Pinhole) element() string {
	return p.Peer.String() + " . " + p.Local.Addr().String() + " . " + strconv.Itoa(int(p.Local.Port()))
}

// Firewall is the seam the proxy uses. Implementations are safe for
// concurrent use.
type Firewall interface {
	// Open adds the pinhole, or refreshes its timeout if it exists. ttl <= 0
	// means the configured default.
	Open(ctx context.Context, p Pinhole, ttl time.Duration) error
	// Close removes the pinhole; closing one that is absent (expired, never
	// opened) is not an error.
	Close(ctx context.Context, p Pinhole) error
	// Shutdown removes every pinhole and every object this Firewall created,
	// and releases the netlink connection.
	Shutdown(ctx context.Context) error
}

// FirewallMode selects how ftpgate opens pinholes.
type FirewallMode string

const (
	// ModeOwnTable: ftpgate creates and owns table inet ftpgate, with its
	// pinhole sets and an input chain that closes the data port ranges.
	ModeOwnTable FirewallMode = "own-table"
	// ModeExternalSet: the operator declares the pinhole sets in their own
	// table and references them in their own rules; ftpgate only adds and
	// deletes elements.
	ModeExternalSet FirewallMode = "external-set"
	// ModeNone: ftpgate changes no kernel state; the operator's ruleset must
	// admit data connections by other means.
	ModeNone FirewallMode = "none"
)

// DefaultTTL is the pinhole lifetime when Config.TTL is zero, and MaxTTL the
// longest allowed: a pinhole waits for one peer that was just told where to
// connect, so it should live seconds.
const (
	DefaultTTL = 10 * time.Second
	MaxTTL     = time.Hour
)

// PortRange is an inclusive range of TCP ports, Lo <= Hi, both non-zero.
type PortRange struct{ Lo, Hi uint16 }

// ParsePortRange parses "40000-40100" or "40000".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	h, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	r := PortRange{Lo: l, Hi: h}
	if err := r.validate(); err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	return r, nil
}

func parsePort(s string) (uint16, error) {
	// strconv accepts a sign; a port never has one.
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

func (r PortRange) validate() error {
	switch {
	case r.Lo == 0 || r.Hi == 0:
		return errors.New("port 0 is not a port")
	case r.Lo > r.Hi:
		return fmt.Errorf("%d is greater than %d", r.Lo, r.Hi)
	}
	return nil
}

// String returns "40000-40100", or "40000" for a single port.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Contains reports whether port lies in the range.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// Config configures a Firewall. The zero value is valid: own-table mode, 10s
// pinholes, no data port range closed.
type Config struct {
	Mode      FirewallMode  // zero means ModeOwnTable
	TTL       time.Duration // default pinhole lifetime; zero means DefaultTTL; at most MaxTTL
	DataPorts []PortRange   // own-table: closed except pinholes and established flows; ignored otherwise

	// external-set only; an error in any other mode:
	Table  string // operator's table name, e.g. "filter"; required
	Family string // table family: "inet", "ip" (IPv4 only) or "ip6" (IPv6 only); zero means "inet"
	Set4   string // IPv4 element set; zero means DefaultSet4; must be empty with family ip6
	Set6   string // IPv6 element set; zero means DefaultSet6; must be empty with family ip

	// Intercept configures the transparent edge gateway's interception
	// rules (and the policy routing tproxy needs); the zero value installs
	// none, and Pinholes cannot divert.
	Intercept Intercept

	// Flows turns on kernel-forwarded data flows (own-table mode only):
	// the firewall then also implements FlowForwarder.
	Flows FlowConfig

	// NetNS is an optional network namespace fd for the netlink
	// connections (tests); zero means the current namespace. It is only
	// used while New or Cleanup runs, and never closed.
	NetNS int
}

// Validate reports the first thing wrong with c, without touching the kernel.
func (c Config) Validate() error {
	switch c.Mode {
	case "", ModeOwnTable, ModeExternalSet, ModeNone:
	default:
		return fmt.Errorf("firewall mode %q: want %q, %q or %q", c.Mode, ModeOwnTable, ModeExternalSet, ModeNone)
	}
	if c.TTL < 0 || c.TTL > MaxTTL {
		return fmt.Errorf("pinhole ttl %s: want 0 (default %s) up to %s", c.TTL, DefaultTTL, MaxTTL)
	}
	if c.TTL > 0 && c.TTL < time.Millisecond {
		return fmt.Errorf("pinhole ttl %s: the kernel counts milliseconds; want at least 1ms", c.TTL)
	}
	for i, r := range c.DataPorts {
		if err := r.validate(); err != nil {
			return fmt.Errorf("data port range %d (%d-%d): %w", i+1, r.Lo, r.Hi, err)
		}
	}
	if c.NetNS < 0 {
		return fmt.Errorf("netns fd %d: want a file descriptor or 0", c.NetNS)
	}
	if err := c.Intercept.validate(c.mode()); err != nil {
		return err
	}
	if c.Flows.Enabled && c.mode() != ModeOwnTable {
		return fmt.Errorf("kernel-forwarded data flows need firewall mode %s, not %s", ModeOwnTable, c.mode())
	}
	if c.mode() != ModeExternalSet {
		for _, f := range []struct{ name, val string }{
			{"table", c.Table}, {"family", c.Family}, {"set4", c.Set4}, {"set6", c.Set6},
		} {
			if f.val != "" {
				return fmt.Errorf("firewall %s %q: only used with mode %s, not %s", f.name, f.val, ModeExternalSet, c.mode())
			}
		}
		return nil
	}
	if c.Table == "" {
		return fmt.Errorf("firewall mode %s needs the name of the table that holds the sets", ModeExternalSet)
	}
	switch c.Family {
	case "", "inet", "ip", "ip6":
	default:
		return fmt.Errorf("firewall table family %q: want inet, ip or ip6", c.Family)
	}
	for _, f := range []struct{ name, val string }{
		{"table", c.Table}, {"set4", c.Set4}, {"set6", c.Set6},
	} {
		if err := validateName(f.val); err != nil {
			return fmt.Errorf("firewall %s %q: %w", f.name, f.val, err)
		}
	}
	switch {
	case c.Family == "ip" && c.Set6 != "":
		return fmt.Errorf("firewall set6 %q: a table of family ip holds no IPv6 pinholes; use family inet", c.Set6)
	case c.Family == "ip6" && c.Set4 != "":
		return fmt.Errorf("firewall set4 %q: a table of family ip6 holds no IPv4 pinholes; use family inet", c.Set4)
	}
	d := c.withDefaults()
	if d.Set4 == d.Set6 {
		return fmt.Errorf("firewall set4 and set6 are both %q: IPv4 and IPv6 pinholes need one set each", d.Set4)
	}
	return nil
}

// validateName accepts what the kernel accepts as an object name and nft can
// print without quoting trouble; empty is left to the defaults.
func validateName(s string) error {
	if len(s) > 255 {
		return errors.New("longer than 255 bytes")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' || r > 0x7e {
			return fmt.Errorf("character %q is not allowed in a name", r)
		}
	}
	return nil
}

func (c Config) mode() FirewallMode {
	if c.Mode == "" {
		return ModeOwnTable
	}
	return c.Mode
}

// withDefaults returns c with every zero field that has a default filled in.
func (c Config) withDefaults() Config {
	c.Mode = c.mode()
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	c.Intercept = c.Intercept.withDefaults()
	if c.Mode == ModeExternalSet {
		if c.Family == "" {
			c.Family = DefaultExternalFamily
		}
		if c.Set4 == "" && c.Family != "ip6" {
			c.Set4 = DefaultSet4
		}
		if c.Set6 == "" && c.Family != "ip" {
			c.Set6 = DefaultSet6
		}
	}
	return c
}

// lifetime returns the timeout to give an element for a requested ttl.
func lifetime(ttl, def time.Duration) (time.Duration, error) {
	switch {
	case ttl <= 0:
		return def, nil
	case ttl > MaxTTL:
		return 0, fmt.Errorf("ttl %s is longer than %s", ttl, MaxTTL)
	case ttl < time.Millisecond:
		return time.Millisecond, nil
	}
	return ttl, nil
}

// New validates cfg and returns the Firewall for its mode. In own-table and
// external-set mode it talks to the kernel before returning, and its errors
// say what the operator has to fix. log may be nil.
func New(ctx context.Context, cfg Config, log *zap.Logger) (Firewall, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("firewall config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	if cfg.Mode == ModeNone {
		log.Info("firewall mode none: ftpgate changes no kernel state; the ruleset must admit data connections by itself",
			zap.String("mode", string(cfg.Mode)))
		return newNone(cfg), nil
	}
	return newKernel(ctx, cfg, log)
}

// Cleanup removes what an ftpgate with configuration cfg may have left in
// the kernel; the "ftpgate cleanup" subcommand calls it. It is idempotent
// and changes nothing that ftpgate does not own:
//
//   - own-table: deletes table inet ftpgate if it exists. A table that still
//     carries the owner flag belongs to a live process (the kernel deletes it
//     when its owner exits), so Cleanup leaves it and says so.
//   - external-set: removes every element of the configured pinhole sets
//     (they are ftpgate's by contract), after checking that they are pinhole
//     sets; the operator's table, the sets themselves and the rules stay.
//     A missing table or set is nothing to clean. Pinholes of a running
//     ftpgate that uses the same sets are removed too.
//   - none: nothing.
//
// With Config.Intercept it also deletes an ownerless table inet ftpgate in
// external-set mode (where that table holds only interception), and in
// tproxy mode the rules "fwmark <TProxyMark> lookup <RouteTable>" and the
// local default route in RouteTable, of both families: ftpgate's by
// contract. It leaves the routing alone while a live process owns the
// table.
func Cleanup(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("firewall config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("firewall cleanup: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Mode == ModeNone {
		return nil
	}
	return cleanupKernel(ctx, cfg)
}

// shutdownError is returned by Open after Shutdown.
type shutdownError struct{}

func (shutdownError) Error() string { return "firewall is shut down" }

// IsShutdown reports whether err says the Firewall was already shut down.
func IsShutdown(err error) bool { return errors.As(err, new(shutdownError)) }

// IsPermission reports whether err is the kernel refusing a change for
// lack of CAP_NET_ADMIN (or because another process owns the table).
func IsPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }

// noneFirewall checks its arguments and changes nothing.
type noneFirewall struct {
	ttl      time.Duration
	shutdown atomic.Bool
}

func newNone(cfg Config) *noneFirewall { return &noneFirewall{ttl: cfg.TTL} }

func (n *noneFirewall) Open(ctx context.Context, p Pinhole, ttl time.Duration) error {
	np, err := p.normalize()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if _, err := lifetime(ttl, n.ttl); err != nil {
		return fmt.Errorf("open pinhole %s: %w", np, err)
	}
	if n.shutdown.Load() {
		return fmt.Errorf("open pinhole %s: %w", np, shutdownError{})
	}
	return nil
}

func (n *noneFirewall) Close(ctx context.Context, p Pinhole) error {
	if _, err := p.normalize(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

func (n *noneFirewall) Shutdown(ctx context.Context) error {
	n.shutdown.Store(true)
	return nil
}
