package nat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var _ Firewall = (*kernelFirewall)(nil)

// kernelFirewall opens pinholes as elements of nftables sets, either in the
// table it owns (own-table) or in the operator's sets (external-set), and
// installs the interception rules of Config.Intercept in the table it owns.
type kernelFirewall struct {
	log        *zap.Logger
	cfg        Config
	conn       *nftables.Conn  // lasting: its netlink socket owns the table
	table      *nftables.Table // holds the pinhole sets
	set4, set6 *nftables.Set   // nil when the table's family has no such set

	// own is table inet ftpgate: the same as table in own-table mode; in
	// external-set mode only created for interception, otherwise nil.
	own *nftables.Table
	// divert4 and divert6 are the divert maps, nil without interception.
	divert4, divert6 *nftables.Set
	// flows is the state of kernel-forwarded flows, nil unless Config.Flows.
	flows *flowState
	// routing is tproxy's policy routing, nil in other modes.
	routing *policyRouting

	// lock holds one token; whoever has it may queue messages on conn and
	// flush them (the Conn's message buffer is shared) and use the fields
	// below. A channel, so that waiting for it honours a context.
	lock    chan struct{}
	open    map[Pinhole]time.Time // pinholes we added, and when they expire
	sweepAt int                   // sweep expired entries of open at this size
	destroy bool                  // the kernel knows "destroy element" (Linux 6.3+)
	closed  bool
	batch   mergedBatch // commitMerged's working memory

	// queue holds Opens and Closes waiting to be sent by the next holder
	// of lock (see submit). queueMu guards it, not lock.
	queueMu sync.Mutex
	queue   []*pinholeOp
}

// openNftables opens the lasting nftables netlink connection in netns (0:
// this process's namespace), with its buffers set once (netlinkBuffer).
func openNftables(netns int) (*nftables.Conn, error) {
	return nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(netns), nftables.WithSockOptions(fixedBuffers))
}

// netlinkBuffer is the send and the receive buffer of the nftables netlink
// socket, set when it opens. Without a socket option of ours, google/nftables
// reads both sizes (two getsockopt calls) at every Flush, to grow them for a
// batch that needs more: two of the syscalls of every pinhole's open and of
// its close. ftpgate's largest batches are far below this: the table with
// its chains and rules at start, and at most maxMerged pinhole operations,
// merged into one message per set. The kernel only uses what is queued.
const netlinkBuffer = 4 << 20

// fixedBuffers sets netlinkBuffer on c. SetReadBuffer and SetWriteBuffer try
// SO_RCVBUFFORCE and SO_SNDBUFFORCE first (ftpgate has CAP_NET_ADMIN for
// nftables), so net.core.rmem_max and wmem_max do not cap them; without the
// capability they fall back to the capped options.
func fixedBuffers(c *netlink.Conn) error {
	if err := c.SetReadBuffer(netlinkBuffer); err != nil {
		return fmt.Errorf("netlink receive buffer: %w", err)
	}
	if err := c.SetWriteBuffer(netlinkBuffer); err != nil {
		return fmt.Errorf("netlink send buffer: %w", err)
	}
	return nil
}

