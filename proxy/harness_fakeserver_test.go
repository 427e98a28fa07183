package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
)

// fakeFTP is a small scripted FTP server on loopback for unit tests: it knows
// enough of RFC 959 and 2428 to log in, open data connections both ways, and
// move one file. Real servers are exercised by the e2e suite.
type fakeFTP struct {
	t         *testing.T
	ln        net.Listener
	files     map[string][]byte
	readErr   map[string]error // per STOR: how reading its data connection ended (nil: end of file); under mu
	noEPSV    bool             // answer EPSV with 500
	noEPRT    bool             // answer EPRT with 500
	mu        sync.Mutex
	log       []string // commands received, in order
	wg        sync.WaitGroup
	pasvLie   string        // address to write into 227 replies instead of our own
	noDial    bool          // in active mode, answer 150 and then 425 without connecting
	slow      string        // RETR of this file trickles data until the data connection breaks (for ABOR)
	muteAbo   bool          // never answer ABOR (as pure-ftpd may not after a cut transfer)
	early     bool          // RETR sends all the data and closes the data connection before the 150
	linger    bool          // RETR sends its 226 only once the peer has closed the data connection (ProFTPD's lingering close); 426 if that takes 10s
	resetRetr string        // RETR of this file sends half of it, resets the data connection and answers 426
	gate      chan struct{} // EPSV and PASV are answered only once this is closed (nil: at once)
	pasvAt    string        // the latest passive data listener's address (under mu)

	// Hostile behaviour (hostile_test.go).
	greet    string              // raw bytes instead of the 220 greeting; hangUp closes, hangOn sends nothing
	replies  map[string][]string // raw bytes to answer a verb with, one entry used per command, before the usual answer
	stall    string              // RETR of this file opens the data connection and sends nothing, until it breaks
	stallMum bool                // and then answers nothing (a hung server)
	badPass  string              // PASS with this password gets 530
	accepted int                 // control connections accepted

	// FTPS (RFC 4217), all off without tlsCfg.
	tlsCfg       *tls.Config
	implicitTLS  bool          // TLS from connect (implicit FTPS)
	requireTLS   bool          // USER before AUTH TLS gets 530
	requireReuse bool          // a protected data connection must resume a TLS session (vsftpd require_ssl_reuse)
	secureCmds   []string      // commands received over TLS
	dataTLS      []string      // per protected data connection: "resumed" or "full"
	slowStore    time.Duration // STOR waits this long before reading the data connection, after
	// sending a record on it, as an OpenSSL server's session tickets arrive after the handshake
}

func newFakeFTP(t *testing.T) *fakeFTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFTP{t: t, ln: ln, files: map[string][]byte{}, readErr: map[string]error{}}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeFTP) addr() string { return f.ln.Addr().String() }

func (f *fakeFTP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeFTP) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.session(c)
		}()
	}
}

// errNoReuse: a protected data connection did not resume a TLS session.
var errNoReuse = errors.New("TLS session reuse required")

// secureData puts the server side of TLS on a data connection.
func (f *fakeFTP) secureData(d net.Conn) (net.Conn, error) {
	td := tls.Server(d, f.tlsCfg)
	td.SetDeadline(time.Now().Add(5 * time.Second))
	if err := td.Handshake(); err != nil {
		d.Close()
		return nil, err
	}
	td.SetDeadline(time.Time{})
	resumed := td.ConnectionState().DidResume
	f.mu.Lock()
	f.dataTLS = append(f.dataTLS, map[bool]string{true: "resumed", false: "full"}[resumed])
	f.mu.Unlock()
	if f.requireReuse && !resumed {
		td.Close()
		return nil, errNoReuse
	}
	return td, nil
}

