package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/nat"
	"github.com/ftpgate/ftpgate/proxy"
	"github.com/ftpgate/ftpgate/rewrite"
	"go.uber.org/zap/zaptest"
	"gopkg.in/yaml.v3"
)

func TestReplicaSlice(t *testing.T) {
	r := func(lo, hi uint16) nat.PortRange { return nat.PortRange{Lo: lo, Hi: hi} }
	tests := []struct {
		name    string
		in      nat.PortRange
		n, i    int
		want    nat.PortRange
		wantErr string
	}{
		{"first of three", r(50000, 50299), 3, 0, r(50000, 50099), ""},
		{"second of three", r(50000, 50299), 3, 1, r(50100, 50199), ""},
		{"last of three", r(50000, 50299), 3, 2, r(50200, 50299), ""},
		{"one replica keeps the range", r(40000, 40999), 1, 0, r(40000, 40999), ""},
		{"leftover ports at the top are nobody's", r(40000, 40009), 3, 2, r(40006, 40008), ""},
		{"one port each", r(40000, 40002), 3, 2, r(40002, 40002), ""},
		{"top of the port space", r(65533, 65535), 3, 2, r(65535, 65535), ""},
		{"index equal to the count", r(50000, 50299), 3, 3, nat.PortRange{}, "must be 0 to 2"},
		{"negative index", r(50000, 50299), 3, -1, nat.PortRange{}, "must be 0 to 2"},
		{"no replicas", r(50000, 50299), 0, 0, nat.PortRange{}, "want 1 or more"},
		{"fewer ports than replicas", r(50000, 50001), 3, 0, nat.PortRange{}, "2 ports cannot give each of 3 replicas a slice"},
		{"no range", nat.PortRange{}, 3, 0, nat.PortRange{}, "not a port range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replicaSlice(tt.in, tt.n, tt.i)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("replicaSlice(%v, %d, %d) = %v, %v; want an error with %q", tt.in, tt.n, tt.i, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("replicaSlice(%v, %d, %d) = %v, %v; want %v", tt.in, tt.n, tt.i, got, err, tt.want)
			}
		})
	}
}

// TestReplicaSlicesPartition: for every count, the slices are disjoint,
// consecutive, equal and inside the range.
func TestReplicaSlicesPartition(t *testing.T) {
	for _, in := range []nat.PortRange{{Lo: 40000, Hi: 40999}, {Lo: 50000, Hi: 50299}, {Lo: 1024, Hi: 1030}} {
		size := int(in.Hi) - int(in.Lo) + 1
		for n := 1; n <= size; n++ {
			next := int(in.Lo)
			for i := range n {
				s, err := replicaSlice(in, n, i)
				if err != nil {
					t.Fatalf("%v split %d ways, replica %d: %v", in, n, i, err)
				}
				if int(s.Lo) != next || int(s.Hi)-int(s.Lo)+1 != size/n || s.Hi > in.Hi {
					t.Fatalf("%v split %d ways, replica %d: %v; want %d ports from %d", in, n, i, s, size/n, next)
				}
				next = int(s.Hi) + 1
			}
		}
	}
}

