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
	}{{"", true}, {DataPathSplice, true}, {DataPathKernel, true}, {"Kernel", false}, {"ebpf", false}} {
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