// configure changes the TLS settings of a serving fake; sessions read them
// under the same lock (nothing else orders them with a test's writes).
func (f *fakeFTP) configure(change func(*fakeFTP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeFTP) session(c net.Conn) {
	secure, protP := false, false
	f.mu.Lock()
	implicit := f.implicitTLS
	f.mu.Unlock()
	if implicit {
		tc := tls.Server(c, f.tlsCfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		c, secure = tc, true
	}
	r := bufio.NewReader(c)
	say := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	f.mu.Lock()
	f.accepted++
	greet := f.greet
	f.mu.Unlock()
	switch greet {
	case "":
		say("220 fake FTP ready")
	case hangUp:
		return
	case hangOn:
	default:
		io.WriteString(c, greet)
	}
	var pasv net.Listener
	var active string
	cwd := "/home/u"
	defer func() {
		if pasv != nil {
			pasv.Close()
		}
	}()
	dataConn := func() (net.Conn, error) {
		if pasv != nil {
			d, err := pasv.Accept()
			pasv.Close()
			pasv = nil
			return d, err
		}
		if active != "" {
			return net.Dial("tcp", active)
		}
		return nil, fmt.Errorf("no data connection")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		for len(line) > 0 && (line[0] == 0xff || line[0] == 0xf4 || line[0] == 0xf2) {
			line = line[1:] // Telnet IAC IP IAC DM before ABOR
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		f.mu.Lock()
		f.log = append(f.log, verb)
		if secure {
			f.secureCmds = append(f.secureCmds, verb)
		}
		var raw string
		if q := f.replies[verb]; len(q) > 0 {
			raw, f.replies[verb] = q[0], q[1:]
		}
		badPass := f.badPass
		f.mu.Unlock()
		switch raw {
		case "":
		case hangUp:
			return
		case hangOn:
			continue
		default:
			io.WriteString(c, raw)
			continue
		}
		switch verb {
		case "PROXY": // a PROXY protocol v1 header: like servers that accept them, no reply
		case "AUTH":
			if f.tlsCfg == nil || secure {
				say("502 AUTH not available")
				continue
			}
			say("234 AUTH TLS ok")
			tc := tls.Server(c, f.tlsCfg)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, secure = tc, true
			r = bufio.NewReader(c)
		case "PBSZ":
			say("200 PBSZ=0")
		case "PROT":
			if !secure {
				say("503 PROT needs AUTH")
				continue
			}
			protP = strings.EqualFold(arg, "P")
			say("200 PROT %s ok", arg)
		case "USER":
			if f.requireTLS && !secure {
				say("530 TLS required")
				continue
			}
			say("331 password please")
		case "PASS":
			if badPass != "" && arg == badPass {
				say("530 Login incorrect.")
				continue
			}
			say("230 logged in")
		case "FEAT":
			say("211-Features:\r\n EPSV\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n SIZE\r\n UTF8\r\n211 End")
		case "TYPE", "MODE", "STRU":
			say("200 ok")
		case "REST":
			say("350 restarting at %s", arg)
		case "EPSV", "PASV":
			if f.gate != nil {
				<-f.gate
			}
			if verb == "EPSV" && f.noEPSV {
				say("500 EPSV not understood")
				continue
			}
			if pasv != nil {
				pasv.Close()
			}
			pasv, _ = net.Listen("tcp", "127.0.0.1:0")
			f.mu.Lock()
			f.pasvAt = pasv.Addr().String()
			f.mu.Unlock()
			port := pasv.Addr().(*net.TCPAddr).Port
			if verb == "EPSV" {
				say("229 Entering Extended Passive Mode (|||%d|)", port)
			} else {
				host := "127,0,0,1"
				if f.pasvLie != "" {
					host = f.pasvLie
				}
				say("227 Entering Passive Mode (%s,%d,%d).", host, port>>8, port&255)
			}
		case "EPRT", "PORT":
			if verb == "EPRT" && f.noEPRT {
				say("500 EPRT not understood")
				continue
			}
			var ap netip.AddrPort
			if verb == "EPRT" {
				ap, err = rewrite.ParseEPRT(arg)
			} else {
				ap, err = rewrite.ParsePORT(arg)
			}
			if err != nil {
				say("501 bad address")
				continue
			}
			active = ap.String()
			say("200 %s ok", verb)
		case "RETR", "LIST":
			f.mu.Lock()
			data, ok := f.files[arg]
			f.mu.Unlock()
			if verb == "LIST" {
				data, ok = []byte("-rw-r--r-- 1 ftp ftp 5 Jan 1 00:00 hello.txt\r\n"), true
			}
			if !ok {
				say("550 no such file")
				continue
			}
			if f.noDial && active != "" {
				say("150 opening data connection")
				say("425 could not connect")
				continue
			}
			d, err := dataConn()
			if err != nil {
				say("425 no data connection")
				continue
			}
			f.mu.Lock()
			early := f.early && !protP
			f.mu.Unlock()
			if early { // on loopback the bytes and the FIN are queued at the peer before the 150 leaves
				d.Write(data)
				d.Close()
				say("150 opening data connection for %s (%d bytes)", arg, len(data))
				say("226 transfer complete")
				continue
			}
			say("150 opening data connection for %s (%d bytes)", arg, len(data))
			if protP {
				if d, err = f.secureData(d); err != nil {
					say("522 data TLS: %v", err)
					continue
				}
			}
			if f.stall != "" && arg == f.stall {
				io.Copy(io.Discard, d) // nothing sent, until the peer goes
				d.Close()
				if !f.stallMum {
					say("426 connection closed")
				}
				continue
			}
			if f.slow != "" && arg == f.slow {
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := d.Write(data); err != nil {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				d.Close()
				say("426 transfer aborted")
				continue
			}
			if f.resetRetr != "" && arg == f.resetRetr { // half the file, then a reset: the server failed
				d.Write(data[:len(data)/2])
				time.Sleep(50 * time.Millisecond) // the half is read: a reset drops what its receiver has not read
				if tc, ok := d.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
				d.Close()
				say("426 transfer failed")
				continue
			}
			if f.linger {
				d.Write(data)
				d.(*net.TCPConn).CloseWrite()
				d.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, d)
				d.Close()
				if err != nil {
					say("426 lingering close: %v", err)
				} else {
					say("226 transfer complete")
				}
				continue
			}
			d.Write(data)
			d.Close()
			say("226 transfer complete")
		case "STOR":
			d, err := dataConn()
			if err != nil {
				say("425 no data connection")
				continue
			}
			say("150 ok to send data")
			if protP {
				if d, err = f.secureData(d); err != nil {
					say("522 data TLS: %v", err)
					continue
				}
			}
			f.mu.Lock()
			slow := f.slowStore
			f.mu.Unlock()
			if slow > 0 {
				d.Write([]byte("unsolicited"))
				time.Sleep(slow)
			}
			b, rerr := io.ReadAll(d)
			d.Close()
			f.mu.Lock()
			f.files[arg], f.readErr[arg] = b, rerr
			f.mu.Unlock()
			say("226 transfer complete")
		case "ABOR":
			if !f.muteAbo {
				say("226 ABOR ok")
			}
		case "NOOP":
			say("200 NOOP ok")
		case "PWD":
			say("257 \"%s\" is the current directory", cwd)
		case "CWD":
			cwd = path.Join(cwd, arg)
			if strings.HasPrefix(arg, "/") {
				cwd = path.Clean(arg)
			}
			say("250 directory changed")
		case "CDUP":
			cwd = path.Dir(cwd)
			say("200 directory changed")
		case "DELE":
			f.mu.Lock()
			_, ok := f.files[arg]
			delete(f.files, arg)
			f.mu.Unlock()
			if ok {
				say("250 deleted")
			} else {
				say("550 no such file")
			}
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 %s not implemented", verb)
		}
	}
}

// Special values of fakeFTP.greet and fakeFTP.replies entries.
const (
	hangUp = "\x00hang up" // close the control connection
	hangOn = "\x00hang on" // send nothing at all
)

// script sets hostile answers of the fake, each used once, in order.
func (f *fakeFTP) script(verb string, raw ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replies == nil {
		f.replies = map[string][]string{}
	}
	f.replies[verb] = append(f.replies[verb], raw...)
}

// connections is how many control connections the fake accepted.
func (f *fakeFTP) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}