func TestReplicaIndex(t *testing.T) {
	noHost := func() (string, error) { return "", errors.New("no uname") }
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	tests := []struct {
		name     string
		spec     string
		env      map[string]string
		hostname func() (string, error)
		want     int
		wantErr  string
	}{
		{"number", "2", nil, noHost, 2, ""},
		{"zero", "0", nil, noHost, 0, ""},
		{"not a number", "two", nil, noHost, 0, `replica index "two": want a number from 0, or auto`},
		{"negative", "-1", nil, noHost, 0, "want a number from 0"},
		{"auto from POD_NAME", "auto", map[string]string{"POD_NAME": "ftpgate-2", "HOSTNAME": "ftpgate-7"}, noHost, 2, ""},
		{"auto from HOSTNAME", "auto", map[string]string{"HOSTNAME": "ftpgate-11"}, noHost, 11, ""},
		{"auto from the host name", "auto", nil, host("edge-gw-0"), 0, ""},
		{"auto, a Deployment's pod name", "auto", map[string]string{"POD_NAME": "ftpgate-7d4b9c-x2x9z"}, noHost, 0,
			`$POD_NAME "ftpgate-7d4b9c-x2x9z": no StatefulSet ordinal`},
		{"auto, no dash", "auto", map[string]string{"HOSTNAME": "ftpgate"}, noHost, 0, `$HOSTNAME "ftpgate": no StatefulSet ordinal`},
		{"auto, dash at the end", "auto", map[string]string{"HOSTNAME": "ftpgate-"}, noHost, 0, "no StatefulSet ordinal"},
		{"auto, only a number", "auto", map[string]string{"HOSTNAME": "-3"}, noHost, 0, "no StatefulSet ordinal"},
		{"auto, leading zero", "auto", map[string]string{"HOSTNAME": "ftpgate-02"}, noHost, 0, "no StatefulSet ordinal"},
		{"auto, nothing to read", "auto", nil, noHost, 0, "no $POD_NAME or $HOSTNAME"},
		{"auto, the error says what to do", "auto", nil, host("laptop"), 0, "give --replica-index N"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replicaIndex(tt.spec, func(k string) string { return tt.env[k] }, tt.hostname)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("replicaIndex(%q) = %d, %v; want an error with %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("replicaIndex(%q) = %d, %v; want %d", tt.spec, got, err, tt.want)
			}
		})
	}
}

// TestReplicaSettings: the flags and keys narrow the proxy's passive ports
// and the firewall's data ports to the replica's slice; mistakes are clear
// errors.
func TestReplicaSettings(t *testing.T) {
	slice := func(lo, hi uint16) []nat.PortRange { return []nat.PortRange{{Lo: lo, Hi: hi}} }
	tests := []struct {
		name    string
		file    string // config file, if any
		env     map[string]string
		args    []string
		want    []nat.PortRange // nc.DataPorts, the same as pc.PassivePorts
		wantErr string
	}{
		{"flags", "", nil, []string{"--replicas", "3", "--replica-index", "1", "--passive-ports", "50000-50299"}, slice(50100, 50199), ""},
		{"file keys, auto", "replicas: 3\nreplica_index: auto\npassive_ports: 50000-50299\n", map[string]string{"POD_NAME": "ftpgate-2"}, nil, slice(50200, 50299), ""},
		{"a flag overrides the file", "replicas: 3\nreplica_index: 0\npassive_ports: 50000-50299\n", nil, []string{"--replica-index", "2"}, slice(50200, 50299), ""},
		{"the default range is split too", "", nil, []string{"--replicas", "2", "--replica-index", "1"}, slice(40500, 40999), ""},
		{"no replicas: the whole range", "", nil, []string{"--passive-ports", "50000-50299"}, slice(50000, 50299), ""},
		{"index out of range", "", nil, []string{"--replicas", "3", "--replica-index", "3", "--passive-ports", "50000-50299"}, nil, "replica index 3: with 3 replicas it must be 0 to 2"},
		{"range smaller than the count", "", nil, []string{"--replicas", "4", "--replica-index", "0", "--passive-ports", "50000-50002"}, nil, "3 ports cannot give each of 4 replicas a slice"},
		{"index without a count", "", nil, []string{"--replica-index", "1"}, nil, `replica index "1": give --replicas N`},
		{"count without an index", "", nil, []string{"--replicas", "3"}, nil, "give --replica-index (replica_index) 0 to 2, or auto"},
		{"negative count", "", nil, []string{"--replicas", "-2", "--replica-index", "0"}, nil, "replicas -2"},
		{"auto outside a StatefulSet", "", map[string]string{"POD_NAME": "", "HOSTNAME": "gateway"}, []string{"--replicas", "3", "--replica-index", "auto"}, nil,
			`replica index auto: $HOSTNAME "gateway": no StatefulSet ordinal`},
		{"no fixed range", "", nil, []string{"--replicas", "3", "--replica-index", "0", "--firewall", "none"}, nil, "give --passive-ports LO-HI"},
		{"misspelt key", "replicas: 3\nreplica_indx: 1\n", nil, nil, nil, "unknown setting replica_indx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := []string{"--upstream", "198.18.1.2:21", "--listen", "127.0.0.1:0"}
			if tt.file != "" {
				args = append(args, "--config", writeConfig(t, tt.file))
			}
			args = append(args, tt.args...)
			fc, err := newRunFlags().parse(args)
			var pc proxy.Config
			var nc nat.Config
			if err == nil {
				pc, nc, err = fc.settings()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%v: error %v; want one with %q", args, err, tt.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			if !slices.Equal(nc.DataPorts, tt.want) || pc.PassivePorts != tt.want[0] {
				t.Errorf("%v: passive ports %v, firewall data ports %v; want %v", args, pc.PassivePorts, nc.DataPorts, tt.want)
			}
		})
	}
}

