package proxy

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"
)

// FTPS session tickets: which control connection's TLS session a data
// connection may resume (ticketBinding, session.sharesTickets).

// TestFTPSReuseRequired: a protected data connection that does not resume
// the control session (a fresh session cache) is refused with 522 and
// logged; the next one, resuming, works. With DataReuseOptional the
// unresumed connection is accepted.
func TestFTPSReuseRequired(t *testing.T) {
	for _, optional := range []bool{false, true} {
		t.Run(fmt.Sprintf("optional=%v", optional), func(t *testing.T) {
			ts := newTLSSetup(t)
			h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
				ts.gateTLS(c, ServerTLSOff)
				c.TLS.DataReuseOptional = optional
			})
			h.ftp.files["f"] = []byte("protected")
			cfg := ts.clientConfig()
			cl := h.dialFTPS(cfg)
			thief := ts.clientConfig() // its own cache: no session to resume
			if optional {
				if got := cl.xfer("EPSV", "RETR f", nil, thief, 226); string(got) != "protected" {
					t.Fatalf("got %q", got)
				}
				return
			}
			if got := cl.xfer("EPSV", "RETR f", nil, thief, 522); len(got) != 0 {
				t.Fatalf("unresumed data connection received %q", got)
			}
			recs := h.logs.FilterMessage("data connection refused: its TLS session does not resume the control connection's").All()
			if len(recs) != 1 || recs[0].Level.String() != "warn" {
				t.Fatalf("refusal log records: %v", recs)
			}
			if got := cl.xfer("EPSV", "RETR f", nil, cfg, 226); string(got) != "protected" {
				t.Fatalf("resumed data connection got %q", got)
			}
		})
	}
}

// TestFTPSSharedTicketCache: a client that keeps one TLS session cache for
// all its connections (rclone, many Go and Java clients) may open a data
// connection resuming a TLS session that another of its live control
// connections got; a ticket of another user, of another client address or
// of a closed control connection gets 522.
func TestFTPSSharedTicketCache(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Listen = []string{"127.0.0.1:0"}
		ts.gateTLS(c, ServerTLSOff)
	})
	h.ftp.files["f"] = []byte("mine")
	// onlyTicketOf is a client configuration whose cache holds just the
	// ticket of a session logged in now as user from src.
	onlyTicketOf := func(src, user string) (*tls.Config, *client) {
		cfg := ts.clientConfig()
		return cfg, h.dialFTPSAs(src, user, cfg)
	}

	shared, first := onlyTicketOf("127.0.0.1", "u")
	second := h.dialFTPSAs("127.0.0.1", "u", ts.clientConfig())
	if got := second.xfer("EPSV", "RETR f", nil, shared, 226); string(got) != "mine" {
		t.Fatalf("same client, same user, live issuer: got %q", got)
	}

	other, _ := onlyTicketOf("127.0.0.1", "someone-else")
	if got := second.xfer("EPSV", "RETR f", nil, other, 522); len(got) != 0 {
		t.Fatalf("another user's ticket: got %q", got)
	}

	elsewhere, _ := onlyTicketOf("127.0.0.2", "u")
	if got := second.xfer("EPSV", "RETR f", nil, elsewhere, 522); len(got) != 0 {
		t.Fatalf("another client address's ticket: got %q", got)
	}

	closed, gone := onlyTicketOf("127.0.0.1", "u")
	gone.cmd(221, "QUIT")
	for deadline := time.Now().Add(5 * time.Second); h.srv.Stats().Sessions > 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := second.xfer("EPSV", "RETR f", nil, closed, 522); len(got) != 0 {
		t.Fatalf("a closed control connection's ticket: got %q", got)
	}
	first.cmd(221, "QUIT")
}

// TestFTPSTicketOfAControlConnectionLoggingIn: a client that caches only its
// latest ticket (Go's cache, as rclone uses) opens a control connection while
// another transfers, and that connection's ticket, issued before its USER, is
// what the transfer's data connection offers. It is accepted once the new
// connection has logged in as the same user; not if it never logs in, or
// logs in as someone else.
func TestFTPSTicketOfAControlConnectionLoggingIn(t *testing.T) {
	ts := newTLSSetup(t)
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
		c.Listen = []string{"127.0.0.1:0"}
		ts.gateTLS(c, ServerTLSOff)
	})
	h.ftp.files["f"] = []byte("mine")
	busy := h.dialFTPSAs("127.0.0.1", "u", ts.clientConfig())
	// fresh opens a control connection whose ticket is the only one in a
	// new cache, and logs in as user after a moment (never, for "").
	fresh := func(user string) *tls.Config {
		shared := ts.clientConfig()
		c := h.dialOnly("127.0.0.1")
		c.expect(220)
		c.cmd(234, "AUTH TLS")
		c.startTLS(shared)
		c.cmd(200, "NOOP") // the ticket is in shared's cache now; no USER yet
		if user != "" {
			go func() {
				time.Sleep(200 * time.Millisecond)
				c.tp.PrintfLine("USER %s", user)
				c.tp.ReadResponse(331)
				c.tp.PrintfLine("PASS secret-password")
				c.tp.ReadResponse(230)
			}()
		}
		return shared
	}
	if got := busy.xfer("EPSV", "RETR f", nil, fresh("u"), 226); string(got) != "mine" {
		t.Fatalf("the ticket of a connection that logs in as the same user: got %q", got)
	}
	if got := busy.xfer("EPSV", "RETR f", nil, fresh("someone-else"), 522); len(got) != 0 {
		t.Fatalf("the ticket of a connection that logs in as another user: got %q", got)
	}
	if got := busy.xfer("EPSV", "RETR f", nil, fresh(""), 522); len(got) != 0 {
		t.Fatalf("the ticket of a connection that never logs in: got %q", got)
	}
}
