package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/ftpgate/ftpgate/rewrite"
)

// SessionFacts is what a session knows about itself when it asks a
// question. The zero value is a session before anything happened: no
// client address, no user, no TLS.
type SessionFacts struct {
	// Client is the real client: the peer of the control connection, or the
	// address a trusted PROXY protocol header named.
	Client netip.AddrPort
	// Listener is the name of the listener the client reached ("" when the
	// listener has no name); ListenerAddr is the address it connected to
	// (the original destination in the transparent modes).
	Listener     string
	ListenerAddr netip.AddrPort
	// User is the name from the client's latest USER command ("" before
	// one); LoggedIn reports whether the server accepted the login.
	User     string
	LoggedIn bool
	// ClientTLS reports whether the control connection to the client is
	// under TLS (after AUTH TLS, or implicit FTPS); ProtectedData whether
	// PROT P is in force for its data connections.
	ClientTLS     bool
	ProtectedData bool
}

// Commands is the command policy. The zero value allows every command.
//
// A command is decided by the first of these that has an answer:
//
//  1. Config.RequireClientTLS (USER, PASS, ACCT before TLS: 530; a transfer
//     without PROT P: 521; CCC: 534);
//  2. Rules, in order: the first rule whose scope covers the session and
//     whose commands cover the command allows or denies it;
//  3. Presets, in order: a preset that covers the command denies it;
//  4. SiteCommands: SITE with a sub-command not in the list gets 502;
//  5. otherwise the command is allowed.
//
// QUIT is always allowed: refusing it only keeps a connection open.
type Commands struct {
	// Presets are named command sets that are denied to every session no
	// rule decided for: "read-only" (STOR STOU APPE DELE RMD XRMD RMDA MKD
	// XMKD RNFR RNTO SITE MFMT MFCT MFF ALLO, 550), "no-delete" (DELE RMD
	// XRMD RMDA, 550) and "strict" (every verb that is not in the command
	// table, 500). The flag --commands-preset sets one.
	Presets []string `yaml:"presets"`
	// Rules are checked first, in order; the first that matches decides.
	Rules []CommandRule `yaml:"rules"`
	// SiteCommands, when not empty, are the only SITE sub-commands allowed
	// (e.g. CHMOD, UMASK, IDLE, HELP; any case). A rule can still allow
	// another with a verb such as "SITE EXEC".
	SiteCommands []string `yaml:"site_commands"`
}

// CommandRule allows or denies some commands to some sessions. Every scope
// field that is set must match (an empty one matches every session); then
// the command must match one of Verbs, Classes or Preset (none set: every
// command).
type CommandRule struct {
	// Name names the rule in audit records; default "#N", its position.
	Name string `yaml:"name"`

	// Clients are networks of the client address.
	Clients []netip.Prefix `yaml:"clients"`
	// Users are user names, exact or path.Match globs ("anonymous",
	// "ftp-*"), matched against the name from the latest USER command; a
	// rule with Users never matches before USER.
	Users []string `yaml:"users"`
	// Listeners are listener names, or addresses ("198.18.0.1:21", or
	// "198.18.0.1" for every port) that the client connected to.
	Listeners []string `yaml:"listeners"`

	// Verbs are verbs in any case; an experimental alias matches its modern
	// verb (a rule for MKD covers XMKD). "SITE CHMOD" matches that SITE
	// sub-command only.
	Verbs []string `yaml:"verbs"`
	// Classes are command classes of the command table (package rewrite):
	// unknown, data-setup, transfer, security, auth, state, file, info,
	// obsolete.
	Classes []string `yaml:"classes"`
	// Preset matches the commands a preset denies.
	Preset string `yaml:"preset"`

	// Action is "allow" or "deny".
	Action string `yaml:"action"`
	// Code and Message are the reply to a denied command. Zero: 550 (500
	// for an unknown verb); empty: "<VERB> is not allowed here."
	Code    int    `yaml:"code"`
	Message string `yaml:"message"`
}

// Actions of a rule.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// Preset names.
const (
	PresetReadOnly = "read-only"
	PresetNoDelete = "no-delete"
	PresetStrict   = "strict"
)

// preset is a named set of commands denied with one reply code.
type preset struct {
	verbs   []string        // verbs denied (modern spellings and aliases alike)
	classes []rewrite.Class // classes denied
	code    int
}

var presets = map[string]preset{
	PresetReadOnly: {verbs: []string{"STOR", "STOU", "APPE", "DELE", "RMD", "XRMD", "RMDA", "MKD", "XMKD",
		"RNFR", "RNTO", "SITE", "MFMT", "MFCT", "MFF", "ALLO"}, code: 550},
	PresetNoDelete: {verbs: []string{"DELE", "RMD", "XRMD", "RMDA"}, code: 550},
	PresetStrict:   {classes: []rewrite.Class{rewrite.ClassUnknown}, code: 500},
}

