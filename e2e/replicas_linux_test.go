//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/internal/nsrun"
)

// Issue #16's acceptance test: three ftpgate replicas behind one address, as
// deploy/kubernetes/replicas.yaml runs them, on a cluster simulated with network namespaces.
//
//	client-0..3 ──┐                 ┌── replica-0  198.18.160.2  ftpgate --replicas 3 --replica-index 0  (data 40000-40099)
//	              ├── lb (VIP) ─────┼── replica-1  198.18.161.2  ftpgate ... --replica-index 1           (data 40100-40199)
//	              │  198.18.62.1    ├── replica-2  198.18.162.2  ftpgate ... --replica-index 2           (data 40200-40299)
//	              │                 └── server     198.18.170.2  vsftpd
//
// The lb namespace does what kube-proxy does for the control Service and the three per-replica
// data Services: port 21 of the load balancer's address goes to a ready replica picked at random
// (numgen random mod N, a vmap of endpoint chains), and each replica's data slice goes to that
// replica. Client addresses are kept (externalTrafficPolicy: Local). Nothing is shared between
// the replicas but the FTP server.
const (
	replicaVIP       = "198.18.62.1"
	replicaServerV4  = "198.18.170.2"
	replicaDataLo    = 40000
	replicaCount     = 3
	replicaSliceSize = 100
	replicaClients   = 4
	// replicaWave is how many sessions each of the two waves runs.
	replicaWave = 300
	// replicaSlowRate is the bytes per second of the download that is running on a replica
	// when it gets SIGTERM: 10 MiB take about 7 s, longer than the shutdown delay.
	replicaSlowRate = 3 << 19
	// replicaRamp is the pause between the first wave's session starts.
	replicaRamp = 10 * time.Millisecond
)

// replicaShutdownDelay is how long a SIGTERM'd replica keeps accepting after its /readyz
// turned 503: time for the endpoints controller to take it out, and for the sessions on their
// way to finish.
const replicaShutdownDelay = 3 * time.Second

func replicaV4(i int) string       { return fmt.Sprintf("198.18.%d.2", 160+i) }
func replicaClientV4(j int) string { return fmt.Sprintf("198.18.%d.2", 150+j) }

// replicaSlice is replica i's data ports, as ftpgate computes them from --passive-ports
// 40000-40299 and --replicas 3.
func replicaSlice(i int) (lo, hi int) {
	lo = replicaDataLo + i*replicaSliceSize
	return lo, lo + replicaSliceSize - 1
}

// replicaOf returns the replica whose slice holds data port p, or -1.
func replicaOf(p int) int {
	for i := range replicaCount {
		if lo, hi := replicaSlice(i); p >= lo && p <= hi {
			return i
		}
	}
	return -1
}

// replicaLab is the simulated cluster: namespaces, the lb's rules, the running replicas.
type replicaLab struct {
	*lab
	t        *testing.T
	LB       string
	Server   string
	Replicas []string // namespace of replica i
	Clients  []string // namespace of client j, at replicaClientV4(j)
	gates    []*gate  // the running ftpgate of each replica
}

func newReplicaLab(t *testing.T) *replicaLab {
	l := newLab(t, "rp")
	r := &replicaLab{lab: l, t: t, LB: l.ns("lb"), Server: l.ns("server")}
	l.forwarding(r.LB)
	l.link(r.LB, "s0", "198.18.170.1/24", r.Server, "eth0", replicaServerV4+"/24")
	l.defaultRoute(r.Server, "198.18.170.1")
	for i := range replicaCount {
		ns := l.ns(fmt.Sprintf("replica-%d", i))
		l.link(r.LB, fmt.Sprintf("r%d", i), fmt.Sprintf("198.18.%d.1/24", 160+i), ns, "eth0", replicaV4(i)+"/24")
		l.defaultRoute(ns, fmt.Sprintf("198.18.%d.1", 160+i))
		r.Replicas = append(r.Replicas, ns)
	}
	for j := range replicaClients {
		ns := l.ns(fmt.Sprintf("client-%d", j))
		l.link(r.LB, fmt.Sprintf("c%d", j), fmt.Sprintf("198.18.%d.1/24", 150+j), ns, "eth0", replicaClientV4(j)+"/24")
		l.defaultRoute(ns, fmt.Sprintf("198.18.%d.1", 150+j))
		r.Clients = append(r.Clients, ns)
	}
	r.gates = make([]*gate, replicaCount)
	return r
}

