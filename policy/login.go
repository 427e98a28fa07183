package policy

import "github.com/ftpgate/ftpgate/rewrite"

// ExplicitLogin follows the login of one explicit-mode client, from
// ftpgate's own greeting to the moment the server is chosen and the proxy
// credentials (when explicit.auth is on) are checked. The session feeds it
// the client's USER, PASS, ACCT, OPEN and SITE commands with Next, answers
// FEAT, HELP, AUTH, PBSZ, PROT, NOOP, SYST and QUIT itself, and does what
// each LoginStep says. It understands every sequence listed in package
// rewrite's explicit.go:
//
//	auth off:  USER user@host                   -> connect, USER user
//	           OPEN|SITE host, USER user         -> 200, connect, USER user
//	auth on:   USER proxyuser, PASS proxypass    -> 331, 230 (or 530), then
//	           USER user@host | OPEN host, USER user
//	           USER proxyuser@host, PASS proxypass, USER user   (lftp proxy-user@host)
//	           USER user@proxyuser@host, PASS pass@proxypass     (lftp joined)
//	           USER user@host proxyuser, PASS pass, ACCT proxypass (lftp joined-acct)
//
// With auth on, a USER naming a server whose user part holds an '@' is
// taken for lftp's joined form (split at its last '@'); a real user name
// with an '@' then needs another form (USER proxyuser first). With auth
// off, "user@host proxyuser" and joined-acct's ACCT are accepted and the
// proxy credentials ignored, so that they never reach the server.
//
// The zero value has auth off. An ExplicitLogin is not safe for concurrent
// use; it belongs to one session.
type ExplicitLogin struct {
	// Users checks proxy credentials; nil turns explicit.auth off.
	Users *Users

	state     loginState
	proxyUser string
	target    rewrite.ProxyTarget
	user      string
	pass      string
}

type loginState int

const (
	loginStart       loginState = iota // nothing yet (or after a failure or REIN)
	loginProxyPass                     // USER proxyuser seen: PASS proxypass next
	loginProxyAuthed                   // proxy login done, no server yet
	loginHostPass                      // USER proxyuser@host seen: PASS proxypass next
	loginHaveTarget                    // server known (OPEN, or proxy-user@host done): USER user next
	loginJoinedPass                    // USER user@proxyuser@host seen: PASS pass@proxypass next
	loginAcctPass                      // USER user@host proxyuser seen: PASS pass next
	loginAcct                          // and PASS seen: ACCT proxypass next
)

// LoginStep is what the session does after one command of the login.
type LoginStep struct {
	// Code and Text are the reply to send to the client, unless Connect
	// is set.
	Code int
	Text string
	// Auth is the outcome of a proxy credential check, when this command
	// made one: an audit record (its Rule is "explicit.auth"). Failed
	// reports a failed proxy login, which counts toward
	// limits.max_login_failures.
	Auth   *Decision
	Failed bool
	// Connect reports that the server is chosen: decide Target with
	// Config.ExplicitDestination, connect (port 0 means FTPPort), swallow
	// the server's greeting, send USER User and relay the server's reply;
	// with HasPass, answer the server's 331 with PASS Pass instead and
	// relay the reply to that. After Connect the session relays as in the
	// other modes. Pass is a secret: never log it.
	Connect bool
	Target  rewrite.ProxyTarget
	User    string
	Pass    string
	HasPass bool
}

// Next takes one client command of the login (the session has parsed it)
// and says what to do.
func (l *ExplicitLogin) Next(cmd rewrite.Command) LoginStep {
	switch cmd.Verb {
	case "REIN":
		*l = ExplicitLogin{Users: l.Users}
		return reply(220, "Ready for a new login.")
	case "USER":
		return l.userCmd(cmd.Arg)
	case "PASS":
		return l.passCmd(cmd.Arg)
	case "ACCT":
		if l.state != loginAcct {
			return reply(503, "Bad sequence of commands: ACCT only follows PASS in the user@host proxyuser login.")
		}
		user, pass := l.user, l.pass
		return l.check(l.proxyUser, cmd.Arg, func() LoginStep { return l.connect(user, pass, true) })
	case "OPEN", "SITE":
		if l.state != loginStart && l.state != loginProxyAuthed && l.state != loginHaveTarget {
			return reply(503, "Bad sequence of commands: "+cmd.Verb+" names the server before USER.")
		}
		if l.auth() && l.state == loginStart {
			return reply(530, "Proxy login required first: USER proxyuser, PASS proxypass.")
		}
		t, err := rewrite.ParseOpenHost(cmd.Arg)
		if err != nil {
			return reply(501, "Syntax error: "+cmd.Verb+" host[:port].")
		}
		l.target, l.state = t, loginHaveTarget
		return reply(200, "Server "+t.HostPort(FTPPort)+" selected; send USER.")
	}
	return reply(530, "Please login with USER and PASS.")
}

