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

// TestUnwrapBytes: a forwarded flow's count modulo 2^32 becomes the count
// nearest the announced size, and stays as it is without one.
func TestUnwrapBytes(t *testing.T) {
	const g = 1 << 32
	for _, tc := range []struct{ n, announced, want int64 }{
		{1000, -1, 1000},
		{1000, 1000, 1000},
		{1000, g + 1000, g + 1000},
		{1000, 3*g + 999, 3*g + 1000},
		{g - 10, 2*g - 10, 2*g - 10},
		{5, 2*g - 10, 2*g + 5}, // a cut transfer comes out nearest
	} {
		if got := unwrapBytes(tc.n, tc.announced); got != tc.want {
			t.Errorf("unwrapBytes(%d, %d) = %d, want %d", tc.n, tc.announced, got, tc.want)
		}
	}
}
