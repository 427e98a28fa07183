//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// TestBenchmarkKernelPath (FTPGATE_BENCH=1; run with -v to see the figures) downloads a 1 GiB
// file in passive mode, in interleaved rounds with the order rotated, four ways in one run:
//
//	routing   the proxy namespace forwards client to server (the limit of the topology)
//	splice    through ftpgate with the splice relay (--data-path splice)
//	sockmap   through ftpgate with BPF socket redirection (--data-path sockmap)
//	flow-nat  design (b), prototyped by hand: exact DNAT of the client's flows to the server
//	          (control and data port) plus SNAT to the proxy's address, in the proxy namespace;
//	          conntrack forwards the bytes, no proxy process takes part
//
// It prints MB/s (median and range) as ratios to routing, ftpgate's CPU seconds per GiB
// (/proc/PID/stat) and the machine's CPU seconds per GiB (/proc/stat: kernel work done in
// softirq and kworkers for the kernel paths shows up only there; the machine is shared, so this
// figure is noisy), and a syscall summary of the sockmap path.
func TestBenchmarkKernelPath(t *testing.T) {
	if os.Getenv("FTPGATE_BENCH") != "1" {
		t.Skip("set FTPGATE_BENCH=1 to run the sockmap data path benchmark")
	}
	requirePrereqs(t, needVsftpd, needCurl, needStrace, needFtpgate)
	bin := suite.ftpgate
	if suite.race && os.Getenv("FTPGATE_BIN") == "" {
		var err error
		if bin, err = buildFtpgate(t.TempDir(), false); err != nil {
			t.Fatalf("build ftpgate without -race: %v", err)
		}
	}
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("FTPGATE_BENCH_ROUNDS")); err == nil && n > 0 && n <= 20 {
		rounds = n
	}
	tp := newTopology(t)
	const natPassiveLo, natPassiveHi = 30000, 30009
	srv := startVsftpd(t, tp.Server, vsftpdOptions{ReadyFrom: tp.Client, PassiveLo: natPassiveLo, PassiveHi: natPassiveHi})
	srv.addSparseFile(t, hugeFile, hugeSize)
	// Two gates side by side; --firewall none, as two own tables cannot share a namespace.
	sockmap := startGate(t, tp, gateConfig{Binary: bin, Firewall: "none", PassivePorts: "40100-40199",
		Listen: []string{hostPort(proxyClientV4, 21)}, AdminListen: "127.0.0.1:9122", Extra: []string{"--data-path", "sockmap"}})
	splice := startGate(t, tp, gateConfig{Binary: bin, Firewall: "none", PassivePorts: "40000-40099",
		Listen: []string{hostPort(proxyClientV4, 2121)}, AdminListen: "127.0.0.1:9121", Extra: []string{"--data-path", "splice"}})
	const natPort = 2200
	if err := nftLoad(context.Background(), tp.Proxy, flowNATRules(natPort, natPassiveLo, natPassiveHi)); err != nil {
		t.Fatal(err)
	}
	probe := newFlowProbe(t, tp.Proxy, natPassiveLo, natPassiveHi)

	type way struct {
		name string
		ep   endpoint
		gate *gate
	}
	ways := []way{
		{"routing", directV4(), nil},
		{"splice", endpoint{"ftpgate-splice", proxyClientV4, 2121, proxyClientV4}, splice},
		{"sockmap", gateV4(), sockmap},
		{"flow-nat", endpoint{"flow-nat", proxyClientV4, natPort, proxyClientV4}, nil},
	}
	if only := os.Getenv("FTPGATE_BENCH_ONLY"); only != "" { // e.g. "sockmap,splice", to profile one way
		ways = slices.DeleteFunc(ways, func(w way) bool { return !slices.Contains(strings.Split(only, ","), w.name) })
		if len(ways) == 0 {
			t.Fatalf("FTPGATE_BENCH_ONLY=%s names none of routing, splice, sockmap, flow-nat", only)
		}
	}
	rates := map[string][]float64{}
	gateCPU := map[string]float64{}
	gateIO := map[string]int64{} // bytes ftpgate read and wrote with read(2)/write(2)
	machineCPU := map[string]float64{}
	for r := range rounds {
		for i := range ways {
			w := ways[(i+r)%len(ways)]
			var before float64
			var io0 int64
			if w.gate != nil {
				before, io0 = procCPU(w.gate.proc.Pid()), procIO(w.gate.proc.Pid())
			}
			m0 := machineBusy()
			mbps, err := curlDownloadRate(tp, w.ep)
			if err != nil {
				t.Fatalf("round %d, %s: %v", r+1, w.name, err)
			}
			if w.name == "flow-nat" {
				probe.after(t, time.Now())
			}
			machineCPU[w.name] += machineBusy() - m0
			if w.gate != nil {
				gateCPU[w.name] += procCPU(w.gate.proc.Pid()) - before
				gateIO[w.name] += procIO(w.gate.proc.Pid()) - io0
			}
			rates[w.name] = append(rates[w.name], mbps)
		}
	}
	if l := sockmap.logs.Find("sockmap data path not used"); l != "" {
		t.Errorf("a download through the sockmap gate fell back to splice: %s", l)
	}
	if l := sockmap.logs.Find("sockmap data path unavailable"); l != "" {
		t.Errorf("the sockmap data path was unavailable: %s", l)
	}
	base := 0.0
	if len(rates["routing"]) > 0 {
		base = speeds{mbps: rates["routing"]}.median()
	}
	t.Logf("1 GiB passive (EPSV) download with curl, %d interleaved rounds, median [min..max] MB/s, ratio of medians to routing:", rounds)
	for _, w := range ways {
		s := speeds{mbps: rates[w.name]}
		line := fmt.Sprintf("  %-9s %s  %.2fx", w.name, s, s.median()/base)
		if w.gate != nil {
			line += fmt.Sprintf("  ftpgate CPU %.3f s/GiB, read+write %d KiB/GiB", gateCPU[w.name]/float64(rounds), gateIO[w.name]/int64(rounds)>>10)
		}
		line += fmt.Sprintf("  machine CPU %.2f s/GiB", machineCPU[w.name]/float64(rounds))
		t.Log(line)
	}

	probe.report(t)

	// Copy mode (the receiver fell 16 MiB behind the redirect) moves the rest through ftpgate:
	// its read+write bytes above say how much.
	t.Logf("sockmap path: %d of %d downloads finished in copy mode", len(sockmap.logs.Records("sockmap data path: the receiver fell behind; copying the rest in user space")), rounds)

	// One more download through the sockmap gate under strace: no splice. (Its reads and
	// writes are the Go runtime's wake-ups and the control connection: /proc/PID/io above
	// counts their bytes.)
	summary, traced, err := straceDownload(t, tp, sockmap)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel path under strace -f -c: %.0f MB/s\n%s", traced, summary.text)
	if summary.calls["splice"] != 0 {
		t.Errorf("the kernel path made %d splice calls for 1 GiB", summary.calls["splice"])
	}
}

