package nat

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
)

// What a running firewall offers beyond pinholes: a health check over the
// lasting connection, and a new data port range on reload.

// Ping reports whether the netlink connection to nftables answers and the
// table holding the pinholes is still there.
func (f *kernelFirewall) Ping(ctx context.Context) error {
	if err := f.acquire(ctx); err != nil {
		return err
	}
	defer f.release()
	if f.closed {
		return errors.New("firewall shut down")
	}
	t, err := findTable(f.conn, f.table.Family, f.table.Name)
	if err != nil {
		return fmt.Errorf("list tables: %w", explain(err))
	}
	if t == nil {
		return fmt.Errorf("table %s %s is gone", tableFamilyName(f.table.Family), f.table.Name)
	}
	return nil
}

// SetDataPorts makes ports the ranges the own table keeps closed but for
// pinholes: the input chain is rewritten in one transaction, so no packet
// meets a half-written chain. In the other modes the operator's ruleset
// decides and nothing changes.
func (f *kernelFirewall) SetDataPorts(ctx context.Context, ports []PortRange) error {
	if err := f.acquire(ctx); err != nil {
		return err
	}
	defer f.release()
	if f.closed {
		return errors.New("firewall shut down")
	}
	if f.cfg.Mode != ModeOwnTable {
		return nil
	}
	chain := &nftables.Chain{Name: ownChainInput, Table: f.table}
	f.conn.FlushChain(chain)
	for _, exprs := range inputRules(f.set4, f.set6, ports) {
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: exprs})
	}
	if err := f.flush(nil); err != nil {
		return fmt.Errorf("rewrite chain %s: %w", ownChainInput, explain(err))
	}
	f.cfg.DataPorts = append([]PortRange(nil), ports...)
	f.log.Info("data ports changed", rangesField(ports))
	return nil
}
