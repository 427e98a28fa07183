package proxy

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/policy"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest/observer"
)

// hostileCase is one misbehaving client or server. run plays the client and
// checks the replies it sees; the case then checks the log record and the
// audit event it names, and that goroutines, fds, listeners and pinholes
// are back where they were.
type hostileCase struct {
	name   string
	setup  func(f *fakeFTP, c *Config)
	run    func(t *testing.T, h *harness)
	log    string // a log message that must have been written
	denial string // the Kind of a DenialEvent that must have been reported
}

// login is the client's side of a plain login.
func login(c *client) {
	c.cmd(331, "USER u")
	c.cmd(230, "PASS secret-password")
}

// raw writes bytes as they are, for lines no well-behaved client sends.
func (c *client) raw(b string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, b); err != nil {
		c.t.Fatal(err)
	}
}

// expectWithin is expect with a bound on how long the reply may take.
func (c *client) expectWithin(code int, d time.Duration) string {
	c.t.Helper()
	start := time.Now()
	msg := c.expect(code)
	if took := time.Since(start); took > d {
		c.t.Fatalf("reply %d took %s, want within %s", code, took, d)
	}
	return msg
}

// expectClosed checks that the gateway closes the control connection.
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.tp.ReadLine(); err == nil {
		c.t.Fatal("the control connection is still open")
	}
}

func fdList() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		b.WriteString(e.Name() + "=" + l + " ")
	}
	return b.String()
}

