package rewrite

import (
	"slices"
	"strings"
	"testing"
)

// featReplies are FEAT replies in the form each server sends them. The
// pure-ftpd one is a transcript of a real session; the others follow the
// servers' sources (vsftpd features.c, proftpd mod_core/mod_facts, IIS and
// FileZilla Server documentation of their FEAT output).
var featReplies = []struct {
	name  string
	wire  string
	names []string
}{
	{
		name:  "vsftpd",
		wire:  crlf("211-Features:", " EPRT", " EPSV", " MDTM", " PASV", " REST STREAM", " SIZE", " TVFS", " UTF8", "211 End"),
		names: []string{"EPRT", "EPSV", "MDTM", "PASV", "REST", "SIZE", "TVFS", "UTF8"},
	},
	{
		name: "proftpd",
		wire: crlf("211-Features:", " LANG en-US*", " EPRT", " EPSV", " MDTM", " MFF modify;UNIX.group;UNIX.mode;",
			" MFMT", " MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;",
			" REST STREAM", " SIZE", " TVFS", "211 End"),
		names: []string{"LANG", "EPRT", "EPSV", "MDTM", "MFF", "MFMT", "MLST", "REST", "SIZE", "TVFS"},
	},
	{
		name: "pure-ftpd",
		wire: crlf("211-Extensions supported:", " EPRT", " IDLE", " MDTM", " SIZE", " MFMT", " REST STREAM",
			" MLST type*;size*;sizd*;modify*;UNIX.mode*;UNIX.uid*;UNIX.gid*;unique*;", " MLSD", " AUTH TLS", " PBSZ",
			" PROT", " UTF8", " TVFS", " ESTA", " PASV", " EPSV", " SPSV", "211 End."),
		names: []string{"EPRT", "IDLE", "MDTM", "SIZE", "MFMT", "REST", "MLST", "MLSD", "AUTH", "PBSZ", "PROT", "UTF8", "TVFS", "ESTA", "PASV", "EPSV", "SPSV"},
	},
	{
		name: "IIS",
		wire: crlf("211-Extended features supported:", " LANG EN*", " UTF8", " AUTH TLS;TLS-C;SSL;TLS-P;", " PBSZ", " PROT C;P;",
			" CCC", " HOST", " SIZE", " MDTM", " REST STREAM", "211 END"),
		names: []string{"LANG", "UTF8", "AUTH", "PBSZ", "PROT", "CCC", "HOST", "SIZE", "MDTM", "REST"},
	},
	{
		name: "FileZilla Server",
		wire: crlf("211-Features:", " MDTM", " REST STREAM", " SIZE", " MLST type*;size*;modify*;", " MLSD", " UTF8",
			" CLNT", " MFMT", " EPSV", " EPRT", "211 End"),
		names: []string{"MDTM", "REST", "SIZE", "MLST", "MLSD", "UTF8", "CLNT", "MFMT", "EPSV", "EPRT"},
	},
	{
		name:  "blank line and lower case",
		wire:  crlf("211-Features:", " eprt", "", " mlst Type*;", "211 End"),
		names: []string{"EPRT", "MLST"},
	},
	{
		name:  "code repeated on every line",
		wire:  crlf("211-Features:", "211-EPRT", "211- EPSV", "211 End"),
		names: []string{"EPRT", "EPSV"},
	},
	{
		name:  "no features, single line",
		wire:  crlf("211 No features"),
		names: nil,
	},
	{
		name:  "no features, two lines",
		wire:  crlf("211-Features:", "211 End"),
		names: nil,
	},
}

func TestParseFeatures(t *testing.T) {
	for _, tt := range featReplies {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.wire), Limits{}).ReadReply()
			if err != nil {
				t.Fatal(err)
			}
			fs, err := ParseFeatures(r)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range fs {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, tt.names) {
				t.Fatalf("names = %q, want %q", names, tt.names)
			}
		})
	}
}

