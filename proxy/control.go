package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap"
)

// control is a session's control channel as one FTP conversation: the two
// connections, their framing (a reader goroutine and a writer on each) and
// the pipeline of commands and replies between them. The session above it
// holds the state and makes the decisions; it never formats a line itself.
//
// The readers hand every command and reply to the session's loop over
// channels, so that the loop can wait for a client command and a server reply
// at once (a server may speak unasked, a client may ABOR mid-transfer). Around
// AUTH and CCC a reader pauses until the loop has changed the stream under it
// (sessionTLS's switch channels).
type control struct {
	client, server *net.TCPConn
	cw, sw         *rewrite.Writer
	cmds           chan *cmdEvent // by pointer: a small frame where an idle session waits
	replies        chan replyEvent
	queued         []*cmdEvent    // client commands that came while a transfer ran
	readers        sync.WaitGroup // the two reader goroutines
	wait           *time.Timer    // the loop's one wait timer (waitTimer)

	lastCode int // the code of the latest reply written to the client, for records

	limits  rewrite.Limits
	timeout time.Duration // write deadline and reply wait: the idle timeout
	log     *zap.Logger
}

func newControl(client *net.TCPConn, limits rewrite.Limits, timeout time.Duration, log *zap.Logger) *control {
	return &control{
		client:  client,
		cw:      rewrite.NewWriter(client),
		cmds:    make(chan *cmdEvent),
		replies: make(chan replyEvent),
		limits:  limits,
		timeout: timeout,
		log:     log,
	}
}

// attachServer makes c the server end of the conversation.
func (c *control) attachServer(server *net.TCPConn) {
	c.server = server
	c.sw = rewrite.NewWriter(server)
}

// maxQueued bounds the client commands held while a transfer runs.
const maxQueued = 16

type cmdEvent struct {
	cmd rewrite.Command
	err error
}

type replyEvent struct {
	reply *rewrite.Reply
	err   error
}

// dequeue returns the first of the commands queued while a transfer ran.
func (c *control) dequeue() *cmdEvent {
	ev := c.queued[0]
	c.queued = c.queued[1:]
	return ev
}

// startClientReader starts the goroutine that reads client commands for
// the loop until the session ends; startServerReader the one for server
// replies. session.end waits for both.
func (c *control) startClientReader(ctx context.Context, t *sessionTLS) {
	c.readers.Add(1)
	go c.readClient(ctx, t, rewrite.NewReader(t.clientStream(c.client), c.limits))
}

func (c *control) startServerReader(ctx context.Context, t *sessionTLS) {
	c.readers.Add(1)
	go c.readServer(ctx, t, rewrite.NewReader(t.serverStream(c.server), c.limits))
}

// An idle session's readers wait in r.Wait, and the frames beneath it are
// kept small: the reading and handing over happen in functions that return
// before the next wait, and the goroutines start bare (no closure, no
// errgroup). So a reader's stack, parked and while it reads a command or
// reply, fits the runtime's smallest (2 KiB); a stack that grows once never
// shrinks back (the runtime counts 800 bytes of it as always in use), and
// at 8,000 idle sessions two readers each at 4 KiB is 32 MiB more.

// readClient reads client commands for the loop until the session ends.
func (c *control) readClient(ctx context.Context, t *sessionTLS, r *rewrite.Reader) {
	defer c.readers.Done()
	for r != nil {
		r.Wait()
		r = c.handCommand(ctx, t, r, readCommand(r))
	}
}

// readCommand reads one client command. Not inlined: in readClient's frame
// the command's value would sit under every frame ReadCommand puts on the
// stack.
//
//go:noinline
func readCommand(r *rewrite.Reader) *cmdEvent {
	ev := new(cmdEvent)
	ev.cmd, ev.err = r.ReadCommand()
	return ev
}

// handCommand hands the loop a command read. It returns the reader of the
// command after it (a new one after AUTH or CCC), or nil when the session
// or the stream ends.
func (c *control) handCommand(ctx context.Context, t *sessionTLS, r *rewrite.Reader, ev *cmdEvent) *rewrite.Reader {
	pause := ev.err == nil && pausesReader(ev.cmd) // the loop may put TLS under us (AUTH) or take it away (CCC)
	if pause {
		t.pipelined.Store(int64(r.Buffered()))
	}
	stop := ev.err != nil && !recoverable(ev.err)
	select {
	case c.cmds <- ev:
	case <-ctx.Done():
		return nil
	}
	switch {
	case stop:
		return nil
	case pause:
		return c.awaitRelease(ctx, r, t.clientSwitch)
	}
	return r
}

// readServer reads server replies for the loop until the session ends.
func (c *control) readServer(ctx context.Context, t *sessionTLS, r *rewrite.Reader) {
	defer c.readers.Done()
	for r != nil {
		r.Wait()
		rep, err := r.ReadReply()
		r = c.handReply(ctx, t, r, replyEvent{rep, err})
	}
}

// handReply hands the loop a reply read; it returns what handCommand does.
func (c *control) handReply(ctx context.Context, t *sessionTLS, r *rewrite.Reader, ev replyEvent) *rewrite.Reader {
	pause := ev.err == nil && ev.reply.Code == 234 && t.authPending.Load() // the loop puts TLS under us
	if pause {
		t.serverBuffered.Store(int64(r.Buffered()))
	}
	select {
	case c.replies <- ev:
	case <-ctx.Done():
		return nil
	}
	switch {
	case ev.err != nil:
		return nil
	case pause:
		return c.awaitRelease(ctx, r, t.serverSwitch)
	}
	return r
}

