// Package policy decides what a session may do. It owns the decisions and
// the operator's configuration of them: which clients may start a session
// on which listener, which commands a session may send, resource limits and
// admission, which data-connection targets a client may name (FTP bounce
// protection), which peers may open a data connection, which servers may
// be reached, and proxy logins in explicit mode. Its functions are pure:
// they look only at the configuration and the facts handed in, never do
// I/O, and keep no state (counters and token buckets live in the proxy).
//
// # Questions and answers
//
// Every question returns a Decision: Allow, and for a denial the reply to
// send (Code, Text), the reason for the log and the audit record (Reason)
// and the rule that decided (Rule). A session asks, in order:
//
//	Limits.AdmitSession(active, activeForClient)  before anything: 421 over max_sessions(_per_client)
//	Limits.LoginCooldown()                         421 for a client whose failed-login bucket is empty
//	Config.Session(facts)                          client rules per listener: 421
//	Config.Command(facts, cmd)                     every command: 530/521/534 (require_client_tls), 550/500/502, or a rule's code
//	Config.ExplicitDestination(facts, host, addrs, port)  explicit mode, once the server is named: 530
//	ExplicitLogin.Next(cmd)                        explicit mode, each USER/PASS/ACCT/OPEN/SITE until the server is chosen
//	Users.Verify(name, password)                   explicit-mode proxy login: 530 (ExplicitLogin calls it)
//	Config.Destination(dst)                        transparent modes, the original destination
//	Config.ActiveTarget(peer, target)              PORT/EPRT/LPRT (bounce)
//	Config.DataPeer(want, from)                    each data connection
//	Limits.UploadTooLarge()                        an upload cut at max_upload_size: 552
//
// SessionFacts carries what the session knows (client, listener, user,
// TLS state); the proxy fills it in and keeps it current.
//
// # Configuration
//
// Config (the policy: section) and Limits (the limits: section) carry yaml
// tags; their zero values are safe defaults, documented on each field:
// everything allowed that the bounce and data-peer rules do not forbid, and
// the limits of issue 11 (1024 sessions, 64 per client, 10 failed logins a
// minute, eager upstream connect, 60 s data idle timeout). Validate reports
// a configuration that cannot work, naming the rule by name or position.
// Example:
//
//	policy:
//	  require_client_tls: true
//	  clients:
//	    - {name: office, listeners: [public], networks: [198.18.0.0/16], action: allow}
//	    - {listeners: [public], action: deny}
//	  commands:
//	    presets: [strict]
//	    site_commands: [CHMOD, UMASK]
//	    rules:
//	      - {name: editors, users: ["ed-*"], action: allow}
//	      - {name: read-only for the rest, preset: read-only, action: deny}
//	limits:
//	  max_sessions_per_client: 16
//	  upstream_connect: lazy
//
// # Imports
//
// policy imports rewrite (commands, the command table) and two hash
// libraries for the users file, golang.org/x/crypto/bcrypt and
// github.com/go-crypt/crypt's shacrypt: checking a hash is pure computation,
// and keeping the parser and the check together makes a malformed hash an
// error when the file is loaded.
//
// # Tests
//
//	feature                                          test
//	command presets, scoped rules, SITE list, TLS   TestCommand, TestCommandsValidate, FuzzCommand
//	client rules per listener                        TestSession
//	limits, defaults, admission                      TestAdmitSession, TestLimitsDefaults, TestLimitsValidate
//	yaml keys of policy: and limits:                 TestYAML
//	explicit-mode destinations                       TestExplicitDestination
//	users file and proxy login                       TestUsers, TestParseUsersErrors, FuzzParseUsers
//	explicit-mode login sequences (lftp, mod_proxy)  TestExplicitLogin, FuzzExplicitLogin
//	bounce, data peers, destinations                 TestActiveTarget, TestDataPeer, TestDestination
package policy
