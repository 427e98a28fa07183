package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ftpgate/ftpgate/proxy"
)

// `ftpgate status` reads GET /status from a running ftpgate's admin endpoint
// and prints what is going on: sessions, transfers in flight, pinholes and
// totals; once, refreshed in place (--watch), or as the JSON served (--json).

// defaultAdminAddr is where `ftpgate status` looks by default: the
// admin_listen of the example configs in deploy/config. ftpgate itself
// serves no admin endpoint unless --admin-listen asks for one.
const defaultAdminAddr = "127.0.0.1:9121"

const (
	// statusTimeout bounds one request to the admin endpoint.
	statusTimeout = 5 * time.Second
	// statusMaxBody bounds the answer read: a snapshot of many thousand
	// sessions fits.
	statusMaxBody = 64 << 20
	// clearHome moves the cursor home and clears the screen, as top does.
	clearHome = "\x1b[H\x1b[2J"
	// maxField is the widest a peer-supplied field (user, path) is shown.
	maxField = 40
)

// statusView is the JSON of GET /status: proxy.Snapshot with its counters
// under stable snake_case names. Durations are nanoseconds (the _ns fields).
type statusView struct {
	Time     time.Time           `json:"time"`
	Totals   statusTotals        `json:"totals"`
	Sessions []proxy.SessionInfo `json:"sessions"`
	Pinholes []proxy.PinholeInfo `json:"pinholes"`
}

// statusTotals are proxy.Stats for JSON.
type statusTotals struct {
	Sessions       int64 `json:"sessions"`  // open now
	Accepted       int64 `json:"accepted"`  // control connections since start
	Transfers      int64 `json:"transfers"` // completed since start
	Pinholes       int64 `json:"pinholes"`  // open now
	Listeners      int64 `json:"listeners"` // control and data, open now
	DataPortsInUse int   `json:"data_ports_in_use"`
	DataPortsTotal int   `json:"data_ports_total"` // 0: kernel-chosen ports
}

func newStatusView(s proxy.Snapshot) statusView {
	st := s.Stats
	v := statusView{Time: s.Time, Sessions: s.Sessions, Pinholes: s.Pinholes, Totals: statusTotals{
		Sessions: st.Sessions, Accepted: st.Accepted, Transfers: st.Transfers, Pinholes: st.Pinholes,
		Listeners: st.Listeners, DataPortsInUse: st.DataPortsInUse, DataPortsTotal: st.DataPortsTotal,
	}}
	if v.Sessions == nil {
		v.Sessions = []proxy.SessionInfo{}
	}
	if v.Pinholes == nil {
		v.Pinholes = []proxy.PinholeInfo{}
	}
	return v
}

// serveStatus answers GET /status with snap's view.
func serveStatus(snap func() proxy.Snapshot) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(newStatusView(snap())); err != nil {
			return // the client went away
		}
	}
}

// statusFlags are `ftpgate status`'s options.
type statusFlags struct {
	admin    string
	watch    bool
	interval time.Duration
	json     bool
}

func parseStatusFlags(args []string, stderr io.Writer) (statusFlags, error) {
	var f statusFlags
	fs := flag.NewFlagSet("ftpgate status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.admin, "admin", defaultAdminAddr, "the admin endpoint, `HOST:PORT` (ftpgate run --admin-listen) or an http:// URL")
	fs.BoolVar(&f.watch, "watch", false, "refresh in place until Ctrl-C")
	fs.DurationVar(&f.interval, "interval", time.Second, "time between refreshes with --watch")
	fs.BoolVar(&f.json, "json", false, "print the JSON the endpoint serves (with --watch: one document per line)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ftpgate status [--admin HOST:PORT] [--watch [--interval 1s]] [--json]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.interval <= 0 {
		return f, fmt.Errorf("--interval %s: want a positive duration", f.interval)
	}
	intervalSet := false
	fs.Visit(func(fl *flag.Flag) { intervalSet = intervalSet || fl.Name == "interval" })
	if intervalSet && !f.watch {
		return f, errors.New("--interval needs --watch")
	}
	return f, nil
}

// statusURL is the /status URL of the admin endpoint addr.
func statusURL(addr string) (string, error) {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimSuffix(addr, "/") + "/status", nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("--admin %q: want HOST:PORT or an http:// URL: %w", addr, err)
	}
	return "http://" + addr + "/status", nil
}

// statusClient fetches /status from one admin endpoint.
type statusClient struct {
	admin string // as given, for messages
	url   string
	http  *http.Client
}

func newStatusClient(admin string) (*statusClient, error) {
	u, err := statusURL(admin)
	if err != nil {
		return nil, err
	}
	return &statusClient{admin: admin, url: u, http: &http.Client{Timeout: statusTimeout}}, nil
}