func TestParseFeaturesParams(t *testing.T) {
	r := NewReply(211, "Features:", " REST STREAM", " MLST size*;modify*;type*;", " AUTH TLS", " LANG EN*;FR", " UTF8", "End")
	fs, err := ParseFeatures(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []Feature{{"REST", "STREAM"}, {"MLST", "size*;modify*;type*;"}, {"AUTH", "TLS"}, {"LANG", "EN*;FR"}, {"UTF8", ""}}
	if !slices.Equal(fs, want) {
		t.Fatalf("features = %+v, want %+v", fs, want)
	}
}

func TestParseFeaturesErrors(t *testing.T) {
	tests := []struct {
		name  string
		reply *Reply
	}{
		{name: "nil", reply: nil},
		{name: "not implemented", reply: NewReply(502, "Command not implemented.")},
		{name: "unknown command", reply: NewReply(500, "Unknown command.")},
		{name: "other 2xx", reply: NewReply(214, "a", "b")},
		{name: "broken framing", reply: &Reply{Code: 211, Lines: []string{"211-Features:", " EPRT"}}},
		{name: "CRLF in a feature line", reply: &Reply{Code: 211, Lines: []string{"211-Features:", " EPRT\r\n211 End\r\n230 x", "211 End"}}},
		{name: "no lines", reply: &Reply{Code: 211}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if fs, err := ParseFeatures(tt.reply); err == nil {
				t.Fatalf("ParseFeatures = %+v, want an error", fs)
			}
		})
	}
}

func TestFilterFeatures(t *testing.T) {
	hide := func(names ...string) func(Feature) bool {
		return func(f Feature) bool { return !slices.Contains(names, f.Name) }
	}
	tests := []struct {
		name  string
		reply *Reply
		keep  func(Feature) bool
		want  []string
	}{
		{
			name:  "hide what the proxy cannot carry",
			reply: &Reply{Code: 211, Lines: []string{"211-Extensions supported:", " EPRT", " AUTH TLS", " PBSZ", " PROT", " SPSV", " UTF8", "211 End."}},
			keep:  hide("AUTH", "PBSZ", "PROT", "SPSV"),
			want:  []string{"211-Extensions supported:", " EPRT", " UTF8", "211 End."},
		},
		{
			name:  "everything hidden stays a valid reply",
			reply: NewReply(211, "Features:", " EPRT", "End"),
			keep:  func(Feature) bool { return false },
			want:  []string{"211-Features:", "211 End"},
		},
		{
			name:  "nil keep keeps all",
			reply: NewReply(211, "Features:", " EPRT", " EPSV", "End"),
			keep:  nil,
			want:  []string{"211-Features:", " EPRT", " EPSV", "211 End"},
		},
		{
			name:  "blank lines kept",
			reply: &Reply{Code: 211, Lines: []string{"211-Features:", " EPRT", "", " SPSV", "211 End"}},
			keep:  hide("SPSV"),
			want:  []string{"211-Features:", " EPRT", "", "211 End"},
		},
		{
			name:  "lines kept byte for byte",
			reply: &Reply{Code: 211, Lines: []string{"211-Features:", "  mlst  Type*;", " eprt", "211 End"}},
			keep:  hide("EPRT"),
			want:  []string{"211-Features:", "  mlst  Type*;", "211 End"},
		},
		{
			name:  "error reply passed unchanged",
			reply: NewReply(502, "Command not implemented."),
			keep:  func(Feature) bool { return false },
			want:  []string{"502 Command not implemented."},
		},
		{
			name:  "single-line 211 passed unchanged",
			reply: NewReply(211, "No features"),
			keep:  func(Feature) bool { return false },
			want:  []string{"211 No features"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := slices.Clone(tt.reply.Lines)
			got := FilterFeatures(tt.reply, tt.keep)
			if !slices.Equal(got.Lines, tt.want) || got.Code != tt.reply.Code {
				t.Fatalf("FilterFeatures = %d %q, want %q", got.Code, got.Lines, tt.want)
			}
			if !slices.Equal(tt.reply.Lines, orig) {
				t.Fatalf("input modified: %q, was %q", tt.reply.Lines, orig)
			}
			if _, err := got.Bytes(); err != nil {
				t.Fatalf("filtered reply does not format: %v", err)
			}
		})
	}
	if FilterFeatures(nil, nil) != nil {
		t.Fatal("FilterFeatures(nil) != nil")
	}
}
