package rewrite

import (
	"slices"
	"strings"
	"testing"
)

// requiredVerbs is every verb the command table must cover: RFC 959, 2228,
// 2389, 2428, 2640, 3659, 7151, 1639 and the list.
var requiredVerbs = strings.Fields(`
	ABOR ACCT ADAT ALLO APPE AUTH AVBL CCC CDUP CONF CSID CWD DELE DSIZ ENC EPRT EPSV FEAT HELP HOST LANG LIST LPRT LPSV
	MDTM MFCT MFF MFMT MIC MKD MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REIN REST RETR RMD RMDA RNFR
	RNTO SITE SIZE SMNT SPSV STAT STOR STOU STRU SYST THMB TYPE USER XCUP XMKD XPWD XRCP XRMD XRSQ XSEM XSEN`)

func TestCommandTableCoversRequiredVerbs(t *testing.T) {
	for _, v := range requiredVerbs {
		t.Run(v, func(t *testing.T) {
			info, ok := Lookup(v)
			if !ok {
				t.Fatalf("Lookup(%q) not found", v)
			}
			if info.Verb != v || info.Class == ClassUnknown || info.Spec == "" || info.Summary == "" {
				t.Fatalf("incomplete entry %+v", info)
			}
		})
	}
}

func TestCommandTableWellFormed(t *testing.T) {
	all := Commands()
	if !slices.IsSortedFunc(all, func(a, b Info) int { return strings.Compare(a.Verb, b.Verb) }) {
		t.Fatal("table not sorted by verb")
	}
	for i, info := range all {
		if i > 0 && all[i-1].Verb == info.Verb {
			t.Fatalf("duplicate verb %q", info.Verb)
		}
		if info.Verb != asciiUpper(info.Verb) || len(info.Verb) < 3 || len(info.Verb) > 4 {
			t.Fatalf("verb %q not 3-4 upper-case letters", info.Verb)
		}
		if info.Class == ClassObsolete && info.AliasOf != "" {
			alias, ok := Lookup(info.AliasOf)
			if !ok || alias.Class == ClassObsolete {
				t.Fatalf("%s is an alias of %q, which is not a current verb", info.Verb, info.AliasOf)
			}
		}
		if info.Class != ClassObsolete && info.AliasOf != "" {
			t.Fatalf("%s has AliasOf but is not obsolete", info.Verb)
		}
	}
	all[0].Verb = "MODIFIED"
	if Commands()[0].Verb == "MODIFIED" {
		t.Fatal("Commands() shares the table")
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		class Class
		verbs string
	}{
		{ClassDataSetup, "PORT PASV EPRT EPSV LPRT LPSV SPSV"},
		{ClassTransfer, "RETR STOR STOU APPE LIST NLST MLSD THMB"},
		{ClassSecurity, "AUTH ADAT PBSZ PROT CCC MIC CONF ENC"},
		{ClassAuth, "USER PASS ACCT"},
		{ClassState, "TYPE MODE STRU REST REIN OPTS LANG HOST ALLO ABOR QUIT"},
		{ClassFile, "CWD CDUP DELE MKD RMD RMDA RNFR RNTO SIZE MDTM MLST MFMT MFCT MFF SMNT AVBL DSIZ SITE"},
		{ClassInfo, "FEAT HELP NOOP STAT SYST PWD CSID"},
		{ClassObsolete, "XCUP XMKD XPWD XRMD XRCP XRSQ XSEM XSEN XMAS"},
	}
	for _, tt := range tests {
		for _, v := range strings.Fields(tt.verbs) {
			t.Run(tt.class.String()+"/"+v, func(t *testing.T) {
				info, ok := Lookup(v)
				if !ok || info.Class != tt.class {
					t.Fatalf("Lookup(%q) = %+v, %v; want class %v", v, info, ok, tt.class)
				}
			})
		}
	}
	// Every entry is classified by exactly one of the rows above.
	n := 0
	for _, tt := range tests {
		n += len(strings.Fields(tt.verbs))
	}
	if n != len(Commands()) {
		t.Fatalf("classification test covers %d verbs, table has %d", n, len(Commands()))
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		in     string
		verb   string
		ok     bool
		secret bool
		alias  string
	}{
		{in: "retr", verb: "RETR", ok: true},
		{in: "Pass", verb: "PASS", ok: true, secret: true},
		{in: "ACCT", verb: "ACCT", ok: true, secret: true},
		{in: "xmkd", verb: "XMKD", ok: true, alias: "MKD"},
		{in: "XCUP", verb: "XCUP", ok: true, alias: "CDUP"},
		{in: "XPWD", verb: "XPWD", ok: true, alias: "PWD"},
		{in: "XRMD", verb: "XRMD", ok: true, alias: "RMD"},
		{in: "P@SW"},
		{in: ""},
		{in: "RETRX"},
		{in: strings.Repeat("A", 100)},
		{in: "r\xe9tr"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			info, ok := Lookup(tt.in)
			if ok != tt.ok || info.Verb != tt.verb || info.Secret != tt.secret || info.AliasOf != tt.alias {
				t.Fatalf("Lookup(%q) = %+v, %v", tt.in, info, ok)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	seen := map[string]bool{}
	for c := ClassUnknown; c <= ClassObsolete; c++ {
		s := c.String()
		if s == "" || seen[s] || strings.HasPrefix(s, "Class(") {
			t.Fatalf("Class(%d).String() = %q", c, s)
		}
		seen[s] = true
	}
	if got := Class(42).String(); got != "Class(42)" {
		t.Fatalf("Class(42).String() = %q", got)
	}
}