// fetch returns the body served and its decoded view.
func (c *statusClient) fetch(ctx context.Context) ([]byte, statusView, error) {
	var v statusView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, v, fmt.Errorf("status request %s: %w", c.url, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, v, ctx.Err()
		}
		return nil, v, fmt.Errorf("cannot reach the admin endpoint at %s (is ftpgate running with --admin-listen %s?): %w",
			c.admin, c.admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, statusMaxBody+1))
	if err != nil {
		return nil, v, fmt.Errorf("read %s: %w", c.url, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, v, fmt.Errorf("%s answers 404: this admin endpoint has no /status (an older ftpgate, or not ftpgate's admin endpoint?)", c.url)
	case resp.StatusCode != http.StatusOK:
		return nil, v, fmt.Errorf("%s answers %s: %s", c.url, resp.Status, clean(string(body[:min(len(body), 200)]), 200))
	case len(body) > statusMaxBody:
		return nil, v, fmt.Errorf("%s: answer larger than %d bytes", c.url, statusMaxBody)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, v, fmt.Errorf("decode %s: %w", c.url, err)
	}
	return body, v, nil
}

// cmdStatus is `ftpgate status`.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	f, err := parseStatusFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ftpgate status: %v\n", err)
		return 2
	}
	c, err := newStatusClient(f.admin)
	if err != nil {
		fmt.Fprintf(stderr, "ftpgate status: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if !f.watch {
		body, v, err := c.fetch(ctx)
		if ctx.Err() != nil {
			return 130 // interrupted, as a shell reports SIGINT
		}
		if err != nil {
			fmt.Fprintf(stderr, "ftpgate status: %v\n", err)
			return 1
		}
		if f.json {
			_, err = stdout.Write(body)
		} else {
			_, err = io.WriteString(stdout, renderStatus(v, nil, c.admin))
		}
		if err != nil {
			fmt.Fprintf(stderr, "ftpgate status: %v\n", err)
			return 1
		}
		return 0
	}
	return watchStatus(ctx, c, f, stdout, stderr)
}

