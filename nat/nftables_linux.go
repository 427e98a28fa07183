package nat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var _ Firewall = (*kernelFirewall)(nil)

const (
	// expiryGrace is how long after its timeout a pinhole we added may still
	// be in the kernel (our clock starts before the kernel's does).
	expiryGrace = time.Second
	// minSweep is the size of the pinhole bookkeeping map below which
	// expired entries are not swept.
	minSweep = 1024
)

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
}

func newKernel(ctx context.Context, cfg Config, log *zap.Logger) (Firewall, error) {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS))
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
		ports := make([]string, len(cfg.DataPorts))
		for i, r := range cfg.DataPorts {
			ports[i] = r.String()
		}
		fields = append(fields, zap.Strings("closedDataPorts", ports))
		if len(ports) == 0 {
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

// inputRules returns the rules of the input chain, as nft would print them:
//
//	ct state established,related accept
//	meta l4proto tcp ip saddr . ip daddr . tcp dport @pinholes4 accept
//	meta l4proto tcp ip6 saddr . ip6 daddr . tcp dport @pinholes6 accept
//	tcp dport 40000-40100 counter drop   (one per data port range)
//
// The counters show how many packets to data ports found no pinhole.
func inputRules(set4, set6 *nftables.Set, ports []PortRange) [][]expr.Any {
	rules := [][]expr.Any{{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:            binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}, {
		// Loopback is this host talking to itself: a server beside ftpgate
		// (a sidecar's upstream on 127.0.0.1) may use ports in our ranges.
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
	// Registers as nft uses them: a 16-byte register is 1-4, a 4-byte one
	// 8-23; an IPv4 key is 4+4+4 bytes from register 8 (= 1) on, an IPv6
	// key 16+16+4 bytes from register 1 on.
	rules = append(rules, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set4.Name, SetID: set4.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Payload{DestRegister: 3, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set6.Name, SetID: set6.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	})
	for _, r := range ports {
		match := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		}
		if r.Lo == r.Hi {
			match = append(match, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Lo)})
		} else {
			match = append(match,
				&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Lo)},
				&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.Hi)})
		}
		rules = append(rules, append(match, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}))
	}
	return rules
}

// useExternalSets finds the operator's table and sets and checks that
// they can hold pinholes, reporting every problem at once.
func (f *kernelFirewall) useExternalSets() error {
	fam := tableFamily(f.cfg.Family)
	t, err := findTable(f.conn, fam, f.cfg.Table)
	if err != nil {
		return fmt.Errorf("list tables: %w", explainList(err))
	}
	if t == nil {
		return fmt.Errorf("table %s %s does not exist: declare it with the pinhole sets before starting ftpgate "+
			"(examples in deploy/firewall/), or use firewall mode %s", f.cfg.Family, f.cfg.Table, ModeOwnTable)
	}
	if t.Flags&nftables.TableFlagOwner != 0 {
		return fmt.Errorf("table %s %s is owned by another process (netlink port id %d, usually its process id), "+
			"so ftpgate cannot add elements to it: declare the pinhole sets in a table without the owner flag",
			f.cfg.Family, f.cfg.Table, t.Owner)
	}
	f.table = t
	var errs []error
	for _, want := range f.wantSets() {
		s, err := f.conn.GetSetByName(t, want.name)
		if err != nil {
			errs = append(errs, setLookupError(f.cfg, want, err))
			continue
		}
		if problems := setProblems(s, want.keyType); len(problems) > 0 {
			errs = append(errs, fmt.Errorf("set %s %s %s %s: declare it as %s",
				f.cfg.Family, f.cfg.Table, want.name, strings.Join(problems, ", and "), setDecl(want)))
			continue
		}
		if want.v4 {
			f.set4 = s
		} else {
			f.set6 = s
		}
	}
	return errors.Join(errs...)
}

// wantedSet is a pinhole set an external-set configuration refers to.
type wantedSet struct {
	name    string
	keyType string
	v4      bool
}

func (f *kernelFirewall) wantSets() []wantedSet { return wantSets(f.cfg) }