func newKernel(ctx context.Context, cfg Config, log *zap.Logger) (Firewall, error) {
	conn, err := openNftables(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("firewall mode %s: open nftables netlink connection: %w", cfg.Mode, explain(err))
	}
	f := &kernelFirewall{
		log:     log,
		cfg:     cfg,
		conn:    conn,
		lock:    make(chan struct{}, 1),
		open:    make(map[Pinhole]time.Time),
		sweepAt: minSweep,
	}
	switch cfg.Mode {
	case ModeOwnTable:
		err = f.createOwnTable(true)
	case ModeExternalSet:
		err = f.useExternalSets()
		if err == nil && cfg.Intercept.Enabled() {
			err = f.createOwnTable(false)
		}
	default:
		err = fmt.Errorf("no kernel firewall for mode %q", cfg.Mode)
	}
	if err == nil {
		err = f.probeDestroy()
	}
	if err == nil && cfg.Intercept.Mode == InterceptTProxy {
		f.routing, err = addPolicyRouting(cfg.NetNS, cfg.Intercept.TProxyMark, cfg.Intercept.RouteTable, log)
	}
	if err == nil && f.flows != nil {
		f.startFlowLog()
	}
	if err != nil {
		// Closing the lasting connection makes the kernel delete the
		// table we may have created.
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("firewall mode %s: %w", cfg.Mode, err)
	}
	fields := []zap.Field{
		zap.String("mode", string(cfg.Mode)),
		zap.String("table", tableFamilyName(f.table.Family)+" "+f.table.Name),
		zap.Duration("ttl", cfg.TTL),
		zap.Bool("destroyElement", f.destroy),
	}
	if cfg.Mode == ModeOwnTable {
		fields = append(fields, rangesField(cfg.DataPorts))
		if len(cfg.DataPorts) == 0 {
			log.Warn("no data port ranges configured: table inet ftpgate drops nothing, so pinholes add no protection")
		}
	} else {
		fields = append(fields, zap.String("set4", cfg.Set4), zap.String("set6", cfg.Set6))
	}
	if ic := cfg.Intercept; ic.Enabled() {
		ports := make([]int, len(ic.Ports))
		for i, p := range ic.Ports {
			ports[i] = int(p)
		}
		fields = append(fields, zap.String("intercept", string(ic.Mode)), zap.Uint16("interceptListenPort", ic.ListenPort),
			zap.Ints("interceptPorts", ports), zap.Strings("interceptInterfaces", ic.Interfaces),
			zap.Stringers("interceptSources", ic.Sources), zap.Stringers("interceptExclude", ic.Exclude),
			zap.Bool("interceptOutput", ic.Output))
	}
	log.Info("firewall ready", fields...)
	return f, nil
}

// createOwnTable creates table inet ftpgate, owned by our netlink socket,
// in one batch: with pinholes, its pinhole sets and input chain, and with
// Config.Intercept the interception maps, sets and chains. A table of that
// name left without an owner (an older ftpgate, or made by hand) is
// replaced in the same batch; one with a live owner is another ftpgate's,
// and an error.
func (f *kernelFirewall) createOwnTable(pinholes bool) error {
	old, err := findTable(f.conn, nftables.TableFamilyINet, OwnTable)
	if err != nil {
		return fmt.Errorf("list tables: %w", explainList(err))
	}
	if old != nil {
		if old.Flags&nftables.TableFlagOwner != 0 {
			return fmt.Errorf("table %s %s is owned by another running process (netlink port id %d, usually its process id), "+
				"most likely another ftpgate in this network namespace: stop it, or give this one firewall mode %s or %s",
				ownTableFamily, OwnTable, old.Owner, ModeExternalSet, ModeNone)
		}
		f.log.Warn("replacing table without owner left by an older ftpgate or made by hand",
			zap.String("table", ownTableFamily+" "+OwnTable))
		f.conn.DelTable(old)
	}

	c := f.conn
	f.own = c.AddTable(&nftables.Table{Name: OwnTable, Family: nftables.TableFamilyINet, Flags: nftables.TableFlagOwner})
	if pinholes {
		if err := f.queuePinholeObjects(); err != nil {
			_ = c.Flush() // discard the batch
			return err
		}
	}
	if pinholes && f.cfg.Flows.Enabled {
		if err := f.queueFlowObjects(); err != nil {
			_ = c.Flush() // discard the batch
			return err
		}
	}
	if f.cfg.Intercept.Enabled() {
		if err := f.queueInterception(); err != nil {
			_ = c.Flush() // discard the batch
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create table %s %s: %w", ownTableFamily, OwnTable, explainSetup(err))
	}
	return nil
}

// queuePinholeObjects queues the pinhole sets and the input chain of
// own-table mode inside f.own.
func (f *kernelFirewall) queuePinholeObjects() error {
	c := f.conn
	f.table = f.own
	f.set4 = &nftables.Set{
		Table:         f.table,
		Name:          ownSet4,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetService),
		Concatenation: true,
		HasTimeout:    true, // without it the kernel silently drops element timeouts
	}
	f.set6 = &nftables.Set{
		Table:         f.table,
		Name:          ownSet6,
		KeyType:       nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIP6Addr, nftables.TypeInetService),
		Concatenation: true,
		HasTimeout:    true,
	}
	for _, s := range []*nftables.Set{f.set4, f.set6} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name:     ownChainInput,
		Table:    f.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &accept,
	})
	for _, exprs := range inputRules(f.set4, f.set6, f.cfg.DataPorts) {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: exprs})
	}
	return nil
}