// TestReplicaAdvertisesOnlyItsSlice: ftpgate started with --replica-index 1
// --replicas 3 --passive-ports 50000-50299 answers hundreds of PASV and
// EPSV, from several sessions at once, only with ports 50100-50199, and
// every pinhole it opens is in that slice.
func TestReplicaAdvertisesOnlyItsSlice(t *testing.T) {
	upstream := fakeFTPServer(t)
	fc, err := newRunFlags().parse([]string{"--replica-index", "1", "--replicas", "3", "--passive-ports", "50000-50299",
		"--upstream", upstream, "--listen", "127.0.0.1:0", "--pinhole-ttl", "60s"})
	if err != nil {
		t.Fatal(err)
	}
	pc, nc, err := fc.settings()
	if err != nil {
		t.Fatal(err)
	}
	fw := nat.NewFake()
	if err := fw.SetDataPorts(context.Background(), nc.DataPorts); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(pc, fw, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := srv.Addrs()[0].String()

	const sessions, perSession = 4, 100 // 400 passive replies
	var mu sync.Mutex
	seen := map[uint16]int{}
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := range sessions {
		wg.Go(func() {
			ports, err := passivePorts(addr, perSession, s%2 == 0)
			mu.Lock()
			defer mu.Unlock()
			for _, p := range ports {
				seen[p]++
			}
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", s, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for p, n := range seen {
		total += n
		if p < 50100 || p > 50199 {
			t.Errorf("advertised port %d (%d times): outside replica 1's slice 50100-50199", p, n)
		}
	}
	if total != sessions*perSession {
		t.Errorf("%d passive replies, want %d", total, sessions*perSession)
	}
	t.Logf("%d passive replies on %d distinct ports of 50100-50199", total, len(seen))
	if got := fw.DataPorts(); !slices.Equal(got, []nat.PortRange{{Lo: 50100, Hi: 50199}}) {
		t.Errorf("firewall data ports %v, want only the slice 50100-50199", got)
	}
	opened := 0
	for _, op := range fw.Ops() {
		if !strings.HasPrefix(op, "open ") {
			continue
		}
		opened++
		port, _, _ := strings.Cut(op[strings.LastIndexByte(op, ':')+1:], " ")
		if p, err := strconv.Atoi(port); err != nil || p < 50100 || p > 50199 {
			t.Errorf("pinhole %q: not on a port of the slice 50100-50199", op)
		}
	}
	if opened == 0 {
		t.Errorf("no pinhole opened; firewall log: %v", fw.Ops())
	}
}

// passivePorts logs in through ftpgate at addr and sends n passive commands,
// EPSV and PASV in turn (PASV first if pasvFirst), returning the ports of
// the replies.
func passivePorts(addr string, n int, pasvFirst bool) ([]uint16, error) {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{{"USER anonymous", 331}, {"PASS guest", 230}, {"TYPE I", 200}} {
		if _, err := c.Cmd("%s", step.cmd); err != nil {
			return nil, err
		}
		if _, _, err := c.ReadResponse(step.code); err != nil {
			return nil, fmt.Errorf("%s: %w", step.cmd, err)
		}
	}
	var ports []uint16
	for i := range n {
		pasv := (i%2 == 0) == pasvFirst
		verb, code := "EPSV", 229
		if pasv {
			verb, code = "PASV", 227
		}
		if _, err := c.Cmd("%s", verb); err != nil {
			return ports, err
		}
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			return ports, fmt.Errorf("%s #%d: %w", verb, i, err)
		}
		var port uint16
		if pasv {
			ap, perr := rewrite.ParsePASV(msg)
			port, err = ap.Port(), perr
		} else {
			port, err = rewrite.ParseEPSV(msg)
		}
		if err != nil {
			return ports, fmt.Errorf("%s #%d: %w", verb, i, err)
		}
		ports = append(ports, port)
	}
	if _, err := c.Cmd("QUIT"); err != nil {
		return ports, err
	}
	_, _, err = c.ReadResponse(221)
	return ports, err
}

// fakeFTPServer serves logins and passive replies (whose ports nobody
// listens on: no transfer starts) on a loopback port and returns its
// address.
func fakeFTPServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { fakeFTPSession(c) })
		}
	})
	return l.Addr().String()
}

