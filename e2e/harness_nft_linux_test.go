//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// The objects of ftpgate's own table, as package nat names them.
const (
	ownTable     = "ftpgate" // family inet
	ownPinholes4 = "pinholes4"
	ownPinholes6 = "pinholes6"
	ownInput     = "input"
	ownDivert4   = "divert4" // transparent modes: (peer . server . port) -> ftpgate's address . port
	ownDivert6   = "divert6"
)

// nftElement is one element of a set or map as `nft -j` prints it.
type nftElement struct {
	Set     string   // the set's or map's name
	Key     []string // the parts of a concatenated key, e.g. ["198.18.0.2", "198.18.0.1", "40012"]
	Value   []string // a map element's value, in parts
	Timeout float64  // seconds; 0: the element has none
	Expires float64  // seconds left
}

func (e nftElement) String() string {
	s := e.Set + ": " + strings.Join(e.Key, " . ")
	if e.Timeout > 0 {
		s += fmt.Sprintf(" timeout %gs expires %gs", e.Timeout, e.Expires)
	}
	if e.Value != nil {
		s += " : " + strings.Join(e.Value, " . ")
	}
	return s
}

// is reports whether e is an element of set with exactly key and value (nil: a set element).
func (e nftElement) is(set string, key, value []string) bool {
	return e.Set == set && slices.Equal(e.Key, key) && slices.Equal(e.Value, value)
}

// pinholeKey is a pinhole set key as nft prints it: peer . local address . local port.
func pinholeKey(peer, local string, port int) []string {
	return []string{peer, local, fmt.Sprint(port)}
}

// pinholeSets are the two sets, IPv4 and IPv6, that hold ftpgate's pinholes: its own table's,
// or those of an operator's table that --firewall external-set fills. Family inet.
type pinholeSets struct{ Table, Set4, Set6 string }

// ownPinholeSets are the pinhole sets of ftpgate's own table.
var ownPinholeSets = pinholeSets{ownTable, ownPinholes4, ownPinholes6}

// forFamily returns the set of IPv6 pinholes if v6, else the set of IPv4 pinholes.
func (s pinholeSets) forFamily(v6 bool) string {
	if v6 {
		return s.Set6
	}
	return s.Set4
}

// readPinholes reads ftpgate's pinholes back from the kernel: the elements of both of sets'
// sets in namespace ns. It fails the test if nft cannot list them.
func readPinholes(ctx context.Context, t testing.TB, ns string, sets pinholeSets) []nftElement {
	t.Helper()
	els, err := nftSetElements(ctx, ns, "inet", sets.Table, sets.Set4, sets.Set6)
	if err != nil {
		t.Fatalf("read back the pinholes: %v", err)
	}
	return els
}

// isOnly reports whether els is exactly one set element: of set, with key.
func isOnly(els []nftElement, set string, key []string) bool {
	return len(els) == 1 && els[0].is(set, key, nil)
}