func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func hostileCases() []hostileCase {
	big := bytes.Repeat([]byte("x"), 64<<10)
	return []hostileCase{
		// The server misbehaves.
		{name: "server greets with SSH", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" })
		}, run: func(t *testing.T, h *harness) {
			if msg := h.dialOnly("").expect(421); !strings.Contains(msg, "SSH") {
				t.Fatalf("421 %q does not say SSH", msg)
			}
		}, log: "the upstream speaks SSH, not FTP: ftpgate proxies FTP and FTPS, not SFTP or SCP"},
		{name: "server refuses the session", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = "421 Too many users\r\n" })
		}, run: func(t *testing.T, h *harness) {
			c := h.dialOnly("")
			c.expect(421)
			c.expectClosed()
		}},
		{name: "server greets with garbage", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = "hello there\r\n" })
		}, run: func(t *testing.T, h *harness) { h.dialOnly("").expect(421) }, log: "server broke the protocol"},
		{name: "server hangs up at once", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = hangUp })
		}, run: func(t *testing.T, h *harness) { h.dialOnly("").expect(421) }},
		{name: "server never greets", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = hangOn })
			c.LoginTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) { h.dialOnly("").expectWithin(421, 2*time.Second) }},
		{name: "server greeting with NUL", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = "220 hi\x00there\r\n" })
		}, run: func(t *testing.T, h *harness) { h.dialOnly("").expect(421) }, log: "server broke the protocol"},
		{name: "server greeting never ends its multi-line reply", setup: func(f *fakeFTP, c *Config) {
			f.configure(func(f *fakeFTP) { f.greet = "220-hello\r\n more\r\n" })
			c.LoginTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) { h.dialOnly("").expectWithin(421, 2*time.Second) }},
		{name: "server line over the limit", setup: func(f *fakeFTP, c *Config) {
			f.script("NOOP", "200 "+strings.Repeat("A", 20000)) // no end of line at all
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("NOOP\r\n")
			c.expectWithin(421, time.Second)
		}, log: "server broke the protocol"},
		{name: "server reply of too many lines", setup: func(f *fakeFTP, c *Config) {
			f.script("HELP", "214-help\r\n"+strings.Repeat(" x\r\n", 5000)+"214 end\r\n")
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("HELP\r\n")
			c.expectWithin(421, time.Second)
		}, log: "server broke the protocol"},
		{name: "server reply over the size limit", setup: func(f *fakeFTP, c *Config) {
			f.script("HELP", "214-help\r\n"+strings.Repeat(" "+strings.Repeat("y", 1000)+"\r\n", 80)+"214 end\r\n")
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("HELP\r\n")
			c.expectWithin(421, time.Second)
		}},
		{name: "server reply while no command is outstanding", setup: func(f *fakeFTP, c *Config) {
			f.script("PASS", "230 logged in\r\n200 surprise\r\n")
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			time.Sleep(50 * time.Millisecond) // the surprise arrives while nothing is asked
			if msg := c.cmd(200, "NOOP"); msg != "NOOP ok" {
				t.Fatalf("NOOP got %q: a reply out of step reached the client", msg)
			}
		}, log: "server reply while no command was outstanding: dropped"},
		{name: "server answers an alias of PASV with an address", setup: func(f *fakeFTP, c *Config) {
			f.script("P@SW", "227 Entering Passive Mode (127,0,0,1,200,10).\r\n")
		}, run: func(t *testing.T, h *harness) { h.dial().cmd(502, "P@SW") }, denial: "protocol"},
		{name: "server answers an unknown verb with an EPSV address", setup: func(f *fakeFTP, c *Config) {
			f.script("XPSV", "229 Entering Extended Passive Mode (|||40000|)\r\n")
		}, run: func(t *testing.T, h *harness) { h.dial().cmd(502, "XPSV") }, denial: "protocol"},
		{name: "server sends a 229 with port 0", setup: func(f *fakeFTP, c *Config) {
			f.script("EPSV", "229 Entering Extended Passive Mode (|||0|)\r\n")
		}, run: func(t *testing.T, h *harness) { refusedAtTransfer(t, h.dial(), "EPSV") }, log: "server sent an invalid 229 reply"},
		{name: "server sends a malformed 227", setup: func(f *fakeFTP, c *Config) {
			f.script("EPSV", "500 no EPSV here\r\n")
			f.script("PASV", "227 Entering Passive Mode (1,2,3)\r\n")
		}, run: func(t *testing.T, h *harness) { refusedAtTransfer(t, h.dial(), "PASV") }, log: "server sent an invalid 227 reply"},
		{name: "PASV before login latches no fallback", setup: func(f *fakeFTP, c *Config) {
			f.script("EPSV", "530 Please login with USER and PASS.\r\n")
		}, run: func(t *testing.T, h *harness) {
			c := h.dialOnly("")
			c.expect(220)
			c.cmd(530, "EPSV")
			login(c)
			if got := c.transfer("EPSV", "RETR f", nil); string(got) != "file" {
				t.Fatalf("after login: %q", got)
			}
			for _, v := range h.ftp.commands() {
				if v == "PASV" {
					t.Fatal("ftpgate fell back to PASV after a refusal before login")
				}
			}
		}},
		{name: "server's trusted PASV address outside the destination policy", setup: func(f *fakeFTP, c *Config) {
			f.noEPSV, f.pasvLie = true, "127,0,0,9"
			c.TrustServerPASVAddress = true
			c.Policy.DenyDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
		}, run: func(t *testing.T, h *harness) { refusedAtTransfer(t, h.dial(), "PASV") }, denial: "policy"},
		{name: "server never sends data", setup: func(f *fakeFTP, c *Config) {
			f.stall = "f"
			c.Limits.DataIdleTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			d := dialData(t, c.passive("EPSV"))
			defer d.Close()
			c.cmd(150, "RETR f")
			if msg := c.expectWithin(426, 3*time.Second); !strings.Contains(msg, "no data") {
				t.Fatalf("426 %q", msg)
			}
			c.cmd(200, "NOOP")
		}, log: "data connection stalled: transfer aborted"},
		{name: "server hangs after a stalled transfer", setup: func(f *fakeFTP, c *Config) {
			f.stall, f.stallMum = "f", true
			c.Limits.DataIdleTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			d := dialData(t, c.passive("EPSV"))
			defer d.Close()
			c.cmd(150, "RETR f")
			c.expectWithin(426, 5*time.Second)
			c.expectClosed()
		}, log: "data connection stalled: transfer aborted"},
		{name: "server refuses the transfer", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.passive("EPSV")
			c.cmd(550, "RETR missing")
			c.cmd(200, "NOOP")
		}},
		{name: "server ends the transfer before the data connection", setup: func(f *fakeFTP, c *Config) {
			f.noDial = true
			c.ServerMode = ServerActive
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			ln := c.active("PORT")
			defer ln.Close()
			c.cmd(150, "RETR f")
			c.expect(425)
		}},
		{name: "server closes the control connection after login", setup: func(f *fakeFTP, c *Config) {
			f.script("NOOP", hangUp)
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("NOOP\r\n")
			c.expect(421)
		}},
		{name: "server does not answer a command", setup: func(f *fakeFTP, c *Config) {
			f.script("NOOP", hangOn)
			c.IdleTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("NOOP\r\n")
			c.expectWithin(421, 2*time.Second)
		}},

		// The client misbehaves.
		{name: "client line with NUL", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("NOOP\x00x\r\n")
			c.expect(500)
			c.cmd(200, "NOOP")
		}, log: "bad command line from client"},
		{name: "client line over the limit", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw("NOOP " + strings.Repeat("z", 10000) + "\r\n")
			if msg := c.expect(500); !strings.Contains(msg, "too long") {
				t.Fatalf("500 %q", msg)
			}
			c.cmd(200, "NOOP")
		}},
		{name: "client floods bad lines", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.raw(strings.Repeat("\x00\r\n", 500))
			for range 500 {
				c.expect(500)
			}
			c.cmd(221, "QUIT")
			time.Sleep(100 * time.Millisecond)
			if n := h.logs.FilterMessage("bad command line from client").Len(); n > warnBurst+2 {
				t.Fatalf("%d warnings for 500 bad lines: not rate-limited", n)
			}
		}},
		{name: "PORT to a third host", run: func(t *testing.T, h *harness) {
			h.dial().cmd(501, "PORT 198,51,100,7,200,10")
		}, denial: "bounce"},
		{name: "PORT to a privileged port", run: func(t *testing.T, h *harness) {
			h.dial().cmd(501, "PORT 127,0,0,1,0,25")
		}, denial: "bounce"},
		{name: "EPRT of an unknown family", run: func(t *testing.T, h *harness) {
			h.dial().cmd(522, "EPRT |3|127.0.0.1|5000|")
		}},
		{name: "EPRT malformed", run: func(t *testing.T, h *harness) {
			h.dial().cmd(501, "EPRT |1|127.0.0.1|")
		}},
		{name: "EPSV of an unknown family", run: func(t *testing.T, h *harness) {
			h.dial().cmd(522, "EPSV 3")
		}},
		{name: "PASV after EPSV ALL", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.cmd(200, "EPSV ALL")
			c.cmd(501, "PASV")
		}},
		{name: "transfer without a data command", run: func(t *testing.T, h *harness) {
			h.dial().cmd(425, "RETR f")
		}},
		{name: "data connection from a third host", run: func(t *testing.T, h *harness) {
			c := h.dial()
			ap := c.passive("EPSV")
			thief := dialDataFrom(t, "127.0.0.2", ap)
			defer thief.Close()
			thief.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, _ := thief.Read(make([]byte, 1)); n != 0 {
				t.Fatal("a third host got data")
			}
			d := dialData(t, ap)
			c.cmd(150, "RETR f")
			got, _ := io.ReadAll(d)
			c.expect(226)
			if string(got) != "file" {
				t.Fatalf("the client got %q", got)
			}
		}, log: "data connection refused"},
		{name: "client never connects its data connection", run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.passive("EPSV")
			c.cmd(150, "RETR f")
			c.expect(425)
			if d := h.fw.Dump(); d != "" {
				t.Fatalf("pinhole left:\n%s", d)
			}
		}},
		{name: "PROXY header from an untrusted client", setup: func(f *fakeFTP, c *Config) {
			c.ProxyProtocol = ProxyProtocol{Control: true, Trusted: []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")}}
		}, run: func(t *testing.T, h *harness) {
			c := h.dialOnly("")
			c.expect(220)
			c.raw("PROXY TCP4 198.51.100.1 127.0.0.1 5000 21\r\n")
			c.expect(421)
		}},
		{name: "login timeout counts from the latest USER", setup: func(f *fakeFTP, c *Config) {
			c.LoginTimeout = 600 * time.Millisecond
		}, run: func(t *testing.T, h *harness) {
			c := h.dialOnly("")
			c.expect(220)
			time.Sleep(400 * time.Millisecond)
			c.cmd(331, "USER u")
			time.Sleep(400 * time.Millisecond) // 800 ms after connect, 400 after USER
			c.cmd(200, "NOOP")
			c.expectWithin(421, 2*time.Second)
		}},
		{name: "client leaves during a transfer", setup: func(f *fakeFTP, c *Config) {
			f.slow = "f"
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			d := dialData(t, c.passive("EPSV"))
			c.cmd(150, "RETR f")
			d.Close()
			c.c.Close()
			for deadline := time.Now().Add(5 * time.Second); h.srv.Stats().Sessions > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the session did not end")
				}
			}
		}},
		{name: "client pipelines commands during a transfer", setup: func(f *fakeFTP, c *Config) {
			f.stall = "f"
			c.Limits.DataIdleTimeout = 300 * time.Millisecond
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			d := dialData(t, c.passive("EPSV"))
			defer d.Close()
			c.cmd(150, "RETR f")
			c.raw(strings.Repeat("NOOP\r\n", 40)) // more than the queue holds: the rest waits in TCP
			c.expect(426)
			for range 40 {
				c.expect(200)
			}
		}},

		// Limits.
		{name: "sessions per client", setup: func(f *fakeFTP, c *Config) {
			c.Listen = []string{"127.0.0.1:0"}
			c.Limits.MaxSessionsPerClient = 2
		}, run: func(t *testing.T, h *harness) {
			h.dialFrom("127.0.0.1")
			h.dialFrom("127.0.0.1")
			if msg := h.dialOnly("127.0.0.1").expect(421); !strings.Contains(msg, "Too many connections") {
				t.Fatalf("421 %q", msg)
			}
			if n := h.ftp.connections(); n != 2 {
				t.Fatalf("the server saw %d connections, want 2: the refused one reached it", n)
			}
			h.dialFrom("127.0.0.2") // another client is not affected
		}, denial: "limit", log: "session refused"},
		{name: "sessions in all", setup: func(f *fakeFTP, c *Config) {
			c.Listen = []string{"127.0.0.1:0"}
			c.Limits.MaxSessions = 1
		}, run: func(t *testing.T, h *harness) {
			h.dialFrom("127.0.0.1")
			h.dialOnly("127.0.0.2").expect(421)
		}, denial: "limit"},
		{name: "failed logins cool a client down", setup: func(f *fakeFTP, c *Config) {
			c.Listen = []string{"127.0.0.1:0"}
			c.Limits.MaxLoginFailures = 2
			f.badPass = "wrong"
		}, run: func(t *testing.T, h *harness) {
			for range 2 {
				c := h.dialOnly("127.0.0.1")
				c.expect(220)
				c.cmd(331, "USER u")
				c.cmd(530, "PASS wrong")
				c.cmd(221, "QUIT")
			}
			if msg := h.dialOnly("127.0.0.1").expect(421); !strings.Contains(msg, "failed logins") {
				t.Fatalf("421 %q", msg)
			}
			h.dialFrom("127.0.0.2")
		}, denial: "limit"},
		{name: "upload over the size cap", setup: func(f *fakeFTP, c *Config) {
			c.Limits.MaxUploadSize = 1000
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			d := dialData(t, c.passive("EPSV"))
			c.cmd(150, "STOR up")
			d.Write(big)
			d.Close()
			c.expect(552)
			c.cmd(200, "NOOP")
		}, denial: "limit", log: "upload cut at the size limit"},
		{name: "upload of exactly the size cap", setup: func(f *fakeFTP, c *Config) {
			c.Limits.MaxUploadSize = int64(len(big))
		}, run: func(t *testing.T, h *harness) {
			h.dial().transfer("EPSV", "STOR up", big)
			h.ftp.mu.Lock()
			got := h.ftp.files["up"]
			h.ftp.mu.Unlock()
			if !bytes.Equal(got, big) {
				t.Fatalf("the server stored %d bytes, want %d", len(got), len(big))
			}
		}},

		// Command policy.
		{name: "read-only relay", setup: func(f *fakeFTP, c *Config) {
			c.Policy.Commands.Presets = []string{policy.PresetReadOnly}
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.cmd(550, "STOR x")
			c.cmd(550, "DELE f")
			c.cmd(550, "RNFR f")
			c.cmd(550, "MKD d")
			if got := c.transfer("EPSV", "RETR f", nil); string(got) != "file" {
				t.Fatalf("RETR on a read-only relay: %q", got)
			}
			for _, v := range h.ftp.commands() {
				if v == "STOR" || v == "DELE" || v == "RNFR" || v == "MKD" {
					t.Fatalf("%s reached the server", v)
				}
			}
		}, denial: "policy", log: "command refused by policy"},
		{name: "strict: unknown verbs", setup: func(f *fakeFTP, c *Config) {
			c.Policy.Commands.Presets = []string{policy.PresetStrict}
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.cmd(500, "XYZZY")
			c.cmd(200, "NOOP")
		}, denial: "policy"},
		{name: "SITE allow-list", setup: func(f *fakeFTP, c *Config) {
			c.Policy.Commands.SiteCommands = []string{"CHMOD"}
			f.script("SITE", "200 CHMOD ok\r\n")
		}, run: func(t *testing.T, h *harness) {
			c := h.dial()
			c.cmd(502, "SITE EXEC /bin/sh")
			c.cmd(200, "SITE CHMOD 644 f")
		}, denial: "policy"},
		{name: "client TLS required", setup: func(f *fakeFTP, c *Config) {
			c.Policy.RequireClientTLS = true
		}, run: func(t *testing.T, h *harness) {
			c := h.dialOnly("")
			c.expect(220)
			c.cmd(530, "USER u")
			for _, v := range h.ftp.commands() {
				if v == "USER" {
					t.Fatal("USER reached the server before TLS")
				}
			}
		}, denial: "policy"},
	}
}

