package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ftpgate/ftpgate/proxy"
	"go.uber.org/zap"
)

// sinkQueue is how many events a file sink holds for its writer before it
// drops (and counts) new ones.
const sinkQueue = 4096

// logSink is a proxy.Observer that writes one line per event it accepts to
// a file: the audit log (JSON lines) and the xferlog.
//
// Observe never blocks a session: it hands the event to a buffered channel
// and, when the channel is full, drops the record and counts it. One writer
// goroutine formats the events and writes them through a buffer, flushing
// whenever the queue runs empty. A mutex around a buffered write would be
// simpler, but a file write can stall for seconds (a full disk, a slow
// network file system, a stopped log shipper on a FIFO), and every session
// would then queue behind the mutex; a dropped audit record is counted
// (ftpgate_audit_records_dropped_total) and logged, a stalled transfer is
// not acceptable.
//
// Reopen (SIGUSR1, after logrotate renamed the file) is done by the writer
// goroutine itself, between two records.
type logSink struct {
	name   string // "audit" or "xferlog": the metric label and log field
	path   string
	accept func(proxy.Event) bool                  // cheap, on the session's goroutine
	format func(buf []byte, ev proxy.Event) []byte // appends one line, or nothing; on the writer goroutine
	log    *zap.Logger

	events chan proxy.Event
	reopen chan chan error
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once

	dropped     atomic.Uint64 // records not queued: the writer was behind
	writeErrors atomic.Uint64 // records lost to a failed write
}

var _ proxy.Observer = (*logSink)(nil)