// kubeProxyRules is the lb's table: one endpoint chain per replica (DNAT to the pod, port
// kept), the control Service's chain (filled by setControl), and each data Service's slice to
// its replica's endpoint chain.
func kubeProxyRules() string {
	var b strings.Builder
	b.WriteString("table ip kube {\n")
	for i := range replicaCount {
		fmt.Fprintf(&b, "\tchain ep-%d {\n\t\tdnat to %s\n\t}\n", i, replicaV4(i))
	}
	b.WriteString("\tchain control {\n\t}\n")
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	fmt.Fprintf(&b, "\t\tip daddr %s tcp dport 21 goto control\n", replicaVIP)
	for i := range replicaCount {
		lo, hi := replicaSlice(i)
		fmt.Fprintf(&b, "\t\tip daddr %s tcp dport %d-%d goto ep-%d\n", replicaVIP, lo, hi, i)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// setControl makes the control Service's endpoints exactly the replicas in ready, in one
// transaction, as kube-proxy rewrites a Service's chain when its endpoints change. Control
// connections already established stay with their replica (conntrack).
func (r *replicaLab) setControl(ctx context.Context, ready []int) error {
	if len(ready) == 0 {
		return errors.New("no ready replica")
	}
	var entries []string
	for k, i := range ready {
		entries = append(entries, fmt.Sprintf("%d : goto ep-%d", k, i))
	}
	rules := fmt.Sprintf("flush chain ip kube control\nadd rule ip kube control numgen random mod %d vmap { %s }\n",
		len(ready), strings.Join(entries, ", "))
	return nftLoad(ctx, r.LB, rules)
}

// replicaGate is replica i's ftpgate: a reverse proxy to the server on every address, its
// slice of 40000-40299, the load balancer's address in passive replies.
func replicaGate(i int) gateConfig {
	return gateConfig{
		Listen:       []string{"0.0.0.0:21"},
		Upstream:     hostPort(replicaServerV4, 21),
		PassivePorts: fmt.Sprintf("%d-%d", replicaDataLo, replicaDataLo+replicaCount*replicaSliceSize-1),
		Advertise:    replicaVIP,
		Extra: []string{"--replicas", strconv.Itoa(replicaCount), "--replica-index", strconv.Itoa(i),
			"--shutdown-delay", replicaShutdownDelay.String()},
	}
}

// start starts replica i's ftpgate (again) and waits until its /readyz says 200, as the
// endpoints controller waits before it adds a pod. It belongs to r.t, not to a subtest.
func (r *replicaLab) start(ctx context.Context, i int) error {
	g := startGate(r.t, r.view(r.Replicas[i], r.Clients[0]), replicaGate(i))
	r.gates[i] = g
	for {
		_, code, err := g.get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %d: /readyz not 200: code %d, %v (%w)", i, code, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loadJob is one session of testdata/ftpload.py.
type loadJob struct {
	ID          int    `json:"id"`
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Mode        string `json:"mode"`
	TrustPASVIP bool   `json:"trust_pasv_ip"`
	File        string `json:"file"`
	Rate        int    `json:"rate,omitempty"`
	Notify      bool   `json:"notify,omitempty"`
	Hold        bool   `json:"hold,omitempty"`
}

// loadResult is ftpload.py's line for a session: its end, or an event.
type loadResult struct {
	ID       int     `json:"id"`
	Event    string  `json:"event"`
	OK       bool    `json:"ok"`
	Error    string  `json:"error"`
	Bytes    int64   `json:"bytes"`
	SHA256   string  `json:"sha256"`
	Reply    string  `json:"reply"`
	DataPort int     `json:"data_port"`
	DataPeer string  `json:"data_peer"`
	Quit     string  `json:"quit"`
	Start    float64 `json:"start"`
	End      float64 `json:"end"`
}

// loadHub runs one ftpload.py per client namespace and gathers what they print.
type loadHub struct {
	mu      sync.Mutex
	jobs    map[int]loadJob
	client  map[int]int // job -> client
	results map[int]loadResult
	events  map[int]string
	changed chan struct{}
	inputs  []*json.Encoder
	closers []io.Closer
	cmds    []*exec.Cmd
	stderr  []*syncBuffer
	done    []chan struct{}
}

func startLoad(t *testing.T, ctx context.Context, clients []string) *loadHub {
	t.Helper()
	h := &loadHub{jobs: map[int]loadJob{}, client: map[int]int{}, results: map[int]loadResult{}, events: map[int]string{},
		changed: make(chan struct{})}
	// Its own bound: the scripts end when their input closes, in the cleanup, after the test's
	// context is gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 6*time.Minute)
	script := filepath.Join(filepath.Dir(scriptPath()), "ftpload.py")
	for j, ns := range clients {
		cmd := nsrun.Command(ctx, ns, python3Bin, script, "--user", e2eUser, "--password", e2ePassword, "--timeout", "30")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		errBuf := &syncBuffer{}
		cmd.Stderr = errBuf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start ftpload.py in client %d: %v", j, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var res loadResult
				if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
					res = loadResult{ID: -1, Error: fmt.Sprintf("client %d printed %q: %v", j, sc.Text(), err)}
				}
				h.record(res)
			}
		}()
		h.inputs = append(h.inputs, json.NewEncoder(in))
		h.closers = append(h.closers, in)
		h.cmds = append(h.cmds, cmd)
		h.stderr = append(h.stderr, errBuf)
		h.done = append(h.done, done)
	}
	t.Cleanup(func() {
		defer cancel()
		for j, cmd := range h.cmds {
			h.closers[j].Close()
			<-h.done[j]
			if err := cmd.Wait(); err != nil {
				t.Errorf("ftpload.py in client %d: %v\n%s", j, err, h.stderr[j].String())
			}
		}
	})
	return h
}

func (h *loadHub) record(res loadResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if res.Event != "" {
		h.events[res.ID] = res.Event
	} else {
		h.results[res.ID] = res
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// submit starts job on client j.
func (h *loadHub) submit(j int, job loadJob) error {
	h.mu.Lock()
	h.jobs[job.ID], h.client[job.ID] = job, j
	h.mu.Unlock()
	if err := h.inputs[j].Encode(job); err != nil {
		return fmt.Errorf("start session %d on client %d: %w", job.ID, j, err)
	}
	return nil
}

// release lets every held session of every client download.
func (h *loadHub) release() error {
	for j, in := range h.inputs {
		if err := in.Encode(map[string]bool{"release": true}); err != nil {
			return fmt.Errorf("release client %d: %w", j, err)
		}
	}
	return nil
}

// wait waits until cond holds over the results and events, or ctx ends.
func (h *loadHub) wait(ctx context.Context, what string, cond func(results map[int]loadResult, events map[int]string) bool) error {
	for {
		h.mu.Lock()
		ok, ch := cond(h.results, h.events), h.changed
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// waitAll waits for the results of ids.
func (h *loadHub) waitAll(ctx context.Context, ids []int) ([]loadResult, error) {
	err := h.wait(ctx, fmt.Sprintf("%d sessions", len(ids)), func(res map[int]loadResult, _ map[int]string) bool {
		for _, id := range ids {
			if _, ok := res[id]; !ok {
				return false
			}
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []loadResult
	for _, id := range ids {
		if r, ok := h.results[id]; ok {
			out = append(out, r)
		}
	}
	return out, err
}

// loadModes are the data modes of the waves, in turn: passive and active.
var loadModes = []struct {
	mode  string
	trust bool
}{{"epsv", false}, {"pasv", true}, {"eprt", false}, {"port", false}}

// waveJob is the k-th session of a wave starting at id first: client k mod 4, the modes in
// turn, a 1 MiB download through the load balancer.
func waveJob(first, k int) (client int, job loadJob) {
	m := loadModes[(k/replicaClients)%len(loadModes)]
	return k % replicaClients, loadJob{ID: first + k, Host: replicaVIP, Port: 21, Mode: m.mode, TrustPASVIP: m.trust, File: oneFile}
}

// checkSession checks a session's result: a complete download with the right checksum whose
// data connection went where the mode says (the load balancer's address for passive modes,
// a replica for active ones). It returns the replica that served it.
func checkSession(res loadResult, job loadJob, file string, size int64) (int, error) {
	what := fmt.Sprintf("session %d (%s, to %s)", job.ID, job.Mode, job.Host)
	if res.ID == -1 {
		return -1, errors.New(res.Error)
	}
	if !res.OK || res.Error != "" {
		return -1, fmt.Errorf("%s failed: %s (reply %q)", what, res.Error, res.Reply)
	}
	if res.Bytes != size || res.SHA256 != suite.sums[file] {
		return -1, fmt.Errorf("%s: %d bytes with sha256 %s, want %d bytes with sha256 %s", what, res.Bytes, res.SHA256, size, suite.sums[file])
	}
	if job.Mode == "epsv" || job.Mode == "pasv" {
		i := replicaOf(res.DataPort)
		if i < 0 || res.DataPeer != replicaVIP {
			return -1, fmt.Errorf("%s: data connection to %s port %d; want the load balancer's address and a port of a slice", what, res.DataPeer, res.DataPort)
		}
		return i, nil
	}
	for i := range replicaCount {
		if res.DataPeer == replicaV4(i) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%s: active data connection from %s, which is no replica", what, res.DataPeer)
}

// TestReplicas: three ftpgate replicas with --replicas 3 behind one load-balanced address,
// vsftpd behind them. A wave of 300 concurrent sessions from four client addresses, passive
// (EPSV, PASV) and active (EPRT, PORT), downloads with the right checksum: every data
// connection reaches the replica that holds its control session by its slice alone. Then a
// rolling restart during a second wave of 300: each replica in turn gets SIGTERM while a
// download runs on it, fails /readyz and so leaves the control Service (the test does what the
// endpoints controller does), keeps accepting for its --shutdown-delay, then refuses new control
// connections while that download completes, exits, starts again and rejoins once /readyz says
// 200. No transfer of either wave fails.
//
// Not parallel: it runs alone, before the parallel tests, so that 300 sessions at once on two
// cores do not compete with the rest of the suite.
func TestReplicas(t *testing.T) {
	requirePrereqs(t, needVsftpd, needPython, needFtpgate)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newReplicaLab(t)
	if err := nftLoad(ctx, r.LB, kubeProxyRules()); err != nil {
		t.Fatal(err)
	}
	startVsftpd(t, r.Server, vsftpdOptions{Listen: hostPort(replicaServerV4, 21), Unpinned: true})
	for i := range replicaCount {
		if err := r.start(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.setControl(ctx, []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	hub := startLoad(t, ctx, r.Clients)

	// No subtests: a restarted replica's ftpgate belongs to this test, and its start may fail it.
	t.Log("first wave: 300 sessions at once")
	testReplicaWave(ctx, t, r, hub)
	if t.Failed() {
		return
	}
	t.Log("second wave, during a rolling restart")
	testRollingRestart(ctx, t, r, hub)
}

// testReplicaWave opens 300 sessions (a new one every 10 ms), holds each after its login until
// all are open, then lets all 300 download at once; it checks every one, that each replica
// served some, and that the three replicas held all 300 sessions at once.
func testReplicaWave(ctx context.Context, t *testing.T, r *replicaLab, hub *loadHub) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var ids []int
	jobs := map[int]loadJob{}
	start := time.Now()
	for k := range replicaWave {
		j, job := waveJob(0, k)
		job.Hold = true
		if err := hub.submit(j, job); err != nil {
			t.Fatal(err)
		}
		ids, jobs[job.ID] = append(ids, job.ID), job
		// A 3 s ramp rather than one burst of 300 SYNs: vsftpd accepts with a backlog of 32.
		time.Sleep(replicaRamp)
	}
	err := hub.wait(ctx, "300 sessions logged in", func(res map[int]loadResult, ev map[int]string) bool {
		for _, id := range ids {
			if _, ended := res[id]; !ended && ev[id] != "ready" {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Since(start)
	if err := hub.release(); err != nil {
		t.Fatal(err)
	}
	results, err := hub.waitAll(ctx, ids)
	if err != nil {
		t.Fatalf("%v: %d of %d sessions ended", err, len(results), len(ids))
	}
	served, failed := checkWave(results, jobs)
	t.Logf("%d sessions from %d client addresses, all open after %s, done after %s; by replica: %v; %s", len(results), replicaClients,
		opened.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), served, sessionTimes(results))
	var starts, ends []logRecord
	for _, g := range r.gates {
		starts, ends = append(starts, g.logs.Records("session start")...), append(ends, g.logs.Records("session end")...)
	}
	most, err := maxOverlap(starts, ends)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("at most %d sessions open at once over the three replicas", most)
	if len(failed) == 0 && most != replicaWave {
		t.Errorf("the replicas' logs show at most %d sessions open at once; every one of the %d was held open until all were", most, replicaWave)
	}
	reportFailures(t, failed, len(results))
	for i, n := range served {
		if n == 0 {
			t.Errorf("replica %d served no session: the control Service did not spread the load", i)
		}
	}
	for i, g := range r.gates {
		if refused := g.logs.Records("data connection refused"); len(refused) > 0 {
			t.Errorf("replica %d refused data connections:\n%s", i, excerpt(refused, 5))
		}
	}
}

// sessionTimes summarizes how long sessions took.
func sessionTimes(results []loadResult) string {
	var d []float64
	for _, r := range results {
		d = append(d, r.End-r.Start)
	}
	if len(d) == 0 {
		return "no sessions"
	}
	slices.Sort(d)
	at := func(q float64) time.Duration {
		return time.Duration(d[min(len(d)-1, int(q*float64(len(d))))] * float64(time.Second)).Round(time.Millisecond)
	}
	return fmt.Sprintf("session time p50 %s, p90 %s, max %s", at(0.5), at(0.9), at(1))
}

// checkWave checks every session of a wave (checkSession) and counts the sessions each
// replica served.
func checkWave(results []loadResult, jobs map[int]loadJob) (served []int, failed []error) {
	served = make([]int, replicaCount)
	for _, res := range results {
		i, err := checkSession(res, jobs[res.ID], oneFile, oneSize)
		if err != nil {
			failed = append(failed, err)
			continue
		}
		served[i]++
	}
	return served, failed
}

func reportFailures(t *testing.T, failed []error, of int) {
	t.Helper()
	if len(failed) == 0 {
		return
	}
	t.Errorf("%d of %d sessions failed; first: %v", len(failed), of, failed[0])
	for _, err := range failed[1:min(len(failed), 4)] {
		t.Errorf("also: %v", err)
	}
}

// restartWindow is when a replica was out of the control Service.
type restartWindow struct{ out, in time.Time }

// testRollingRestart runs the second wave, one session every 60 ms, while the replicas restart
// one after the other; the feed holds its last 30 sessions until the restart is over.
func testRollingRestart(ctx context.Context, t *testing.T, r *replicaLab, hub *loadHub) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	const first = replicaWave // ids of the second wave
	rolled := make(chan struct{})
	fed := make(chan error, 1)
	submitted := make([]time.Time, replicaWave)
	go func() {
		for k := range replicaWave {
			if k == replicaWave-30 {
				select {
				case <-rolled:
				case <-ctx.Done():
					fed <- ctx.Err()
					return
				}
			}
			j, job := waveJob(first, k)
			submitted[k] = time.Now()
			if err := hub.submit(j, job); err != nil {
				fed <- err
				return
			}
			select {
			case <-time.After(60 * time.Millisecond):
			case <-ctx.Done():
				fed <- ctx.Err()
				return
			}
		}
		fed <- nil
	}()

	// Let the wave get going, then roll.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	windows := make([]restartWindow, replicaCount)
	slowIDs := make([]int, replicaCount)
	var rollErr error
	for i := range replicaCount {
		slowIDs[i] = 1000 + i
		var w restartWindow
		if w, rollErr = rollReplica(ctx, t, r, hub, i, slowIDs[i]); rollErr != nil {
			break
		}
		windows[i] = w
	}
	close(rolled)
	if rollErr != nil {
		t.Error(rollErr)
	}
	if err := <-fed; err != nil {
		t.Fatalf("second wave: %v", err)
	}
	var ids []int
	for k := range replicaWave {
		ids = append(ids, first+k)
	}
	results, err := hub.waitAll(ctx, ids)
	if err != nil {
		t.Fatalf("%v: %d of %d sessions of the second wave ended", err, len(results), len(ids))
	}
	hub.mu.Lock()
	jobs := maps.Clone(hub.jobs)
	hub.mu.Unlock()
	served, failed := checkWave(results, jobs)
	t.Logf("second wave: %d sessions; by replica: %v", len(results), served)
	for i, w := range windows {
		if w.out.IsZero() {
			continue
		}
		during := 0
		for _, at := range submitted {
			if at.After(w.out) && at.Before(w.in) {
				during++
			}
		}
		t.Logf("replica %d out of the control Service for %s; %d sessions started meanwhile", i, w.in.Sub(w.out).Round(time.Millisecond), during)
		if during == 0 {
			t.Errorf("replica %d: no session of the second wave started while it restarted: the wave did not cover the restart", i)
		}
	}
	reportFailures(t, failed, len(results))
}

// rollReplica restarts replica i as a rolling update does, checking each step:
//
//  1. a client that holds a control connection to the pod itself starts a slow download (its
//     data connection through the load balancer's address and the replica's slice);
//  2. SIGTERM: /readyz turns 503 at once, and the endpoints controller, which follows
//     readiness, drops the replica from the control Service; during --shutdown-delay the
//     replica still accepts, so the connections the load balancer sent before it noticed are
//     served, not refused;
//  3. after the delay the control listener closes (a new connection is refused) while the slow
//     download goes on and completes with the right checksum; then ftpgate exits 0;
//  4. the new pod starts, and rejoins the control Service once its /readyz says 200.
func rollReplica(ctx context.Context, t *testing.T, r *replicaLab, hub *loadHub, i, slowID int) (restartWindow, error) {
	var w restartWindow
	g := r.gates[i]
	client := i % replicaClients
	ready := []int{}
	for k := range replicaCount {
		if k != i {
			ready = append(ready, k)
		}
	}
	slow := loadJob{ID: slowID, Host: replicaV4(i), Port: 21, Mode: "pasv", TrustPASVIP: true, File: bigFile, Rate: replicaSlowRate, Notify: true}
	if err := hub.submit(client, slow); err != nil {
		return w, err
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	err := hub.wait(wctx, fmt.Sprintf("the slow download on replica %d", i), func(res map[int]loadResult, ev map[int]string) bool {
		_, ended := res[slowID]
		return ev[slowID] == "transferring" || ended
	})
	wcancel()
	if err != nil {
		return w, err
	}
	if err := g.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return w, fmt.Errorf("replica %d: SIGTERM: %w", i, err)
	}
	// The endpoints controller: out of the control Service once /readyz fails.
	var notReady bool
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	for !notReady && rctx.Err() == nil {
		body, code, err := g.get(rctx, "/readyz")
		notReady = err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
		if !notReady {
			time.Sleep(10 * time.Millisecond)
		}
	}
	rcancel()
	if !notReady {
		return w, fmt.Errorf("replica %d: /readyz did not turn 503 after SIGTERM", i)
	}
	if err := r.setControl(ctx, ready); err != nil {
		return w, err
	}
	w.out = time.Now()
	// After the shutdown delay, no new control connection while the slow download runs on.
	var refused bool
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second+replicaShutdownDelay)
	for !refused && dctx.Err() == nil {
		c, err := dialIn(dctx, r.Clients[client], "tcp", hostPort(replicaV4(i), 21))
		if err != nil {
			refused = errors.Is(err, syscall.ECONNREFUSED)
		} else {
			c.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	dcancel()
	hub.mu.Lock()
	_, slowEnded := hub.results[slowID]
	hub.mu.Unlock()
	if !refused {
		return w, fmt.Errorf("replica %d after SIGTERM and the shutdown delay: control connections not refused (slow download already over: %v)", i, slowEnded)
	}
	if slowEnded {
		return w, fmt.Errorf("replica %d: the slow download ended before /readyz said 503; make it slower", i)
	}
	res, err := hub.waitAll(ctx, []int{slowID})
	if err != nil {
		return w, err
	}
	if _, err := checkSession(res[0], slow, bigFile, bigSize); err != nil {
		return w, fmt.Errorf("replica %d: the download running at SIGTERM: %w", i, err)
	}
	if replicaOf(res[0].DataPort) != i {
		return w, fmt.Errorf("replica %d advertised data port %d, outside its slice", i, res[0].DataPort)
	}
	t.Logf("replica %d: the download running at SIGTERM completed (%d bytes, QUIT answered %q)", i, res[0].Bytes, res[0].Quit)
	if err := g.proc.Wait(40 * time.Second); err != nil {
		return w, fmt.Errorf("replica %d after its drain: %w\n%s", i, err, g.logs.Tail(20))
	}
	if err := r.start(ctx, i); err != nil {
		return w, err
	}
	if err := r.setControl(ctx, []int{0, 1, 2}); err != nil {
		return w, err
	}
	w.in = time.Now()
	return w, nil
}
