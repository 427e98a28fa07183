package proxy

import (
	"crypto/tls"
	"net"
	"testing"
)

func TestValidateDataPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{{"", true}, {DataPathSplice, true}, {DataPathKernel, true}, {DataPathSockmap, true}, {"Kernel", false}, {"ebpf", false}} {
		if err := validateDataPath(tc.path); (err == nil) != tc.ok {
			t.Errorf("validateDataPath(%q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}

// TestKernelPathVeto: only two plain TCP legs may take the kernel path; the
// reason for any other pair is what the fallback log line says.
func TestKernelPathVeto(t *testing.T) {
	plain := &net.TCPConn{}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, tc := range []struct {
		name     string
		dst, src net.Conn
		want     string
	}{
		{"plain", plain, plain, ""},
		{"TLS client leg", tls.Client(a, &tls.Config{}), plain, "TLS data"},
		{"TLS server leg", plain, tls.Server(b, &tls.Config{}), "TLS data"},
		{"other", plain, a, "a data leg is not a plain TCP connection"},
	} {
		if got := kernelPathVeto(tc.dst, tc.src, 0); got != tc.want {
			t.Errorf("%s: veto %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestKernelPathNeedsAFlowForwarder: with --data-path kernel and a firewall
// that cannot forward flows (nat's fake), every transfer is spliced, byte
// for byte, and each says why in the log; active transfers say their own.
func TestKernelPathNeedsAFlowForwarder(t *testing.T) {
	h := newHarness(t, ServerPassive, func(f *fakeFTP, c *Config) { c.DataPath = DataPathKernel })
	want := []byte("spliced, not forwarded")
	h.ftp.files["f"] = want
	cl := h.dial()
	for _, mode := range []string{"EPSV", "PORT"} {
		if got := cl.transfer(mode, "RETR f", nil); string(got) != string(want) {
			t.Fatalf("%s download: %q", mode, got)
		}
	}
	cl.cmd(221, "QUIT")
	for reason, n := range map[string]int{
		"the firewall cannot forward data flows (it needs firewall mode own-table)": 1,
		"the client leg is active": 1,
	} {
		if got := h.logs.FilterMessage("kernel data path not used: " + reason + "; splicing instead").Len(); got != n {
			t.Errorf("%d log lines saying %q, want %d", got, reason, n)
		}
	}
}