// TestHostilePeers runs every misbehaving client and server of
// hostileCases against a real session.
func TestHostilePeers(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 40 {
		t.Fatalf("%d hostile cases; the suite promises at least 40", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Registered first, so it runs last: after the harness has shut
			// down, everything it and the session held must be gone.
			fds := fdCount()
			t.Cleanup(func() {
				goleak.VerifyNone(t, goleak.IgnoreCurrent())
				var now int
				for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					runtime.GC() // splice's pooled pipes close when the pool lets them go
					if now = fdCount(); now <= fds || time.Now().After(deadline) {
						break
					}
				}
				if now > fds {
					t.Errorf("fds: %d before, %d after: %s", fds, now, fdList())
				}
			})
			rec := &recorder{}
			h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) {
				f.files["f"] = []byte("file")
				c.Observer = rec
				if tc.setup != nil {
					tc.setup(f, c)
				}
			})
			tc.run(t, h)
			h.stop()
			<-h.done
			if tc.log != "" && h.logs.FilterMessage(tc.log).Len() == 0 {
				t.Errorf("no %q log record; got %s", tc.log, logMessages(h.logs))
			}
			if tc.denial != "" && rec.count()["denial-"+tc.denial] == 0 {
				t.Errorf("no %s denial reported; events %v", tc.denial, rec.count())
			}
		})
	}
}

func logMessages(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		b.WriteString(e.Message)
		b.WriteString("; ")
	}
	return b.String()
}

// refusedAtTransfer: a logged-in client's passive request is answered at
// once (ftpgate answers ahead of the server); the server's unusable reply
// makes the transfer command fail with 425, and the session goes on.
func refusedAtTransfer(t *testing.T, c *client, verb string) {
	t.Helper()
	code := 229
	if verb == "PASV" {
		code = 227
	}
	c.cmd(code, "%s", verb)
	if msg := c.cmd(425, "RETR f"); !strings.HasPrefix(msg, "Can't open data connection: ") {
		t.Fatalf("425 %q: want why the data connection could not be opened", msg)
	}
	c.cmd(200, "NOOP")
}