// nftJSON runs `nft -j ARGS` in namespace ns and returns the objects of its "nftables" list
// without the metainfo object.
func nftJSON(ctx context.Context, ns string, args ...string) ([]map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, errb, err := runIn(ctx, ns, "nft", append([]string{"-j"}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("nft -j %s in %s: %w: %s", strings.Join(args, " "), ns, err, bytes.TrimSpace(errb))
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j %s in %s: %w", strings.Join(args, " "), ns, err)
	}
	objs := doc.Nftables[:0]
	for _, o := range doc.Nftables {
		if _, meta := o["metainfo"]; !meta {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

// nftTables returns the tables in ns as "family name", sorted. (Text, not JSON: nft 1.0.6's
// JSON output garbles the owner flag of table inet ftpgate.)
func nftTables(ctx context.Context, ns string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, errb, err := runIn(ctx, ns, "nft", "list", "tables")
	if err != nil {
		return nil, fmt.Errorf("nft list tables in %s: %w: %s", ns, err, bytes.TrimSpace(errb))
	}
	var tables []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	sort.Strings(tables)
	return tables, nil
}

// hasTable reports whether ns has the table "family name".
func hasTable(ctx context.Context, ns, familyName string) (bool, error) {
	tables, err := nftTables(ctx, ns)
	return slices.Contains(tables, familyName), err
}

// nftSetElements returns the elements of the named sets of one table in ns.
func nftSetElements(ctx context.Context, ns, family, table string, sets ...string) ([]nftElement, error) {
	return nftElements(ctx, ns, "set", family, table, sets)
}

// nftMapElements returns the elements of the named maps of one table in ns.
func nftMapElements(ctx context.Context, ns, family, table string, maps ...string) ([]nftElement, error) {
	return nftElements(ctx, ns, "map", family, table, maps)
}

// nftElements lists each named set or map (kind) on its own: listing a whole table would print
// the table object, which nft 1.0.6 garbles for table inet ftpgate.
func nftElements(ctx context.Context, ns, kind, family, table string, names []string) ([]nftElement, error) {
	var out []nftElement
	for _, name := range names {
		objs, err := nftJSON(ctx, ns, "list", kind, family, table, name)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			raw, ok := o[kind]
			if !ok {
				continue
			}
			var set struct {
				Elem []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(raw, &set); err != nil {
				return nil, fmt.Errorf("%s %s in nft output: %w", kind, name, err)
			}
			for _, el := range set.Elem {
				e, err := parseElement(el)
				if err != nil {
					return nil, fmt.Errorf("%s %s: element %s: %w", kind, name, el, err)
				}
				e.Set = name
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// parseElement reads {"elem": {"val": KEY, "timeout": N, "expires": M}} or a bare KEY, where KEY
// is {"concat": [...]} or a single value; or, for a map, a list of such an element and its value.
func parseElement(raw json.RawMessage) (nftElement, error) {
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) == nil {
		if len(pair) != 2 {
			return nftElement{}, fmt.Errorf("map element of %d parts, want key and value", len(pair))
		}
		e, err := parseElement(pair[0])
		if err != nil {
			return e, err
		}
		v, err := parseElement(pair[1])
		e.Value = v.Key
		return e, err
	}
	var e nftElement
	var wrapped struct {
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Timeout float64         `json:"timeout"`
			Expires float64         `json:"expires"`
		} `json:"elem"`
	}
	key := raw
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		key, e.Timeout, e.Expires = wrapped.Elem.Val, wrapped.Elem.Timeout, wrapped.Elem.Expires
	}
	var concat struct {
		Concat []any `json:"concat"`
	}
	if json.Unmarshal(key, &concat) == nil && concat.Concat != nil {
		for _, p := range concat.Concat {
			e.Key = append(e.Key, fmt.Sprint(p))
		}
		return e, nil
	}
	var single any
	if err := json.Unmarshal(key, &single); err != nil {
		return e, err
	}
	e.Key = []string{fmt.Sprint(single)}
	return e, nil
}

var counterPackets = regexp.MustCompile(`\bcounter packets (\d+) bytes \d+`)

// nftCounterPackets returns the sum of the packet counters of the rules of one chain in ns.
func nftCounterPackets(ctx context.Context, ns, family, table, chain string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, errb, err := runIn(ctx, ns, "nft", "list", "chain", family, table, chain)
	if err != nil {
		return 0, fmt.Errorf("nft list chain %s %s %s in %s: %w: %s", family, table, chain, ns, err, bytes.TrimSpace(errb))
	}
	var n uint64
	for _, m := range counterPackets.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("counter in %q: %w", m[0], err)
		}
		n += v
	}
	return n, nil
}

// nftShape returns the ruleset of ns (`nft -a -s list ruleset`: with handles, without counter
// values and expiry times) as lines, leaving out set and map elements. Two shapes are equal when
// nobody added, deleted or replaced a table, chain, set or rule.
func nftShape(ctx context.Context, ns string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, errb, err := runIn(ctx, ns, "nft", "-a", "-s", "list", "ruleset")
	if err != nil {
		return nil, fmt.Errorf("nft list ruleset in %s: %w: %s", ns, err, bytes.TrimSpace(errb))
	}
	var lines []string
	inElements := false
	for _, line := range strings.Split(string(out), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "elements = {") {
			inElements = true
		}
		if inElements {
			inElements = !strings.HasSuffix(trimmed, "}")
			continue
		}
		if trimmed != "" {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// diffShapes says how two ruleset shapes differ, or returns "".
func diffShapes(before, after []string) string {
	var b strings.Builder
	for _, l := range before {
		if !slices.Contains(after, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range after {
		if !slices.Contains(before, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	if b.Len() == 0 && !slices.Equal(before, after) {
		return "same objects in a different order"
	}
	return b.String()
}

// nftLoad loads a ruleset (nft -f syntax) into namespace ns.
func nftLoad(ctx context.Context, ns, ruleset string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := nsrun.Command(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}
