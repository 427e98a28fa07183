package nat

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// cleanupKernel implements Cleanup for own-table and external-set mode.
func cleanupKernel(ctx context.Context, cfg Config) error {
	conn, err := openNftables(cfg.NetNS)
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