// PresetNames returns the names of the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (p preset) covers(cmd rewrite.Command, info rewrite.Info) bool {
	return slices.ContainsFunc(p.verbs, func(v string) bool { return verbMatches(v, cmd, info) }) ||
		slices.Contains(p.classes, info.Class)
}

// Validate reports whether the command policy is usable.
func (c Commands) Validate() error {
	for _, p := range c.Presets {
		if _, ok := presets[p]; !ok {
			return fmt.Errorf("unknown preset %q (known: %s)", p, strings.Join(PresetNames(), ", "))
		}
	}
	for i, r := range c.Rules {
		if err := r.validate(); err != nil {
			return fmt.Errorf("rule %s: %w", ruleLabel(r.Name, i), err)
		}
	}
	for _, s := range c.SiteCommands {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("site command %q is not one word", s)
		}
	}
	return nil
}

func (r CommandRule) validate() error {
	if err := validateAction(r.Action); err != nil {
		return err
	}
	if err := validateScope(r.Clients, r.Users, r.Listeners); err != nil {
		return err
	}
	for _, v := range r.Verbs {
		verb, sub, _ := strings.Cut(v, " ")
		if verb == "" || strings.ContainsAny(v, "\t\r\n") || strings.Contains(sub, " ") {
			return fmt.Errorf("verb %q is not a verb or \"SITE SUBCOMMAND\"", v)
		}
		if sub != "" && !strings.EqualFold(verb, "SITE") {
			return fmt.Errorf("verb %q: only SITE takes a sub-command", v)
		}
	}
	for _, name := range r.Classes {
		if _, ok := rewrite.ParseClass(name); !ok {
			return fmt.Errorf("unknown command class %q", name)
		}
	}
	if _, ok := presets[r.Preset]; r.Preset != "" && !ok {
		return fmt.Errorf("unknown preset %q (known: %s)", r.Preset, strings.Join(PresetNames(), ", "))
	}
	if r.Code != 0 && (r.Code < 400 || r.Code > 599) {
		return fmt.Errorf("reply code %d: want 400..599", r.Code)
	}
	if strings.ContainsAny(r.Message, "\r\n\x00") {
		return errors.New("message contains CR, LF or NUL")
	}
	return nil
}

// validateAction checks the action of a rule.
func validateAction(a string) error {
	switch a {
	case ActionAllow, ActionDeny:
		return nil
	case "":
		return errors.New("no action: want allow or deny")
	}
	return fmt.Errorf("action %q: want allow or deny", a)
}

// validateScope checks the scope fields shared by command and client rules.
func validateScope(clients []netip.Prefix, users, listeners []string) error {
	for _, p := range clients {
		if !p.IsValid() {
			return fmt.Errorf("client network %v is not a valid network", p)
		}
	}
	for _, u := range users {
		if u == "" {
			return errors.New("empty user pattern")
		}
		if _, err := path.Match(u, ""); err != nil {
			return fmt.Errorf("user pattern %q: %w", u, err)
		}
	}
	for _, l := range listeners {
		if l == "" {
			return errors.New("empty listener")
		}
	}
	return nil
}

// Command decides whether a session may send cmd, and if not, what the
// client is told. It never looks at the argument except for SITE, whose
// sub-command is its first word.
func (c Config) Command(f SessionFacts, cmd rewrite.Command) Decision {
	if cmd.Verb == "QUIT" {
		return allow()
	}
	info := cmd.Info()
	if c.RequireClientTLS {
		if d, decided := requireTLS(f, cmd, info); decided {
			return d
		}
	}
	for i, r := range c.Commands.Rules {
		if !inScope(f, r.Clients, r.Users, r.Listeners) || !r.covers(cmd, info) {
			continue
		}
		name := "rule " + ruleLabel(r.Name, i)
		if r.Action == ActionAllow {
			return Decision{Allow: true, Rule: name}
		}
		code := r.Code
		if code == 0 {
			code = 550
			if info.Class == rewrite.ClassUnknown {
				code = 500
			}
		}
		text := r.Message
		if text == "" {
			text = notAllowed(cmd)
		}
		return refuse(name, code, text, fmt.Sprintf("%s denied by %s", commandName(cmd), name))
	}
	for _, name := range c.Commands.Presets {
		p := presets[name]
		if p.covers(cmd, info) {
			rule := fmt.Sprintf("preset %q", name)
			text := notAllowed(cmd)
			if p.code == 500 {
				text = commandName(cmd) + " not understood."
			}
			return refuse(rule, p.code, text, fmt.Sprintf("%s denied by %s", commandName(cmd), rule))
		}
	}
	if len(c.Commands.SiteCommands) > 0 && cmd.Verb == "SITE" {
		sub := siteSub(cmd)
		if !slices.ContainsFunc(c.Commands.SiteCommands, func(s string) bool { return strings.EqualFold(s, sub) }) {
			return refuse("site_commands", 502, notAllowed(cmd),
				fmt.Sprintf("%s is not in the SITE allow-list", commandName(cmd)))
		}
	}
	return allow()
}