// procIO is the bytes a process moved with read(2) and write(2) and their kin (rchar plus
// wchar in /proc/PID/io; splice(2) is not counted there).
func procIO(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		if k == "rchar" || k == "wchar" {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// flowNATRules is design (b) as ftpgate would install it, by hand: the client's flows to the
// proxy's address on port natPort (control) and on the server's passive ports (data) are
// DNAT'ed to the server and SNAT'ed to the proxy's server-side address, so the server sees the
// same peer on both; the data packets are forwarded by conntrack alone.
func flowNATRules(natPort, lo, hi int) string {
	return fmt.Sprintf(`table ip kpath_flownat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip saddr %[1]s ip daddr %[2]s tcp dport %[3]d dnat ip to %[4]s:21
		ip saddr %[1]s ip daddr %[2]s tcp dport %[6]d-%[7]d dnat ip to %[4]s
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[1]s ip daddr %[4]s tcp dport { 21, %[6]d-%[7]d } snat ip to %[5]s
	}
}
`, clientV4, proxyClientV4, natPort, serverV4, proxyServerV4, lo, hi)
}

// machineBusy is the machine's busy CPU seconds so far (all CPUs, everything but idle and
// iowait), from /proc/stat.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return busy / 100 // USER_HZ
}

// flowProbe is what design (b) would learn from conntrack about its data flows, prototyped:
// with accounting on in the proxy namespace, the data flow's counters from a dump after each
// download, and the time conntrack reported the server's FIN (an update event) relative to
// curl's end.
type flowProbe struct {
	conn    *conntrack.Conn
	lo, hi  uint16
	events  chan conntrack.Event
	fin     map[uint32]time.Time // flow ID -> first FIN state seen
	mu      sync.Mutex
	results []string
	seen    map[uint32]bool
}

func newFlowProbe(t *testing.T, ns string, lo, hi int) *flowProbe {
	t.Helper()
	if err := sysctl(ns, "net/netfilter/nf_conntrack_acct", "1"); err != nil {
		t.Fatalf("conntrack accounting: %v", err)
	}
	p := &flowProbe{lo: uint16(lo), hi: uint16(hi), events: make(chan conntrack.Event, 1024), fin: map[uint32]time.Time{}, seen: map[uint32]bool{}}
	err := inNetns(ns, func() error {
		var err error
		p.conn, err = conntrack.Dial(nil)
		return err
	})
	if err != nil {
		t.Fatalf("conntrack in %s: %v", ns, err)
	}
	var listen *conntrack.Conn
	if err := inNetns(ns, func() error {
		var err error
		listen, err = conntrack.Dial(nil)
		return err
	}); err != nil {
		t.Fatalf("conntrack events in %s: %v", ns, err)
	}
	if _, err := listen.Listen(p.events, 1, []netfilter.NetlinkGroup{netfilter.GroupCTUpdate}); err != nil {
		t.Fatalf("conntrack events: %v", err)
	}
	go func() {
		for e := range p.events {
			f := e.Flow
			if f == nil || f.ProtoInfo.TCP == nil || !p.data(f) {
				continue
			}
			const finWait = 4 // TCP_CONNTRACK_FIN_WAIT and above: a FIN passed
			if f.ProtoInfo.TCP.State >= finWait {
				p.mu.Lock()
				if _, ok := p.fin[f.ID]; !ok {
					p.fin[f.ID] = time.Now()
				}
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		listen.Close()
		p.conn.Close()
	})
	return p
}

// data reports whether f is a NAT'ed data flow (to the proxy's address; the routed downloads
// reach the server's own).
func (p *flowProbe) data(f *conntrack.Flow) bool {
	port := f.TupleOrig.Proto.DestinationPort
	return port >= p.lo && port <= p.hi && f.TupleOrig.IP.DestinationAddress.String() == proxyClientV4
}

// after records the newest data flow once curl has ended at end.
func (p *flowProbe) after(t *testing.T, end time.Time) {
	t.Helper()
	time.Sleep(50 * time.Millisecond) // let the events arrive
	flows, err := p.conn.Dump(nil)
	if err != nil {
		t.Fatalf("conntrack dump: %v", err)
	}
	for _, f := range flows {
		if !p.data(&f) || p.seen[f.ID] {
			continue
		}
		p.seen[f.ID] = true
		c := f.CountersReply
		p.mu.Lock()
		fin, ok := p.fin[f.ID]
		p.mu.Unlock()
		when := "no FIN event seen"
		if ok {
			when = fmt.Sprintf("FIN event %+.1f ms from curl's end", float64(fin.Sub(end).Microseconds())/1000)
		}
		// 52 bytes of IPv4 and TCP headers (with timestamps) per packet; conntrack counts
		// GRO/GSO super-packets, so this is an estimate, not the exact payload.
		p.results = append(p.results, fmt.Sprintf("reply direction %d packets, %d IP bytes, payload about %d (file %d); %s",
			c.Packets, c.Bytes, int64(c.Bytes)-int64(c.Packets)*52, int64(hugeSize), when))
	}
}

func (p *flowProbe) report(t *testing.T) {
	t.Helper()
	t.Log("flow-nat: what conntrack tells about each data flow (design (b)'s byte count and end of data):")
	for _, r := range p.results {
		t.Log("  " + r)
	}
}