// recoverable reports whether a client read error leaves the stream usable:
// the reader has skipped the bad line and can go on.
func recoverable(err error) bool {
	var pe *rewrite.ProtocolError
	return errors.Is(err, rewrite.ErrLineTooLong) || errors.As(err, &pe)
}

// reply writes a reply to the client.
func (c *control) reply(r *rewrite.Reply) error {
	c.lastCode = r.Code
	c.client.SetWriteDeadline(time.Now().Add(c.timeout))
	if err := c.cw.WriteReply(r); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// replyf writes a one-line reply of our own to the client.
func (c *control) replyf(code int, format string, args ...any) error {
	return c.reply(rewrite.NewReply(code, fmt.Sprintf(format, args...)))
}

// send writes a command to the server.
func (c *control) send(cmd rewrite.Command) error {
	c.server.SetWriteDeadline(time.Now().Add(c.timeout))
	if err := c.sw.WriteCommand(cmd); err != nil {
		return fmt.Errorf("write to server: %w", err)
	}
	return nil
}

// waitTimer returns the loop's timer, set to fire after d; the caller stops
// it when its wait is over. The loop waits for one thing at a time (the
// next command, a server reply), so one timer serves every such wait of the
// session: a new timer per wait left, for each command, a stopped timer in
// the runtime's timer heap until its time (the idle timeout) came.
func (c *control) waitTimer(d time.Duration) *time.Timer {
	if c.wait == nil {
		c.wait = time.NewTimer(d)
	} else {
		c.wait.Reset(d) // a stopped timer's channel holds no stale tick (Go 1.23 timers)
	}
	return c.wait
}

// serverReply waits for the server's next reply. A 421 is passed to the
// client and ends the session.
func (c *control) serverReply(ctx context.Context, timeout time.Duration) (*rewrite.Reply, error) {
	t := c.waitTimer(timeout)
	defer t.Stop()
	select {
	case ev := <-c.replies:
		if ev.err != nil {
			return nil, c.serverBroke(ev.err)
		}
		if ev.reply.Code == 421 {
			c.reply(ev.reply)
			return nil, fmt.Errorf("server closing: %w", errSessionEnd)
		}
		return ev.reply, nil
	case <-t.C:
		c.replyf(421, "Timeout waiting for the FTP server.")
		return nil, fmt.Errorf("waiting for a server reply: %w", errTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// serverBroke turns a server read error into the session's end, telling the
// client why.
func (c *control) serverBroke(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		c.replyf(421, "The FTP server closed the connection.")
		return fmt.Errorf("server closed the control connection: %w", errSessionEnd)
	}
	if pe := (*rewrite.ProtocolError)(nil); errors.As(err, &pe) && strings.HasPrefix(pe.Line, "SSH-") {
		c.log.Error("the upstream speaks SSH, not FTP: ftpgate proxies FTP and FTPS, not SFTP or SCP", zap.String("greeting", pe.Line))
		c.replyf(421, "Service not available: the server speaks SSH (SFTP/SCP), and this is an FTP gateway.")
		return fmt.Errorf("upstream is an SSH server: %w", err)
	}
	c.log.Warn("server broke the protocol", zap.Error(err))
	c.replyf(421, "The FTP server sent an invalid reply.")
	return fmt.Errorf("server protocol error: %w", err)
}

// relayReplies forwards server replies to the client until a final (2xx-5xx)
// reply, and returns that. guard may replace a reply before the client sees
// it; nil relays every reply as it came.
func (c *control) relayReplies(ctx context.Context, guard func(*rewrite.Reply) *rewrite.Reply) (*rewrite.Reply, error) {
	for {
		rep, err := c.serverReply(ctx, c.timeout)
		if err != nil {
			return nil, err
		}
		if guard != nil {
			rep = guard(rep)
		}
		if err := c.reply(rep); err != nil {
			return nil, err
		}
		if rep.Code >= 200 {
			return rep, nil
		}
	}
}

// exchange sends a command of our own and returns the server's final reply.
func (c *control) exchange(ctx context.Context, verb, arg string) (*rewrite.Reply, error) {
	return c.exchangeWhile(ctx, verb, arg, nil)
}

// exchangeWhile is exchange that runs meanwhile (unless nil) after sending,
// while the server is on its way to answer: work that does not depend on
// the answer leaves the round trip's path.
func (c *control) exchangeWhile(ctx context.Context, verb, arg string, meanwhile func()) (*rewrite.Reply, error) {
	if err := c.send(rewrite.Command{Verb: verb, Arg: arg}); err != nil {
		return nil, err
	}
	if meanwhile != nil {
		meanwhile()
	}
	for {
		rep, err := c.serverReply(ctx, c.timeout)
		if err != nil {
			return nil, err
		}
		if rep.Code >= 200 {
			return rep, nil
		}
	}
}

// pausesReader reports whether the client reader must wait for the loop
// after delivering cmd, because the loop may change the stream under it.
func pausesReader(cmd rewrite.Command) bool { return cmd.Verb == "AUTH" || cmd.Verb == "CCC" }

// awaitRelease is a paused reader waiting for the loop: it returns a reader
// of the new stream, r itself to carry on, or nil when the session ends.
func (c *control) awaitRelease(ctx context.Context, r *rewrite.Reader, ch <-chan net.Conn) *rewrite.Reader {
	select {
	case next := <-ch:
		if next == nil {
			return r
		}
		return rewrite.NewReader(next, c.limits)
	case <-ctx.Done():
		return nil
	}
}

// releaseReader hands a paused reader its next stream (nil: the same as before).
func releaseReader(ctx context.Context, ch chan<- net.Conn, next net.Conn) {
	select {
	case ch <- next:
	case <-ctx.Done():
	}
}