// watchStatus redraws until ctx ends (a signal). A first fetch that fails
// ends it with an error; later failures (ftpgate restarting) are shown and
// retried.
func watchStatus(ctx context.Context, c *statusClient, f statusFlags, stdout, stderr io.Writer) int {
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var prev *statusView
	for frames := 0; ; frames++ {
		body, v, err := c.fetch(ctx)
		if ctx.Err() != nil {
			return 0
		}
		if err != nil && frames == 0 {
			fmt.Fprintf(stderr, "ftpgate status: %v\n", err)
			return 1
		}
		var werr error
		switch {
		case f.json && err != nil:
			fmt.Fprintf(stderr, "ftpgate status: %v (retrying every %s)\n", err, f.interval)
		case f.json:
			_, werr = stdout.Write(body)
		case err != nil:
			_, werr = fmt.Fprintf(stdout, "%sftpgate status: %v\n\nretrying every %s; Ctrl-C to quit\n", clearHome, err, f.interval)
			prev = nil
		default:
			_, werr = io.WriteString(stdout, clearHome+renderStatus(v, prev, c.admin)+
				fmt.Sprintf("\nevery %s; Ctrl-C to quit\n", f.interval))
			prev = &v
		}
		if werr != nil { // nobody is reading any more
			fmt.Fprintf(stderr, "ftpgate status: %v\n", werr)
			return 1
		}
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

// renderStatus formats v as tables. prev, the sample before (nil: none),
// gives the rate of a transfer it also shows; without it the rate is the
// average since the transfer began.
func renderStatus(v statusView, prev *statusView, admin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ftpgate at %s, %s\n", admin, v.Time.Format("2006-01-02 15:04:05 MST"))

	var sessions, transfers, pinholes [][]string
	var flightBytes int64
	var flightRate float64
	for _, s := range v.Sessions {
		sessions = append(sessions, []string{strconv.FormatUint(s.ID, 10), addrOrDash(s.Client.String(), s.Client.IsValid()),
			addrOrDash(s.Server.String(), s.Server.IsValid()), userField(s), clean(string(s.Mode), maxField),
			shortDuration(v.Time.Sub(s.Start)), shortDuration(s.Idle)})
		tr := s.Transfer
		if tr == nil {
			continue
		}
		rate := transferRate(v, prev, s)
		if tr.Bytes >= 0 {
			flightBytes += tr.Bytes
			flightRate += rate
		}
		transfers = append(transfers, []string{strconv.FormatUint(s.ID, 10), clean(tr.Verb, 8), pathOrDash(tr.Path),
			clean(tr.Direction, 10), sizeField(tr.Bytes), sizeField(tr.Size), percentField(tr.Bytes, tr.Size),
			rateField(tr.Bytes, rate), shortDuration(tr.Elapsed)})
	}
	for _, p := range v.Pinholes {
		pinholes = append(pinholes, []string{addrOrDash(p.Peer.String(), p.Peer.IsValid()),
			addrOrDash(p.Local.String(), p.Local.IsValid()), addrOrDash(p.Intercept.String(), p.Intercept.IsValid()),
			ttlField(p.Remaining), strconv.Itoa(p.Refs)})
	}
	writeTable(&b, "Sessions", []string{"ID", "CLIENT", "SERVER", "USER", "MODE", "AGE", "IDLE"}, sessions)
	writeTable(&b, "Transfers in flight", []string{"ID", "VERB", "FILE", "DIRECTION", "BYTES", "SIZE", "DONE", "RATE", "ELAPSED"}, transfers)
	writeTable(&b, "Pinholes", []string{"PEER", "LOCAL", "INTERCEPT", "TTL", "REFS"}, pinholes)

	t := v.Totals
	ports := "kernel-chosen"
	if t.DataPortsTotal > 0 {
		ports = fmt.Sprintf("%d/%d in use", t.DataPortsInUse, t.DataPortsTotal)
	}
	fmt.Fprintf(&b, "\nTotals: sessions %d open, %d accepted; transfers %d completed, %d in flight (%s, %s/s); pinholes %d; listeners %d; data ports %s\n",
		t.Sessions, t.Accepted, t.Transfers, len(transfers), humanBytes(flightBytes), humanBytes(int64(flightRate)),
		t.Pinholes, t.Listeners, ports)
	return b.String()
}

// writeTable writes a blank line and a titled table: "Title: none", or the
// number of rows, the header and the rows in aligned columns. Cells hold no
// tab or newline (clean removes them from what peers sent).
func writeTable(b *strings.Builder, title string, header []string, rows [][]string) {
	if len(rows) == 0 {
		fmt.Fprintf(b, "\n%s: none\n", title)
		return
	}
	fmt.Fprintf(b, "\n%s: %d\n", title, len(rows))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// transferRate is s's transfer rate in bytes per second: from the sample
// before if it shows the same transfer, else the average since its start.
func transferRate(v statusView, prev *statusView, s proxy.SessionInfo) float64 {
	tr := s.Transfer
	if prev != nil {
		for _, p := range prev.Sessions {
			if p.ID != s.ID || p.Transfer == nil || !p.Transfer.Start.Equal(tr.Start) {
				continue
			}
			if dt := v.Time.Sub(prev.Time).Seconds(); dt > 0 && tr.Bytes >= p.Transfer.Bytes {
				return float64(tr.Bytes-p.Transfer.Bytes) / dt
			}
		}
	}
	if el := tr.Elapsed.Seconds(); el > 0 {
		return float64(tr.Bytes) / el
	}
	return 0
}

func addrOrDash(s string, valid bool) string {
	if !valid {
		return "-"
	}
	return s
}

func userField(s proxy.SessionInfo) string {
	switch {
	case s.User == "":
		return "-"
	case !s.LoggedIn:
		return clean(s.User, maxField) + " (login)"
	}
	return clean(s.User, maxField)
}

func pathOrDash(p string) string {
	if p == "" {
		return "-"
	}
	return clean(p, maxField)
}

func sizeField(size int64) string {
	if size < 0 {
		return "?"
	}
	return humanBytes(size)
}

// rateField is the rate, or "?" when the progress is unknown (n < 0).
func rateField(n int64, rate float64) string {
	if n < 0 {
		return "?"
	}
	return humanBytes(int64(rate)) + "/s"
}

func percentField(n, size int64) string {
	if size <= 0 || n < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", min(100, float64(n)*100/float64(size)))
}

func ttlField(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return shortDuration(d)
}

// humanBytes is n in binary units: "512 B", "1.5 MiB".
func humanBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= 1024
		if f < 1024 || unit == "PiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	panic("unreachable")
}

// shortDuration is d to the second, in at most two units: "45s", "3m07s",
// "2h05m", "3d04h".
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// clean makes a peer-supplied string safe for a terminal and a table: no
// control characters (an escape sequence in a user name must not reach the
// operator's terminal, a tab must not shift the table's columns), no invalid
// UTF-8, and at most max runes, shortened in the middle.
func clean(s string, max int) string {
	if strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !unicode.IsGraphic(r) }) >= 0 {
		var b strings.Builder
		for i, r := range s {
			switch {
			case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
				fmt.Fprintf(&b, `\x%02x`, s[i])
			case !unicode.IsGraphic(r):
				q := strconv.QuoteRuneToASCII(r)
				b.WriteString(q[1 : len(q)-1])
			default:
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	head := (max - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(max-1-head):])
}