func wantSets(cfg Config) []wantedSet {
	var ws []wantedSet
	if cfg.Set4 != "" {
		ws = append(ws, wantedSet{name: cfg.Set4, keyType: keyType4, v4: true})
	}
	if cfg.Set6 != "" {
		ws = append(ws, wantedSet{name: cfg.Set6, keyType: keyType6})
	}
	return ws
}

func setDecl(w wantedSet) string {
	return fmt.Sprintf("%q", "set "+w.name+" { type "+w.keyType+"; flags timeout; }")
}

func setLookupError(cfg Config, want wantedSet, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("set %s %s %s does not exist: declare it in that table as %s and reference it in a rule "+
			"that accepts matching packets (examples in deploy/firewall/)", cfg.Family, cfg.Table, want.name, setDecl(want))
	}
	return fmt.Errorf("read set %s %s %s (want %s): %w", cfg.Family, cfg.Table, want.name, setDecl(want), explain(err))
}

// setProblems lists what keeps s from holding pinholes of keyType.
func setProblems(s *nftables.Set, keyType string) []string {
	var p []string
	if s.IsMap {
		p = append(p, "is a map, not a set")
	}
	if s.KeyType.Name != keyType || s.KeyType.Bytes != keyLen(keyType) {
		p = append(p, fmt.Sprintf("has key type %q (%d bytes), not %q", s.KeyType.Name, s.KeyType.Bytes, keyType))
	}
	if !s.HasTimeout {
		p = append(p, `has no "flags timeout", so the kernel would keep every pinhole forever`)
	}
	if s.Constant {
		p = append(p, `has "flags constant", so no element can be added`)
	}
	if s.Interval {
		p = append(p, `has "flags interval"; pinholes are exact elements`)
	}
	return p
}

func keyLen(keyType string) uint32 {
	if keyType == keyType4 {
		return 4 + 4 + 4 // the port is padded to 4 bytes
	}
	return 16 + 16 + 4
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

// Open adds the pinhole with a timeout, or refreshes one we added: one
// netlink batch. A refresh deletes and re-adds the element in that batch,
// because kernels before 6.10 ignore a new timeout on an existing element.
func (f *kernelFirewall) Open(ctx context.Context, p Pinhole, ttl time.Duration) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	life, err := lifetime(ttl, f.cfg.TTL)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	els, err := f.elementsFor(n)
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	if err := f.acquire(ctx); err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, err)
	}
	defer f.release()
	if f.closed {
		return fmt.Errorf("open pinhole %s: %w", n, shutdownError{})
	}

	now := time.Now()
	exp, known := f.open[n]
	refresh := known && now.Before(exp.Add(expiryGrace))
	if refresh {
		for _, e := range els {
			if err == nil {
				err = f.queueRemove(e.set, e.key)
			}
		}
	}
	add := func(err error) error {
		for _, e := range els {
			if err == nil {
				err = f.conn.SetAddElements(e.set, []nftables.SetElement{{Key: e.key, Val: e.val, Timeout: life}})
			}
		}
		return f.flush(err)
	}
	err = add(err)
	if err != nil && refresh && !f.destroy && errors.Is(err, unix.ENOENT) {
		// It expired between our look and the kernel's delete. Adding
		// an element that exists is no error.
		err = add(nil)
	}
	if err != nil {
		return fmt.Errorf("open pinhole %s: %w", n, f.explainChange(els[0].set, err))
	}
	f.open[n] = now.Add(life)
	f.sweep(now)
	if ce := f.log.Check(zap.DebugLevel, "pinhole open"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n), zap.Duration("ttl", life), zap.Bool("refresh", refresh))
	}
	return nil
}

