package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/rewrite"
)

func mustCommand(t testing.TB, line string) rewrite.Command {
	t.Helper()
	c, err := rewrite.ParseCommand(line)
	if err != nil {
		t.Fatalf("ParseCommand(%q): %v", line, err)
	}
	return c
}

func pfx(s ...string) (out []netip.Prefix) {
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

var (
	office   = netip.MustParseAddrPort("198.18.0.2:40000")
	outsider = netip.MustParseAddrPort("198.19.7.7:40000")
	pubAddr  = netip.MustParseAddrPort("198.18.1.1:21")
)

type commandCase struct {
	name  string
	cfg   Config
	facts SessionFacts
	line  string
	allow bool
	code  int    // when denied
	rule  string // expected Decision.Rule ("" = don't care when allowed)
}

var commandCases = []commandCase{
	{name: "zero config allows STOR", line: "STOR x", allow: true},
	{name: "zero config allows unknown", line: "FOOB x", allow: true},
	{name: "quit always allowed", cfg: Config{Commands: Commands{Rules: []CommandRule{{Action: "deny"}}}}, line: "QUIT", allow: true},

	{name: "read-only denies STOR", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "STOR a", code: 550, rule: `preset "read-only"`},
	{name: "read-only denies XMKD", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "xmkd d", code: 550, rule: `preset "read-only"`},
	{name: "read-only denies SITE", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "SITE CHMOD 600 a", code: 550, rule: `preset "read-only"`},
	{name: "read-only denies RMDA", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "RMDA d", code: 550, rule: `preset "read-only"`},
	{name: "read-only serves RETR", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "RETR a", allow: true},
	{name: "read-only serves LIST", cfg: Config{Commands: Commands{Presets: []string{"read-only"}}}, line: "LIST", allow: true},
	{name: "no-delete denies DELE", cfg: Config{Commands: Commands{Presets: []string{"no-delete"}}}, line: "DELE a", code: 550, rule: `preset "no-delete"`},
	{name: "no-delete allows STOR", cfg: Config{Commands: Commands{Presets: []string{"no-delete"}}}, line: "STOR a", allow: true},
	{name: "strict denies unknown with 500", cfg: Config{Commands: Commands{Presets: []string{"strict"}}}, line: "P@SW", code: 500, rule: `preset "strict"`},
	{name: "strict allows table verbs", cfg: Config{Commands: Commands{Presets: []string{"strict"}}}, line: "XPWD", allow: true},
	{name: "strict and read-only", cfg: Config{Commands: Commands{Presets: []string{"strict", "read-only"}}}, line: "APPE a", code: 550, rule: `preset "read-only"`},

	{
		name: "rule by user glob before preset",
		cfg: Config{Commands: Commands{Presets: []string{"read-only"}, Rules: []CommandRule{
			{Name: "editors", Users: []string{"ed-*"}, Action: "allow"},
		}}},
		facts: SessionFacts{User: "ed-alice"}, line: "STOR a", allow: true, rule: `rule "editors"`,
	},
	{
		name: "user glob does not match other user",
		cfg: Config{Commands: Commands{Presets: []string{"read-only"}, Rules: []CommandRule{
			{Name: "editors", Users: []string{"ed-*"}, Action: "allow"},
		}}},
		facts: SessionFacts{User: "bob"}, line: "STOR a", code: 550, rule: `preset "read-only"`,
	},
	{
		name: "user rule never matches before USER",
		cfg:  Config{Commands: Commands{Rules: []CommandRule{{Users: []string{"*"}, Action: "deny"}}}},
		line: "FEAT", allow: true,
	},
	{
		name: "first match wins",
		cfg: Config{Commands: Commands{Rules: []CommandRule{
			{Name: "a", Verbs: []string{"DELE"}, Action: "deny", Code: 553, Message: "No deleting."},
			{Name: "b", Verbs: []string{"DELE"}, Action: "allow"},
		}}},
		line: "DELE x", code: 553, rule: `rule "a"`,
	},
	{
		name: "class rule",
		cfg:  Config{Commands: Commands{Rules: []CommandRule{{Classes: []string{"transfer"}, Action: "deny"}}}},
		line: "NLST", code: 550, rule: "rule #1",
	},
	{
		name: "class rule on unknown gets 500",
		cfg:  Config{Commands: Commands{Rules: []CommandRule{{Classes: []string{"unknown"}, Action: "deny"}}}},
		line: "XYZZY", code: 500, rule: "rule #1",
	},
	{
		name: "alias covered by modern verb",
		cfg:  Config{Commands: Commands{Rules: []CommandRule{{Verbs: []string{"mkd"}, Action: "deny"}}}},
		line: "XMKD d", code: 550, rule: "rule #1",
	},
	{
		name: "client network scope",
		cfg: Config{Commands: Commands{Rules: []CommandRule{
			{Name: "office", Clients: pfx("198.18.0.0/24"), Action: "allow"},
			{Name: "rest", Preset: "read-only", Action: "deny"},
		}}},
		facts: SessionFacts{Client: outsider}, line: "STOR a", code: 550, rule: `rule "rest"`,
	},
	{
		name: "client network scope inside",
		cfg: Config{Commands: Commands{Rules: []CommandRule{
			{Name: "office", Clients: pfx("198.18.0.0/24"), Action: "allow"},
			{Name: "rest", Preset: "read-only", Action: "deny"},
		}}},
		facts: SessionFacts{Client: office}, line: "STOR a", allow: true, rule: `rule "office"`,
	},
	{
		name:  "listener by name",
		cfg:   Config{Commands: Commands{Rules: []CommandRule{{Listeners: []string{"public"}, Preset: "read-only", Action: "deny"}}}},
		facts: SessionFacts{Listener: "public"}, line: "DELE a", code: 550,
	},
	{
		name:  "listener by address",
		cfg:   Config{Commands: Commands{Rules: []CommandRule{{Listeners: []string{"198.18.1.1:21"}, Preset: "read-only", Action: "deny"}}}},
		facts: SessionFacts{ListenerAddr: pubAddr}, line: "DELE a", code: 550,
	},
	{
		name:  "listener by address without port",
		cfg:   Config{Commands: Commands{Rules: []CommandRule{{Listeners: []string{"198.18.1.1"}, Preset: "read-only", Action: "deny"}}}},
		facts: SessionFacts{ListenerAddr: pubAddr}, line: "DELE a", code: 550,
	},
	{
		name:  "other listener",
		cfg:   Config{Commands: Commands{Rules: []CommandRule{{Listeners: []string{"public", "198.18.1.1:2121"}, Preset: "read-only", Action: "deny"}}}},
		facts: SessionFacts{Listener: "inside", ListenerAddr: pubAddr}, line: "DELE a", allow: true,
	},

	{name: "site allow-list allows", cfg: Config{Commands: Commands{SiteCommands: []string{"chmod"}}}, line: "SITE CHMOD 644 a", allow: true},
	{name: "site allow-list denies", cfg: Config{Commands: Commands{SiteCommands: []string{"CHMOD"}}}, line: "SITE EXEC rm", code: 502, rule: "site_commands"},
	{name: "site allow-list denies bare SITE", cfg: Config{Commands: Commands{SiteCommands: []string{"CHMOD"}}}, line: "SITE", code: 502, rule: "site_commands"},
	{
		name: "rule allows a SITE sub-command past the list",
		cfg: Config{Commands: Commands{SiteCommands: []string{"CHMOD"}, Rules: []CommandRule{
			{Users: []string{"admin"}, Verbs: []string{"SITE UTIME"}, Action: "allow"},
		}}},
		facts: SessionFacts{User: "admin"}, line: "SITE utime 20240101 a", allow: true,
	},

	{name: "tls: USER before AUTH", cfg: Config{RequireClientTLS: true}, line: "USER bob", code: 530, rule: "require_client_tls"},
	{name: "tls: AUTH allowed", cfg: Config{RequireClientTLS: true}, line: "AUTH TLS", allow: true},
	{name: "tls: FEAT allowed", cfg: Config{RequireClientTLS: true}, line: "FEAT", allow: true},
	{name: "tls: USER after AUTH", cfg: Config{RequireClientTLS: true}, facts: SessionFacts{ClientTLS: true}, line: "USER bob", allow: true},
	{name: "tls: RETR without PROT P", cfg: Config{RequireClientTLS: true}, facts: SessionFacts{ClientTLS: true, LoggedIn: true}, line: "RETR a", code: 521, rule: "require_client_tls"},
	{name: "tls: RETR with PROT P", cfg: Config{RequireClientTLS: true}, facts: SessionFacts{ClientTLS: true, ProtectedData: true}, line: "RETR a", allow: true},
	{name: "tls: PASV without PROT P is allowed", cfg: Config{RequireClientTLS: true}, facts: SessionFacts{ClientTLS: true}, line: "PASV", allow: true},
	{name: "tls: CCC", cfg: Config{RequireClientTLS: true}, facts: SessionFacts{ClientTLS: true, ProtectedData: true}, line: "CCC", code: 534, rule: "require_client_tls"},
	{
		name: "tls check comes before an allow rule",
		cfg:  Config{RequireClientTLS: true, Commands: Commands{Rules: []CommandRule{{Action: "allow"}}}},
		line: "USER bob", code: 530, rule: "require_client_tls",
	},
}

func TestCommand(t *testing.T) {
	for _, tt := range commandCases {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			d := tt.cfg.Command(tt.facts, mustCommand(t, tt.line))
			if d.Allow != tt.allow {
				t.Fatalf("Command(%q) = %+v, want allow=%v", tt.line, d, tt.allow)
			}
			if tt.rule != "" && d.Rule != tt.rule {
				t.Fatalf("Command(%q).Rule = %q, want %q", tt.line, d.Rule, tt.rule)
			}
			if tt.allow {
				return
			}
			if d.Code != tt.code {
				t.Fatalf("Command(%q).Code = %d, want %d", tt.line, d.Code, tt.code)
			}
			if d.Text == "" || d.Reason == "" || d.Rule == "" {
				t.Fatalf("denial %+v lacks text, reason or rule", d)
			}
			if strings.ContainsAny(d.Text, "\r\n") {
				t.Fatalf("reply text %q has CR or LF", d.Text)
			}
			if _, err := rewrite.NewReply(d.Code, d.Text).Bytes(); err != nil {
				t.Fatalf("decision is not a valid reply: %v", err)
			}
		})
	}
}