// requireTLS applies Config.RequireClientTLS.
//
// RFC 4217 §11 lets a server that insists on a protected login refuse USER
// with 530 (vsftpd says "530 Non-anonymous sessions must use encryption.").
// For the data connection RFC 4217 §9 gives 521 "Data connection cannot be
// opened with this PROT setting" as the reply to a transfer command when
// the server's policy needs PROT P; that is the reply chosen here (vsftpd
// and ProFTPD mod_tls send the same). CCC would drop TLS from the control
// connection: 534, "request denied for policy reasons" (RFC 2228).
func requireTLS(f SessionFacts, cmd rewrite.Command, info rewrite.Info) (Decision, bool) {
	const rule = "require_client_tls"
	switch {
	case info.Class == rewrite.ClassAuth && !f.ClientTLS:
		return refuse(rule, 530, "TLS required: send AUTH TLS before "+cmd.Verb+".",
			cmd.Verb+" before AUTH TLS"), true
	case info.Class == rewrite.ClassTransfer && !(f.ClientTLS && f.ProtectedData):
		return refuse(rule, 521, "Data connection cannot be opened with this PROT setting: PROT P required.",
			cmd.Verb+" without PROT P"), true
	case cmd.Verb == "CCC":
		return refuse(rule, 534, "CCC denied by policy: TLS is required.", "CCC while TLS is required"), true
	}
	return Decision{}, false
}

// covers reports whether the rule's command fields match cmd.
func (r CommandRule) covers(cmd rewrite.Command, info rewrite.Info) bool {
	if len(r.Verbs) == 0 && len(r.Classes) == 0 && r.Preset == "" {
		return true
	}
	if slices.ContainsFunc(r.Verbs, func(v string) bool { return verbMatches(v, cmd, info) }) {
		return true
	}
	if slices.Contains(r.Classes, info.Class.String()) {
		return true
	}
	return r.Preset != "" && presets[r.Preset].covers(cmd, info)
}

// verbMatches reports whether a configured verb ("MKD", "site chmod")
// names cmd, whose table entry is info.
func verbMatches(want string, cmd rewrite.Command, info rewrite.Info) bool {
	verb, sub, hasSub := strings.Cut(want, " ")
	if hasSub {
		return cmd.Verb == "SITE" && strings.EqualFold(verb, "SITE") && strings.EqualFold(sub, siteSub(cmd))
	}
	return strings.EqualFold(verb, cmd.Verb) || (info.AliasOf != "" && strings.EqualFold(verb, info.AliasOf))
}

// siteSub returns the sub-command of a SITE command: the first word of its
// argument.
func siteSub(cmd rewrite.Command) string {
	sub, _, _ := strings.Cut(strings.TrimLeft(cmd.Arg, " "), " ")
	return sub
}

// commandName renders the command's verb (and a SITE sub-command) for reply
// texts and reasons, sanitised: it comes from the peer.
func commandName(cmd rewrite.Command) string {
	name := cmd.Verb
	if name == "SITE" {
		if sub := siteSub(cmd); sub != "" {
			name += " " + strings.ToUpper(sub)
		}
	}
	return printable(name, 40)
}

func notAllowed(cmd rewrite.Command) string {
	return commandName(cmd) + " is not allowed here."
}

// printable keeps printable ASCII and replaces anything else with '?', at
// most limit bytes, so that a peer's bytes are safe in a reply line.
func printable(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// inScope reports whether a session is in the scope given by client
// networks, user patterns and listeners (each empty list matches all).
func inScope(f SessionFacts, clients []netip.Prefix, users, listeners []string) bool {
	if len(clients) > 0 {
		a := f.Client.Addr().Unmap()
		if !slices.ContainsFunc(clients, func(p netip.Prefix) bool { return p.Contains(a) }) {
			return false
		}
	}
	if len(users) > 0 {
		if f.User == "" || !slices.ContainsFunc(users, func(u string) bool { return userMatches(u, f.User) }) {
			return false
		}
	}
	if len(listeners) > 0 && !slices.ContainsFunc(listeners, func(l string) bool { return listenerMatches(l, f) }) {
		return false
	}
	return true
}

// userMatches matches an exact name or a path.Match glob. Validate has
// checked the pattern; a malformed one matches nothing.
func userMatches(pattern, user string) bool {
	if pattern == user {
		return true
	}
	ok, err := path.Match(pattern, user)
	return err == nil && ok
}

// listenerMatches matches a listener by name, by address and port, or by
// address alone.
func listenerMatches(l string, f SessionFacts) bool {
	if l == f.Listener && f.Listener != "" {
		return true
	}
	if ap, err := netip.ParseAddrPort(l); err == nil {
		return f.ListenerAddr.IsValid() && ap.Addr().Unmap() == f.ListenerAddr.Addr().Unmap() && ap.Port() == f.ListenerAddr.Port()
	}
	if a, err := netip.ParseAddr(l); err == nil {
		return f.ListenerAddr.IsValid() && a.Unmap() == f.ListenerAddr.Addr().Unmap()
	}
	return false
}