// Close deletes the pinhole's element: one netlink batch. After Shutdown
// there is nothing left to close.
func (f *kernelFirewall) Close(ctx context.Context, p Pinhole) error {
	n, err := p.normalize()
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	els, err := f.elementsFor(n)
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	if err := f.acquire(ctx); err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, err)
	}
	defer f.release()
	if f.closed {
		return nil
	}
	for _, e := range els {
		if err == nil {
			err = f.queueRemove(e.set, e.key)
		}
	}
	err = f.flush(err)
	if !f.destroy && errors.Is(err, unix.ENOENT) {
		// Expired or never opened. The batch failed as a whole, so with
		// more than one element delete them one at a time.
		err = nil
		for i := 0; len(els) > 1 && i < len(els); i++ {
			if e := f.flush(f.queueRemove(els[i].set, els[i].key)); e != nil && !errors.Is(e, unix.ENOENT) {
				err = e
			}
		}
	}
	if err != nil {
		return fmt.Errorf("close pinhole %s: %w", n, f.explainChange(els[0].set, err))
	}
	delete(f.open, n)
	if ce := f.log.Check(zap.DebugLevel, "pinhole closed"); ce != nil {
		ce.Write(zap.Stringer("pinhole", n))
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
	switch f.cfg.Mode {
	case ModeOwnTable:
		f.conn.DelTable(f.table)
		if err := f.conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("delete table %s %s: %w", ownTableFamily, OwnTable, explain(err)))
		}
	case ModeExternalSet:
		if err := f.removeOurs(); err != nil {
			errs = append(errs, err)
		}
		if f.own != nil {
			f.conn.DelTable(f.own)
			if err := f.conn.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("delete table %s %s: %w", ownTableFamily, OwnTable, explain(err)))
			}
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

