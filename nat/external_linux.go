package nat

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

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

// removeOurs deletes, in one batch, every element we added to the
// operator's sets that may not have expired yet.
func (f *kernelFirewall) removeOurs() error {
	now := time.Now()
	var keys4, keys6 [][]byte
	for p, exp := range f.open {
		if now.After(exp.Add(expiryGrace)) {
			continue
		}
		if p.Peer.Is4() {
			keys4 = append(keys4, elementKey(p))
		} else {
			keys6 = append(keys6, elementKey(p))
		}
	}
	batch := func() error {
		for _, b := range []struct {
			set  *nftables.Set
			keys [][]byte
		}{{f.set4, keys4}, {f.set6, keys6}} {
			if len(b.keys) == 0 || b.set == nil {
				continue
			}
			if err := f.queueRemove(b.set, b.keys...); err != nil {
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