func TestCommandsValidate(t *testing.T) {
	tests := []struct {
		name string
		cmds Commands
		want string // substring of the error; "" = valid
	}{
		{name: "zero", cmds: Commands{}},
		{name: "all presets", cmds: Commands{Presets: []string{"read-only", "no-delete", "strict"}}},
		{name: "unknown preset", cmds: Commands{Presets: []string{"readonly"}}, want: `unknown preset "readonly"`},
		{name: "no action", cmds: Commands{Rules: []CommandRule{{Name: "x"}}}, want: `rule "x": no action`},
		{name: "bad action", cmds: Commands{Rules: []CommandRule{{Action: "drop"}}}, want: `rule #1: action "drop"`},
		{name: "bad glob", cmds: Commands{Rules: []CommandRule{{Action: "deny", Users: []string{"[a"}}}}, want: "user pattern"},
		{name: "bad class", cmds: Commands{Rules: []CommandRule{{Action: "deny", Classes: []string{"writes"}}}}, want: `unknown command class "writes"`},
		{name: "bad code", cmds: Commands{Rules: []CommandRule{{Action: "deny", Code: 200}}}, want: "reply code 200"},
		{name: "sub-command on non-SITE", cmds: Commands{Rules: []CommandRule{{Action: "deny", Verbs: []string{"STOR x"}}}}, want: "only SITE"},
		{name: "message with LF", cmds: Commands{Rules: []CommandRule{{Action: "deny", Message: "a\nb"}}}, want: "CR, LF or NUL"},
		{name: "bad rule preset", cmds: Commands{Rules: []CommandRule{{Action: "deny", Preset: "nope"}}}, want: `unknown preset "nope"`},
		{name: "site command with space", cmds: Commands{SiteCommands: []string{"CH MOD"}}, want: "not one word"},
		{name: "invalid network", cmds: Commands{Rules: []CommandRule{{Action: "deny", Clients: []netip.Prefix{{}}}}}, want: "not a valid network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValidate(t, tt.cmds.Validate(), tt.want)
		})
	}
}

