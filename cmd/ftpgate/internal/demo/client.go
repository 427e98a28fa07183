package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"
)

// Client steps: what one __demo-client run does.
const (
	stepGetPASV = "get-pasv" // passive download with PASV (227)
	stepGetPORT = "get-port" // active download with PORT
	stepPutEPSV = "put-epsv" // passive upload with EPSV (229)
)

// ClientMain is the hidden sub-command __demo-client: one FTP step from the
// client namespace, with github.com/jlaffaye/ftp for passive transfers and a
// few lines of net/textproto for PORT, which that library does not speak.
// It reports on stdout as JSON lines what it sent and received.
func ClientMain(args []string) int {
	fs := flag.NewFlagSet("__demo-client", flag.ContinueOnError)
	var c client
	fs.StringVar(&c.step, "step", "", "get-pasv, get-port or put-epsv")
	fs.StringVar(&c.server, "server", "", "control address HOST:PORT")
	fs.StringVar(&c.file, "file", "", "remote file name")
	fs.Int64Var(&c.size, "size", 0, "put: bytes to upload")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "connect and data timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.out = newEmitter(os.Stdout)
	start := time.Now()
	var err error
	switch c.step {
	case stepGetPASV:
		err = c.getPassive()
	case stepPutEPSV:
		err = c.putPassive()
	case stepGetPORT:
		err = c.getActive()
	default:
		err = fmt.Errorf("unknown step %q", c.step)
	}
	if err != nil {
		c.out.emit(event{Ev: "error", Text: err.Error(), Secs: time.Since(start).Seconds()})
		return 1
	}
	return 0
}

type client struct {
	step, server, file string
	size               int64
	timeout            time.Duration
	out                *emitter
}

// dial opens the control connection (first call, tapped so that passive
// replies are reported as received) and then data connections (reported).
func (c *client) dialFunc() func(network, addr string) (net.Conn, error) {
	var once sync.Once
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: c.timeout}
		control := false
		once.Do(func() { control = true })
		if !control {
			c.out.emit(event{Ev: "dial", Addr: addr})
		}
		conn, err := d.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		if control {
			return &replyTap{Conn: conn, out: c.out}, nil
		}
		return conn, nil
	}
}

func (c *client) login(epsv bool) (*ftp.ServerConn, error) {
	conn, err := ftp.Dial(c.server, ftp.DialWithDialFunc(c.dialFunc()), ftp.DialWithDisabledEPSV(!epsv),
		ftp.DialWithTimeout(c.timeout))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.server, err)
	}
	if err := conn.Login(demoUser, demoPass); err != nil {
		conn.Quit()
		return nil, fmt.Errorf("login: %w", err)
	}
	return conn, nil
}

func (c *client) getPassive() error {
	conn, err := c.login(false)
	if err != nil {
		return err
	}
	defer conn.Quit()
	start := time.Now()
	r, err := conn.Retr(c.file)
	if err != nil {
		return fmt.Errorf("RETR %s: %w", c.file, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if cerr := r.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("after RETR %s: %w", c.file, cerr)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", c.file, err)
	}
	c.done(n, start, h)
	return nil
}

func (c *client) putPassive() error {
	conn, err := c.login(true)
	if err != nil {
		return err
	}
	defer conn.Quit()
	random, err := randomBytes(c.size)
	if err != nil {
		return err
	}
	h := sha256.New()
	src := io.TeeReader(random, h)
	start := time.Now()
	if err := conn.Stor(c.file, src); err != nil {
		return fmt.Errorf("STOR %s: %w", c.file, err)
	}
	c.done(c.size, start, h)
	return nil
}

func (c *client) done(n int64, start time.Time, h hash.Hash) {
	c.out.emit(event{Ev: "done", Bytes: n, Secs: time.Since(start).Seconds(), Sum: hex.EncodeToString(h.Sum(nil))})
}

// getActive downloads with PORT: the client listens, the other side
// connects. jlaffaye/ftp has no active mode, so this speaks the few lines
// itself.
func (c *client) getActive() error {
	raw, err := net.DialTimeout("tcp", c.server, c.timeout)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.server, err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(4 * c.timeout))
	tc := textproto.NewConn(raw)
	expect := func(code int, format string, args ...any) (string, error) {
		if format != "" {
			if err := tc.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		_, msg, err := tc.ReadResponse(code)
		return msg, err
	}
	if _, err := expect(220, ""); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := expect(331, "USER %s", demoUser); err != nil {
		return fmt.Errorf("USER: %w", err)
	}
	if _, err := expect(230, "PASS %s", demoPass); err != nil {
		return fmt.Errorf("PASS: %w", err)
	}
	if _, err := expect(200, "TYPE I"); err != nil {
		return fmt.Errorf("TYPE I: %w", err)
	}
	local := raw.LocalAddr().(*net.TCPAddr).IP
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: local})
	if err != nil {
		return fmt.Errorf("data listener: %w", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ip4 := local.To4()
	arg := fmt.Sprintf("%d,%d,%d,%d,%d,%d", ip4[0], ip4[1], ip4[2], ip4[3], port>>8, port&0xff)
	c.out.emit(event{Ev: "cmd", Verb: "PORT", Arg: arg})
	msg, err := expect(200, "PORT %s", arg)
	if err != nil {
		return fmt.Errorf("PORT: %w", err)
	}
	c.out.emit(event{Ev: "reply", Code: 200, Text: msg})
	start := time.Now()
	if _, err := expect(150, "RETR %s", c.file); err != nil {
		return fmt.Errorf("RETR %s: %w", c.file, err)
	}
	_ = l.SetDeadline(time.Now().Add(c.timeout))
	dc, err := l.AcceptTCP()
	if err != nil {
		return fmt.Errorf("wait for the data connection: %w", err)
	}
	c.out.emit(event{Ev: "accept", Addr: dc.RemoteAddr().String()})
	h := sha256.New()
	n, err := io.Copy(h, dc)
	dc.Close()
	if err != nil {
		return fmt.Errorf("download %s: %w", c.file, err)
	}
	if _, err := expect(226, ""); err != nil {
		return fmt.Errorf("after RETR %s: %w", c.file, err)
	}
	c.done(n, start, h)
	_, _ = expect(221, "QUIT")
	return nil
}

// replyTap reports the passive replies (227, 229) read on the control
// connection, as the client received them.
type replyTap struct {
	net.Conn
	out  *emitter
	line []byte
}

func (t *replyTap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	t.line = append(t.line, p[:n]...)
	for {
		i := bytes.IndexByte(t.line, '\n')
		if i < 0 {
			break
		}
		t.report(strings.TrimRight(string(t.line[:i]), "\r"))
		t.line = t.line[i+1:]
	}
	if len(t.line) > 4096 { // not a reply line; drop it
		t.line = t.line[:0]
	}
	return n, err
}

func (t *replyTap) report(line string) {
	code, text, ok := strings.Cut(line, " ")
	if !ok || (code != "227" && code != "229") {
		return
	}
	n, _ := strconv.Atoi(code)
	t.out.emit(event{Ev: "reply", Code: n, Text: text})
}