func fakeFTPSession(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	reply := func(s string) bool {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Write([]byte(s + "\r\n"))
		return err == nil
	}
	if !reply("220 fake server") {
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		var ok bool
		switch strings.ToUpper(verb) {
		case "USER":
			ok = reply("331 password please")
		case "PASS":
			ok = reply("230 logged in")
		case "TYPE":
			ok = reply("200 type set")
		case "EPSV":
			ok = reply("229 Entering Extended Passive Mode (|||2000|)")
		case "PASV":
			ok = reply("227 Entering Passive Mode (127,0,0,1,7,208)")
		case "QUIT":
			reply("221 bye")
			return
		default:
			ok = reply("502 not implemented")
		}
		if !ok {
			return
		}
	}
}

// TestReplicasManifestSlices: deploy/kubernetes/replicas.yaml (generated in
// a module of its own) publishes for each replica exactly the slice this
// ftpgate computes from the manifest's own configuration and command line.
func TestReplicasManifestSlices(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var config string
	var args []string
	servicePorts := map[string][]int{} // Service name -> ports
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
			Spec     struct {
				Ports []struct{ Port int }
				// StatefulSet
				Template struct {
					Spec struct {
						Containers []struct{ Args []string }
					}
				}
			}
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			config = doc.Data["ftpgate.yaml"]
		case "StatefulSet":
			args = doc.Spec.Template.Spec.Containers[0].Args
		case "Service":
			for _, p := range doc.Spec.Ports {
				servicePorts[doc.Metadata.Name] = append(servicePorts[doc.Metadata.Name], p.Port)
			}
		}
	}
	n := slices.Index(args, "--replicas")
	if config == "" || n < 0 || n+1 >= len(args) {
		t.Fatalf("no ftpgate configuration or no --replicas in the manifest (args %q)", args)
	}
	count, err := strconv.Atoi(args[n+1])
	if err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, config)
	for i := range count {
		fc, err := newRunFlags().parse([]string{"--config", file, "--replicas", args[n+1], "--replica-index", strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		pc, _, err := fc.settings()
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for p := int(pc.PassivePorts.Lo); p <= int(pc.PassivePorts.Hi); p++ {
			want = append(want, p)
		}
		name := fmt.Sprintf("ftpgate-data-%d", i)
		if got := servicePorts[name]; !slices.Equal(got, want) {
			t.Errorf("Service %s publishes %v; replica %d of %d listens on %v", name, got, i, count, pc.PassivePorts)
		}
	}
}
