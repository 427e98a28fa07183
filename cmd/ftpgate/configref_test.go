package main

import (
	"encoding"
	"flag"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// configRef is the reference of every config key; this test keeps it in
// step with fileConfig.
const configRef = "../../docs/CONFIG.md"

// refRow is one row of the reference table.
type refRow struct {
	key, flags, typ string
	line            int
}

var (
	refRowRe  = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\| ([^|]*) \\|")
	refFlagRe = regexp.MustCompile("`--([a-z0-9-]+)")
)

func readConfigRef(t *testing.T) []refRow {
	t.Helper()
	b, err := os.ReadFile(configRef)
	if err != nil {
		t.Fatal(err)
	}
	var rows []refRow
	inTable := false
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| key | flag | type | default | meaning |") {
			inTable = true
			continue
		}
		if inTable && !strings.HasPrefix(l, "|") {
			break
		}
		if m := refRowRe.FindStringSubmatch(l); inTable && m != nil {
			rows = append(rows, refRow{key: m[1], flags: strings.TrimSpace(m[2]), typ: strings.TrimSpace(m[3]), line: i + 1})
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no key table found", configRef)
	}
	return rows
}

// configKeys walks fileConfig's yaml tags: every leaf key, as the
// reference writes it, with the reference's name of its type.
func configKeys(t *testing.T, typ reflect.Type, prefix string, out map[string]string) {
	t.Helper()
	for f := range typ.Fields() {
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			configKeys(t, f.Type, prefix, out) // its keys belong to the parent
			continue
		}
		if tag == "" || tag == "-" {
			t.Fatalf("field %s.%s has no yaml key", typ, f.Name)
		}
		key := prefix + tag
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && !isScalar(ft):
			configKeys(t, ft, key+".", out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isScalar(ft.Elem()):
			configKeys(t, ft.Elem(), key+"[].", out)
		default:
			out[key] = refType(t, key, ft)
		}
	}
}

// isScalar reports whether a struct type is written as one YAML value
// (netip.Prefix and other text-marshalled types).
func isScalar(ft reflect.Type) bool {
	return reflect.PointerTo(ft).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) ||
		reflect.PointerTo(ft).Implements(reflect.TypeFor[yaml.Unmarshaler]())
}

func refType(t *testing.T, key string, ft reflect.Type) string {
	switch {
	case ft == reflect.TypeFor[netip.Prefix]():
		return "network"
	case ft == reflect.TypeFor[[]netip.Prefix]():
		return "list of networks"
	case ft == reflect.TypeFor[time.Duration]():
		return "duration"
	case ft == reflect.TypeFor[portList]():
		return "ports"
	case ft.Kind() == reflect.String:
		return "string"
	case ft.Kind() == reflect.Bool:
		return "bool"
	case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Int64:
		return "integer"
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
		return "list of strings"
	case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.Uint16 && ft.Elem().Kind() == reflect.Uint16:
		return "map of ports"
	}
	t.Fatalf("key %s: type %s has no name in the reference; add one to refType", key, ft)
	return ""
}

func TestConfigReferenceMatchesConfig(t *testing.T) {
	want := map[string]string{}
	configKeys(t, reflect.TypeFor[fileConfig](), "", want)
	rows := readConfigRef(t)

	fs := newRunFlags().fs
	documented := map[string]bool{"config": true} // --config names the file itself
	seen := map[string]bool{}
	for _, r := range rows {
		typ, ok := want[r.key]
		switch {
		case !ok:
			t.Errorf("%s:%d: key %s is not in the config struct", configRef, r.line, r.key)
			continue
		case seen[r.key]:
			t.Errorf("%s:%d: key %s is listed twice", configRef, r.line, r.key)
		case r.typ != typ:
			t.Errorf("%s:%d: key %s has type %q in the reference, %q in the struct", configRef, r.line, r.key, r.typ, typ)
		}
		seen[r.key] = true
		for _, m := range refFlagRe.FindAllStringSubmatch(r.flags, -1) {
			if fs.Lookup(m[1]) == nil {
				t.Errorf("%s:%d: key %s names flag --%s, which `ftpgate run` does not have", configRef, r.line, r.key, m[1])
			}
			documented[m[1]] = true
		}
	}
	var missing []string
	for k := range want {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	for _, k := range missing {
		t.Errorf("key %s (type %s) is missing from %s", k, want[k], configRef)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("flag --%s is not in %s", f.Name, configRef)
		}
	})
	t.Logf("%d keys and %d flags in the reference", len(seen), len(documented))
}