// removeOurs deletes, in one batch, every element we added to the
// operator's sets that may not have expired yet.
func (f *kernelFirewall) removeOurs() error {
	now := time.Now()
	var keys4, keys6 []nftables.SetElement
	for p, exp := range f.open {
		if now.After(exp.Add(expiryGrace)) {
			continue
		}
		if p.Peer.Is4() {
			keys4 = append(keys4, nftables.SetElement{Key: elementKey(p)})
		} else {
			keys6 = append(keys6, nftables.SetElement{Key: elementKey(p)})
		}
	}
	batch := func() error {
		for _, b := range []struct {
			set  *nftables.Set
			keys []nftables.SetElement
		}{{f.set4, keys4}, {f.set6, keys6}} {
			if len(b.keys) == 0 || b.set == nil {
				continue
			}
			var err error
			if f.destroy {
				err = f.conn.SetDestroyElements(b.set, b.keys)
			} else {
				err = f.conn.SetDeleteElements(b.set, b.keys)
			}
			if err != nil {
				return f.flush(err)
			}
		}
		return f.conn.Flush()
	}
	err := batch()
	if err != nil && !f.destroy && errors.Is(err, unix.ENOENT) {
		// Some expired meanwhile; delete one at a time.
		err = nil
		for p, exp := range f.open {
			if now.After(exp.Add(expiryGrace)) {
				continue
			}
			set, _ := f.setFor(p)
			e := f.flush(f.queueRemove(set, elementKey(p)))
			if e != nil && !errors.Is(e, unix.ENOENT) {
				err = errors.Join(err, fmt.Errorf("close pinhole %s: %w", p, explain(e)))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("remove pinholes from table %s %s: %w", f.cfg.Family, f.cfg.Table, explain(err))
	}
	return nil
}

// queueRemove queues the deletion of one element: destroy where the kernel
// has it (absent is fine), delete otherwise (absent is ENOENT).
func (f *kernelFirewall) queueRemove(set *nftables.Set, key []byte) error {
	e := []nftables.SetElement{{Key: key}}
	if f.destroy {
		return f.conn.SetDestroyElements(set, e)
	}
	return f.conn.SetDeleteElements(set, e)
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

// sweep forgets pinholes that have certainly expired in the kernel, once
// the map has doubled since the last sweep, so it stays bounded.
func (f *kernelFirewall) sweep(now time.Time) {
	if len(f.open) < f.sweepAt {
		return
	}
	for p, exp := range f.open {
		if now.After(exp.Add(expiryGrace)) {
			delete(f.open, p)
		}
	}
	f.sweepAt = max(minSweep, 2*len(f.open))
}

// element is one set or map element that a pinhole consists of.
type element struct {
	set      *nftables.Set
	key, val []byte
}

// elementsFor returns the elements of a normalized pinhole: its pinhole
// set element first, then, if it diverts, its divert map element.
func (f *kernelFirewall) elementsFor(p Pinhole) ([]element, error) {
	set, err := f.setFor(p)
	if err != nil {
		return nil, err
	}
	els := []element{{set: set, key: elementKey(p)}}
	if p.diverts() {
		m, err := f.divertFor(p)
		if err != nil {
			return nil, err
		}
		key, val := divertElement(p)
		els = append(els, element{set: m, key: key, val: val})
	}
	return els, nil
}

func (f *kernelFirewall) setFor(p Pinhole) (*nftables.Set, error) {
	if p.Peer.Is4() {
		if f.set4 == nil {
			return nil, fmt.Errorf("no IPv4 pinhole set: table %s %s is of family %s", f.cfg.Family, f.cfg.Table, f.cfg.Family)
		}
		return f.set4, nil
	}
	if f.set6 == nil {
		return nil, fmt.Errorf("no IPv6 pinhole set: table %s %s is of family %s", f.cfg.Family, f.cfg.Table, f.cfg.Family)
	}
	return f.set6, nil
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

// explainChange adds what to do to an error from changing set's elements.
func (f *kernelFirewall) explainChange(set *nftables.Set, err error) error {
	if f.cfg.Mode == ModeExternalSet && errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w (set %s %s %s is gone: was the ruleset reloaded without it? restore it, then ftpgate can continue)",
			err, f.cfg.Family, f.cfg.Table, set.Name)
	}
	return explain(err)
}

// elementKey encodes a normalized pinhole as a set key: peer address, local
// address, local port in network byte order padded to 4 bytes.
func elementKey(p Pinhole) []byte {
	peer, local := p.Peer.AsSlice(), p.Local.Addr().AsSlice()
	key := make([]byte, 0, len(peer)+len(local)+4)
	key = append(key, peer...)
	key = append(key, local...)
	port := p.Local.Port()
	return append(key, byte(port>>8), byte(port), 0, 0)
}

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

// cleanupKernel implements Cleanup for own-table and external-set mode.
func cleanupKernel(ctx context.Context, cfg Config) error {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		return fmt.Errorf("firewall cleanup: open nftables netlink connection: %w", explain(err))
	}
	defer func() { _ = conn.CloseLasting() }()
	switch {
	case cfg.Mode == ModeOwnTable:
		err = cleanupOwnTable(conn)
	case cfg.Intercept.Enabled():
		err = errors.Join(cleanupExternalSets(conn, cfg), cleanupOwnTable(conn))
	default:
		err = cleanupExternalSets(conn, cfg)
	}
	if err != nil {
		// A live owner still uses its policy routing, if any.
		return err
	}
	if cfg.Intercept.Mode == InterceptTProxy {
		return removePolicyRouting(cfg.NetNS, cfg.Intercept.TProxyMark, cfg.Intercept.RouteTable)
	}
	return nil
}

func cleanupOwnTable(conn *nftables.Conn) error {
	t, err := findTable(conn, nftables.TableFamilyINet, OwnTable)
	if err != nil {
		return fmt.Errorf("firewall cleanup: list tables: %w", explainList(err))
	}
	if t == nil {
		return nil
	}
	if t.Flags&nftables.TableFlagOwner != 0 {
		return fmt.Errorf("firewall cleanup: table %s %s belongs to a running process (netlink port id %d, usually its process id), "+
			"most likely ftpgate: stop it, and the kernel deletes the table as it exits", ownTableFamily, OwnTable, t.Owner)
	}
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("firewall cleanup: delete table %s %s: %w", ownTableFamily, OwnTable, explain(err))
	}
	return nil
}

func cleanupExternalSets(conn *nftables.Conn, cfg Config) error {
	t, err := findTable(conn, tableFamily(cfg.Family), cfg.Table)
	if err != nil {
		return fmt.Errorf("firewall cleanup: list tables: %w", explainList(err))
	}
	if t == nil {
		return nil
	}
	var errs []error
	flushed := 0
	for _, want := range wantSets(cfg) {
		s, err := conn.GetSetByName(t, want.name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			errs = append(errs, setLookupError(cfg, want, err))
			continue
		}
		if problems := setProblems(s, want.keyType); len(problems) > 0 {
			errs = append(errs, fmt.Errorf("not emptying set %s %s %s, which is no pinhole set: it %s",
				cfg.Family, cfg.Table, want.name, strings.Join(problems, ", and ")))
			continue
		}
		conn.FlushSet(s)
		flushed++
	}
	if flushed > 0 {
		if err := conn.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("empty pinhole sets: %w", explain(err)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firewall cleanup: %w", err)
	}
	return nil
}
