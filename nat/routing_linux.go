package nat

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// policyRouting is what tproxy needs besides its nftables rules, for IPv4
// and IPv6:
//
//	ip rule add fwmark <TProxyMark> lookup <RouteTable>
//	ip route add local default dev lo table <RouteTable>
//
// A rule with ftpgate's mark and table, and the local default route in
// ftpgate's table, are ftpgate's by contract: New adds them unless they
// exist, Shutdown and Cleanup remove them.
type policyRouting struct {
	h     *netlink.Handle // rtnetlink, in the firewall's namespace
	log   *zap.Logger
	mark  uint32
	table int
	fams  []int // families set up (IPv6 is skipped where the kernel has none)
}

// routingHandle opens an rtnetlink handle in the namespace netnsFD, or
// the current one if it is zero.
func routingHandle(netnsFD int) (*netlink.Handle, error) {
	if netnsFD == 0 {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(netns.NsHandle(netnsFD), unix.NETLINK_ROUTE)
}

// addPolicyRouting adds the rule and route of both families, tolerating
// ones that exist.
func addPolicyRouting(netnsFD int, mark uint32, table int, log *zap.Logger) (*policyRouting, error) {
	h, err := routingHandle(netnsFD)
	if err != nil {
		return nil, fmt.Errorf("tproxy policy routing: open rtnetlink: %w", explainRouting(err))
	}
	p := &policyRouting{h: h, log: log, mark: mark, table: table}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		err := p.add(fam)
		if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
			log.Warn("IPv6 is disabled in this kernel: tproxy intercepts IPv4 only")
			continue
		}
		if err != nil {
			_ = p.remove()
			return nil, err
		}
		p.fams = append(p.fams, fam)
	}
	return p, nil
}

func (p *policyRouting) add(fam int) error {
	existing, err := p.h.RuleListFiltered(fam, &netlink.Rule{Table: p.table, Mark: p.mark},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_MARK)
	if err != nil {
		return fmt.Errorf("tproxy policy routing: list %s rules: %w", famName(fam), explainRouting(err))
	}
	if len(existing) == 0 {
		if err := p.h.RuleAdd(p.rule(fam)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("tproxy policy routing: add %s rule fwmark %#x lookup %d: %w",
				famName(fam), p.mark, p.table, explainRouting(err))
		}
	} else {
		p.log.Info("tproxy policy rule exists already; ftpgate uses it and removes it at exit",
			zap.String("family", famName(fam)), zap.Uint32("mark", p.mark), zap.Int("table", p.table))
	}
	route, err := p.route(fam)
	if err != nil {
		return err
	}
	if err := p.h.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("tproxy policy routing: add %s route local default dev lo table %d: %w",
			famName(fam), p.table, explainRouting(err))
	}
	return nil
}

// remove deletes the rules and routes of the families set up and closes
// the handle. Absent ones are no error.
func (p *policyRouting) remove() error {
	defer p.h.Close()
	var errs []error
	for _, fam := range p.fams {
		if err := deleteRules(p.h, fam, p.mark, p.table); err != nil {
			errs = append(errs, err)
		}
		if err := deleteRoute(p.h, fam, p.table); err != nil {
			errs = append(errs, err)
		}
	}
	p.fams = nil
	return errors.Join(errs...)
}

func (p *policyRouting) rule(fam int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = fam
	r.Mark = p.mark
	r.Table = p.table
	return r
}

func (p *policyRouting) route(fam int) (*netlink.Route, error) {
	return localRoute(p.h, fam, p.table)
}

// localRoute is "local default dev lo table <table>" of one family.
func localRoute(h *netlink.Handle, fam, table int) (*netlink.Route, error) {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("tproxy policy routing: find interface lo: %w", err)
	}
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if fam == netlink.FAMILY_V6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       dst,
		Table:     table,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Family:    fam,
	}, nil
}

// deleteRules deletes every rule "fwmark mark lookup table" of fam.
func deleteRules(h *netlink.Handle, fam int, mark uint32, table int) error {
	// The kernel deletes the first match per request; a few duplicates
	// may have piled up by hand. Bounded.
	for range 64 {
		r := netlink.NewRule()
		r.Family, r.Mark, r.Table = fam, mark, table
		err := h.RuleDel(r)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH), errors.Is(err, unix.EAFNOSUPPORT):
			return nil
		case err != nil:
			return fmt.Errorf("tproxy policy routing: delete %s rule fwmark %#x lookup %d: %w",
				famName(fam), mark, table, explainRouting(err))
		}
	}
	return nil
}

// deleteRoute deletes the local default route of fam in table.
func deleteRoute(h *netlink.Handle, fam, table int) error {
	route, err := localRoute(h, fam, table)
	if err != nil {
		return err
	}
	err = h.RouteDel(route)
	switch {
	case err == nil, errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EAFNOSUPPORT):
		return nil
	}
	return fmt.Errorf("tproxy policy routing: delete %s route local default table %d: %w", famName(fam), table, explainRouting(err))
}

// removePolicyRouting is Cleanup's part for tproxy: it deletes ftpgate's
// rules and routes of both families.
func removePolicyRouting(netnsFD int, mark uint32, table int) error {
	h, err := routingHandle(netnsFD)
	if err != nil {
		return fmt.Errorf("firewall cleanup: tproxy policy routing: open rtnetlink: %w", explainRouting(err))
	}
	defer h.Close()
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		errs = append(errs, deleteRules(h, fam, mark, table), deleteRoute(h, fam, table))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall cleanup: %w", err)
	}
	return nil
}

func famName(fam int) string {
	if fam == netlink.FAMILY_V6 {
		return "IPv6"
	}
	return "IPv4"
}

// explainRouting adds what to do to an rtnetlink error.
func explainRouting(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return &hintError{err: err, hint: "ftpgate needs CAP_NET_ADMIN to add tproxy's policy routing: run it as root " +
			"or grant the capability, or use intercept mode redirect"}
	}
	return err
}