// checkValidate fails unless err is nil for want "" or an error containing
// want.
func checkValidate(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("Validate: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("Validate = %v, want an error containing %q", err, want)
	}
}

// FuzzCommand feeds arbitrary command lines through a policy with every
// kind of rule: a decision must never panic, and a denial must be a reply
// that can be written.
func FuzzCommand(f *testing.F) {
	for _, tt := range commandCases {
		f.Add(tt.line, tt.facts.User)
	}
	cfg := Config{RequireClientTLS: true, Commands: Commands{
		Presets:      []string{"strict", "read-only"},
		SiteCommands: []string{"CHMOD"},
		Rules: []CommandRule{
			{Users: []string{"ed-*"}, Verbs: []string{"STOR", "SITE UTIME"}, Action: "allow"},
			{Classes: []string{"obsolete"}, Action: "deny"},
		},
	}}
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line, user string) {
		cmd, err := rewrite.ParseCommand(line)
		if err != nil {
			return
		}
		for _, facts := range []SessionFacts{{User: user}, {User: user, ClientTLS: true, ProtectedData: true}} {
			d := cfg.Command(facts, cmd)
			if d.Allow {
				continue
			}
			if _, err := rewrite.NewReply(d.Code, d.Text).Bytes(); err != nil {
				t.Fatalf("Command(%q) = %+v: not a valid reply: %v", line, d, err)
			}
		}
	})
}