// auth reports whether proxy credentials are required.
func (l *ExplicitLogin) auth() bool { return l.Users != nil }

func (l *ExplicitLogin) userCmd(arg string) LoginStep {
	t, err := rewrite.ParseProxyUser(arg)
	if err != nil {
		l.reset()
		return reply(501, "Syntax error: USER user@host[:port].")
	}
	switch {
	case t.Host == "" && l.state == loginHaveTarget:
		return l.connectTo(l.target, t.User)
	case t.Host == "" && l.auth() && l.state != loginProxyAuthed:
		l.reset()
		l.proxyUser, l.state = t.User, loginProxyPass
		return reply(331, "Proxy password required.")
	case t.Host == "":
		return reply(530, "Name the server: USER user@host[:port], or OPEN host first.")
	case l.state == loginProxyAuthed || l.state == loginHaveTarget || !l.auth() && t.ProxyUser == "":
		return l.connectTo(t, t.User)
	case t.ProxyUser != "":
		l.reset()
		l.target, l.user, l.proxyUser, l.state = t, t.User, t.ProxyUser, loginAcctPass
		return reply(331, "Password required.")
	}
	// Auth on, server named, no proxy login yet.
	l.reset()
	if user, proxyUser, ok := rewrite.SplitJoined(t.User); ok {
		l.target, l.user, l.proxyUser, l.state = t, user, proxyUser, loginJoinedPass
		return reply(331, "Password required (pass@proxypass).")
	}
	l.target, l.proxyUser, l.state = t, t.User, loginHostPass
	return reply(331, "Proxy password required.")
}

func (l *ExplicitLogin) passCmd(arg string) LoginStep {
	switch l.state {
	case loginProxyPass:
		return l.check(l.proxyUser, arg, func() LoginStep {
			l.state = loginProxyAuthed
			return reply(230, "Proxy login accepted; now USER user@host[:port] or OPEN host.")
		})
	case loginHostPass:
		return l.check(l.proxyUser, arg, func() LoginStep {
			l.state = loginHaveTarget
			return reply(230, "Proxy login accepted; now USER user.")
		})
	case loginJoinedPass:
		pass, proxyPass, ok := rewrite.SplitJoined(arg)
		if !ok {
			l.reset()
			d := refuse("explicit.auth", 530, "Login incorrect.", "joined login without pass@proxypass")
			return LoginStep{Code: d.Code, Text: d.Text, Auth: &d, Failed: true}
		}
		user := l.user
		return l.check(l.proxyUser, proxyPass, func() LoginStep { return l.connect(user, pass, true) })
	case loginAcctPass:
		l.pass, l.state = arg, loginAcct
		return reply(332, "Need account (proxy password) for login.")
	}
	return reply(503, "Bad sequence of commands: USER first.")
}

// check verifies proxy credentials and continues with next on success.
func (l *ExplicitLogin) check(user, pass string, next func() LoginStep) LoginStep {
	if !l.auth() {
		return next()
	}
	d := l.Users.Verify(user, pass)
	if !d.Allow {
		l.reset()
		return LoginStep{Code: d.Code, Text: d.Text, Auth: &d, Failed: true}
	}
	step := next()
	step.Auth = &d
	return step
}

func (l *ExplicitLogin) connectTo(t rewrite.ProxyTarget, user string) LoginStep {
	l.target = t
	return l.connect(user, "", false)
}

func (l *ExplicitLogin) connect(user, pass string, hasPass bool) LoginStep {
	t := l.target
	t.User, t.ProxyUser = user, ""
	*l = ExplicitLogin{Users: l.Users}
	return LoginStep{Connect: true, Target: t, User: user, Pass: pass, HasPass: hasPass}
}

func (l *ExplicitLogin) reset() { *l = ExplicitLogin{Users: l.Users} }

func reply(code int, text string) LoginStep { return LoginStep{Code: code, Text: text} }