// newLogSink returns a sink that is not writing yet; start opens its file.
func newLogSink(name, path string, queue int, accept func(proxy.Event) bool, format func([]byte, proxy.Event) []byte, log *zap.Logger) *logSink {
	return &logSink{
		name: name, path: path, accept: accept, format: format, log: log.With(zap.String("sink", name), zap.String("file", path)),
		events: make(chan proxy.Event, queue),
		reopen: make(chan chan error),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// start opens the sink's file for appending and starts its writer.
func (s *logSink) start() error {
	f, err := openAppend(s.path)
	if err != nil {
		return fmt.Errorf("%s log: %w", s.name, err)
	}
	go s.run(f)
	return nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Observe queues ev for the writer, or drops it if the queue is full.
func (s *logSink) Observe(ev proxy.Event) {
	if !s.accept(ev) {
		return
	}
	select {
	case s.events <- ev:
	default:
		s.dropped.Add(1)
	}
}

// Reopen closes the file and opens the same path again, so that a file
// renamed by logrotate is left behind and new records go to a new file. On
// error the sink keeps writing to the file it had.
func (s *logSink) Reopen() error {
	reply := make(chan error, 1)
	select {
	case s.reopen <- reply:
		return <-reply
	case <-s.done:
		return fmt.Errorf("%s log: closed", s.name)
	}
}

// Close writes what is queued, closes the file and stops the writer. Events
// observed afterwards are dropped.
func (s *logSink) Close() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// run is the writer goroutine: it owns f and the buffer.
func (s *logSink) run(f *os.File) {
	defer close(s.done)
	w := &sinkWriter{sink: s, f: f, buf: bufio.NewWriterSize(f, 64<<10)}
	for {
		select {
		case ev := <-s.events:
			w.write(ev)
			for n := len(s.events); n > 0; n-- {
				w.write(<-s.events)
			}
			w.flush()
		case reply := <-s.reopen:
			w.flush()
			nf, err := openAppend(s.path)
			if err != nil {
				reply <- fmt.Errorf("reopen %s log: %w", s.name, err)
				continue
			}
			if err := w.f.Close(); err != nil {
				s.log.Warn("close rotated log file", zap.Error(err))
			}
			w.f = nf
			w.buf.Reset(nf)
			reply <- nil
		case <-s.quit:
			for n := len(s.events); n > 0; n-- {
				w.write(<-s.events)
			}
			w.flush()
			if err := w.f.Close(); err != nil {
				s.log.Error("close log file", zap.Error(err))
			}
			return
		}
	}
}

// sinkWriter is the writer goroutine's state.
type sinkWriter struct {
	sink     *logSink
	f        *os.File
	buf      *bufio.Writer
	line     []byte
	pending  uint64 // records in buf since the last good flush
	failing  bool   // the last write failed (logged once until one succeeds)
	lastDrop uint64 // dropped count already logged
}

func (w *sinkWriter) write(ev proxy.Event) {
	w.line = w.sink.format(w.line[:0], ev)
	if len(w.line) == 0 {
		return
	}
	w.pending++
	if _, err := w.buf.Write(w.line); err != nil {
		w.failed(err)
	}
}

func (w *sinkWriter) flush() {
	if err := w.buf.Flush(); err != nil {
		w.failed(err)
		return
	}
	w.pending = 0
	if w.failing {
		w.failing = false
		w.sink.log.Info("log writes succeed again")
	}
	if d := w.sink.dropped.Load(); d != w.lastDrop {
		w.sink.log.Warn("log records dropped: the writer fell behind", zap.Uint64("dropped_total", d))
		w.lastDrop = d
	}
}

// failed counts the records lost with the buffer and clears its error, so
// that the next record is tried again.
func (w *sinkWriter) failed(err error) {
	w.sink.writeErrors.Add(w.pending)
	w.pending = 0
	w.buf.Reset(w.f)
	if !w.failing {
		w.failing = true
		w.sink.log.Error("log write failed; records are lost until writes succeed", zap.Error(err))
	}
}

// reopenOnSignal reopens every sink on SIGUSR1 (logrotate's postrotate).
// SIGUSR1 is caught even with no sink: its default action would end the
// process. The returned func stops listening.
func reopenOnSignal(sinks []*logSink, log *zap.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ch:
				if len(sinks) == 0 {
					log.Info("SIGUSR1: no audit log or xferlog to reopen")
				}
				for _, s := range sinks {
					if err := s.Reopen(); err != nil {
						log.Error("SIGUSR1: reopen log", zap.Error(err))
						continue
					}
					log.Info("SIGUSR1: log reopened", zap.String("sink", s.name), zap.String("file", s.path))
				}
			case <-quit:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(quit)
		<-done
	}
}

// fanout tells every one of its Observers each event, in order.
type fanout []proxy.Observer

func (f fanout) Observe(ev proxy.Event) {
	for _, o := range f {
		o.Observe(ev)
	}
}

// newFanout combines observers, leaving out nil ones.
func newFanout(obs ...proxy.Observer) proxy.Observer {
	var f fanout
	for _, o := range obs {
		if o != nil {
			f = append(f, o)
		}
	}
	switch len(f) {
	case 0:
		return proxy.NopObserver{}
	case 1:
		return f[0]
	}
	return f
}

// observers is what cmdRun wires into the proxy: the metrics and the audit
// and xferlog sinks that the configuration names.
type observers struct {
	metrics *metrics
	sinks   []*logSink
}

// openObservers builds the metrics and opens the sinks; an empty path means
// no such sink.
func openObservers(auditPath, xferlogPath string, log *zap.Logger) (*observers, error) {
	o := &observers{metrics: newMetrics()}
	if auditPath != "" {
		o.sinks = append(o.sinks, newAuditSink(auditPath, log))
	}
	if xferlogPath != "" {
		o.sinks = append(o.sinks, newXferlogSink(xferlogPath, time.Local, log))
	}
	for i, s := range o.sinks {
		if err := s.start(); err != nil {
			for _, started := range o.sinks[:i] {
				started.Close()
			}
			return nil, err
		}
	}
	o.metrics.watchSinks(o.sinks...)
	return o, nil
}

// observer is the proxy.Observer of them all.
func (o *observers) observer() proxy.Observer {
	obs := []proxy.Observer{o.metrics}
	for _, s := range o.sinks {
		obs = append(obs, s)
	}
	return newFanout(obs...)
}

// close flushes and closes the sinks; call it once the proxy has stopped.
func (o *observers) close() {
	for _, s := range o.sinks {
		s.Close()
	}
}

// newAuditSink is the --audit-log sink: one JSON object per line for every
// transfer (failed and refused ones too), file-changing command, denial,
// refused data connection, session start and end, and reload.
func newAuditSink(path string, log *zap.Logger) *logSink {
	return newLogSink("audit", path, sinkQueue, auditAccepts, appendAuditRecord, log)
}

func auditAccepts(ev proxy.Event) bool {
	switch ev.(type) {
	case proxy.TransferEvent, proxy.FileCommandEvent, proxy.DenialEvent, proxy.DataRefusedEvent,
		proxy.SessionStartEvent, proxy.SessionEndEvent, proxy.ReloadEvent:
		return true
	}
	return false
}

// The audit records. Each begins with its head; times are UTC; addresses
// are "ip:port", IPv4-mapped IPv6 addresses written as IPv4; an unknown
// address, session or user is left out.
type (
	recordHead struct {
		Time    time.Time      `json:"time"`
		Type    string         `json:"type"`
		Session uint64         `json:"session,omitempty"`
		Client  netip.AddrPort `json:"client,omitzero"`
		User    string         `json:"user,omitempty"`
	}
	transferRecord struct {
		recordHead
		Server     netip.AddrPort `json:"server,omitzero"`
		Verb       string         `json:"verb"`
		Path       string         `json:"path,omitempty"`
		Direction  string         `json:"direction"`
		Bytes      int64          `json:"bytes"`
		Duration   float64        `json:"duration_seconds"`
		Code       int            `json:"code"`
		Result     string         `json:"result"`
		Cause      string         `json:"cause,omitempty"`
		ClientMode string         `json:"client_mode,omitempty"`
		ServerMode string         `json:"server_mode,omitempty"`
		TLS        bool           `json:"tls"`
		DataType   string         `json:"data_type"` // the TYPE in force: "A" (ASCII) or "I" (image)
	}
	fileCommandRecord struct {
		recordHead
		Verb   string `json:"verb"`
		Path   string `json:"path,omitempty"`
		Code   int    `json:"code"`
		Result string `json:"result"`
	}
	denialRecord struct {
		recordHead
		Kind   string `json:"kind"`
		Verb   string `json:"verb,omitempty"`
		Rule   string `json:"rule,omitempty"`
		Reason string `json:"reason,omitempty"`
		Code   int    `json:"code,omitempty"`
	}
	dataRefusedRecord struct {
		recordHead
		From     netip.AddrPort `json:"from,omitzero"`
		Listener netip.AddrPort `json:"listener,omitzero"`
		Reason   string         `json:"reason"`
	}
	sessionRecord struct {
		recordHead
		Mode      string         `json:"mode"`
		Via       netip.AddrPort `json:"via,omitzero"`
		Local     netip.AddrPort `json:"local,omitzero"`
		Server    netip.AddrPort `json:"server,omitzero"`
		Duration  float64        `json:"duration_seconds,omitempty"`
		BytesUp   int64          `json:"bytes_up,omitempty"`
		BytesDown int64          `json:"bytes_down,omitempty"`
		Result    string         `json:"result,omitempty"`
		Reason    string         `json:"reason,omitempty"`
	}
	reloadRecord struct {
		recordHead
		Result string `json:"result"`
		Error  string `json:"error,omitempty"`
	}
)

func head(typ string, t time.Time, session uint64, client netip.AddrPort, user string) recordHead {
	return recordHead{Time: utc(t), Type: typ, Session: session, Client: unmap(client), User: user}
}

// appendAuditRecord appends ev as one JSON line, or nothing for an event
// the audit log does not record.
func appendAuditRecord(buf []byte, ev proxy.Event) []byte {
	var rec any
	switch e := ev.(type) {
	case proxy.TransferEvent:
		rec = transferRecord{recordHead: head("transfer", e.Start, e.Session, e.Client, e.User),
			Server: unmap(e.Server), Verb: e.Verb, Path: e.Path, Direction: e.Direction, Bytes: e.Bytes,
			Duration: e.Duration.Seconds(), Code: e.Code, Result: e.Result, Cause: e.Cause,
			ClientMode: e.ClientMode, ServerMode: e.ServerMode, TLS: e.TLS, DataType: transferType(e.ASCII)}
	case proxy.FileCommandEvent:
		res := "ok"
		if e.Code < 200 || e.Code >= 400 {
			res = "failed"
		}
		rec = fileCommandRecord{recordHead: head("file_command", e.Time, e.Session, e.Client, e.User),
			Verb: e.Verb, Path: e.Path, Code: e.Code, Result: res}
	case proxy.DenialEvent:
		rec = denialRecord{recordHead: head("denial", e.Time, e.Session, e.Client, e.User),
			Kind: e.Kind, Verb: e.Verb, Rule: e.Rule, Reason: e.Reason, Code: e.Code}
	case proxy.DataRefusedEvent:
		// The event carries no time: the record is written moments later.
		rec = dataRefusedRecord{recordHead: head("data_refused", time.Now(), 0, netip.AddrPort{}, ""),
			From: unmap(e.From), Listener: unmap(e.Listener), Reason: e.Reason}
	case proxy.SessionStartEvent:
		rec = sessionRecord{recordHead: head("session_start", e.Time, e.Session, e.Client, ""),
			Mode: string(e.Mode), Via: unmap(e.Via), Local: unmap(e.Local)}
	case proxy.SessionEndEvent:
		rec = sessionRecord{recordHead: head("session_end", e.Time, e.Session, e.Client, e.User),
			Mode: string(e.Mode), Server: unmap(e.Server), Duration: e.Duration.Seconds(),
			BytesUp: e.BytesUp, BytesDown: e.BytesDown, Result: e.Result, Reason: e.Reason}
	case proxy.ReloadEvent:
		r := reloadRecord{recordHead: head("reload", e.Time, 0, netip.AddrPort{}, ""), Result: result(e.Err)}
		if e.Err != nil {
			r.Error = e.Err.Error()
		}
		rec = r
	default:
		return buf
	}
	n := len(buf)
	w := bytes.NewBuffer(buf)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)                // paths with & < > stay readable
	if err := enc.Encode(rec); err != nil { // only plain fields: cannot happen, but never write half a record
		return buf[:n]
	}
	return w.Bytes() // Encode ended the line
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC()
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// transferType is a transfer record's representation type.
func transferType(ascii bool) string {
	if ascii {
		return "A"
	}
	return "I"
}