// probeDestroy finds out whether the kernel deletes absent elements without
// an error (NFT_MSG_DESTROYSETELEM, Linux 6.3+), by destroying an element
// that cannot exist. It also proves that we may change the set.
func (f *kernelFirewall) probeDestroy() error {
	set := f.set4
	if set == nil {
		set = f.set6
	}
	zero := make([]byte, set.KeyType.Bytes)
	err := f.flush(f.conn.SetDestroyElements(set, []nftables.SetElement{{Key: zero}}))
	switch {
	case err == nil:
		f.destroy = true
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		f.destroy = false
		f.log.Info("kernel older than Linux 6.3: closing a pinhole takes a delete that may find it expired")
	default:
		return fmt.Errorf("change set %s: %w", set.Name, explain(err))
	}
	return nil
}

// Shutdown deletes table inet ftpgate (own-table, or external-set with
// interception) and the elements we added that may still exist
// (external-set), then tproxy's policy-routing rules and routes, then
// closes the netlink connection.
// Later Opens fail; later Closes and Shutdowns do nothing. If ctx ends while
// another call holds the connection, Shutdown returns ctx's error and
// removes nothing (the kernel still deletes the owned table when the
// process exits; "ftpgate cleanup" removes tproxy's policy routing).
func (f *kernelFirewall) Shutdown(ctx context.Context) error {
	if err := f.acquire(ctx); err != nil {
		return fmt.Errorf("firewall shutdown: %w", err)
	}
	defer f.release()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.flows != nil && f.flows.reader != nil {
		if err := f.flows.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the flow log: %w", err))
		}
	}
	if f.flows != nil && f.flows.ct != nil {
		if err := f.flows.ct.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the conntrack connection: %w", err))
		}
	}
	if f.cfg.Mode == ModeExternalSet {
		if err := f.removeOurs(); err != nil {
			errs = append(errs, err)
		}
	}
	if f.own != nil {
		// In own-table mode the pinhole sets go with it.
		f.conn.DelTable(f.own)
		if err := f.conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("delete table %s %s: %w", ownTableFamily, OwnTable, explain(err)))
		}
	}
	if f.routing != nil {
		// After the table: no packet is marked for a route that is gone.
		if err := f.routing.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	n := len(f.open)
	clear(f.open)
	if err := f.conn.CloseLasting(); err != nil {
		errs = append(errs, fmt.Errorf("close nftables netlink connection: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall shutdown: %w", err)
	}
	f.log.Info("firewall shut down", zap.String("mode", string(f.cfg.Mode)), zap.Int("pinholesTracked", n))
	return nil
}

// flush sends what is queued on conn as one batch. If queueing failed
// (queueErr), it sends nothing new and returns queueErr: the library's
// failed queue calls leave no message behind, or make Flush fail.
func (f *kernelFirewall) flush(queueErr error) error {
	if queueErr != nil {
		_ = f.conn.Flush() // resets the Conn's batch
		return queueErr
	}
	return f.conn.Flush()
}

func (f *kernelFirewall) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case f.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *kernelFirewall) release() { <-f.lock }

// findTable returns the table of that family and name, or nil.
func findTable(c *nftables.Conn, fam nftables.TableFamily, name string) (*nftables.Table, error) {
	tables, err := c.ListTablesOfFamily(fam)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if t.Name == name && t.Family == fam {
			return t, nil
		}
	}
	return nil, nil
}

func tableFamily(s string) nftables.TableFamily {
	switch s {
	case "ip":
		return nftables.TableFamilyIPv4
	case "ip6":
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyINet
}

func tableFamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprintf("family-%d", f)
}

// rangesField logs the data port ranges the own table keeps closed.
func rangesField(ports []PortRange) zap.Field {
	out := make([]string, len(ports))
	for i, r := range ports {
		out[i] = r.String()
	}
	return zap.Strings("closedDataPorts", out)
}
