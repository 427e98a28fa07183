package replicagen

import (
	"strings"
	"testing"
	"time"
)

// TestSlice pins the slicing to the examples cmd/ftpgate's TestReplicaSlice
// uses: both modules must cut a range the same way.
func TestSlice(t *testing.T) {
	tests := []struct {
		name         string
		lo, hi, n, i int
		wantLo       int
		wantHi       int
		wantErr      string
	}{
		{"first of three", 50000, 50299, 3, 0, 50000, 50099, ""},
		{"second of three", 50000, 50299, 3, 1, 50100, 50199, ""},
		{"last of three", 50000, 50299, 3, 2, 50200, 50299, ""},
		{"one replica keeps the range", 40000, 40999, 1, 0, 40000, 40999, ""},
		{"leftover ports at the top are nobody's", 40000, 40009, 3, 2, 40006, 40008, ""},
		{"one port each", 40000, 40002, 3, 2, 40002, 40002, ""},
		{"index equal to the count", 50000, 50299, 3, 3, 0, 0, "must be 0 to 2"},
		{"no replicas", 50000, 50299, 0, 0, 0, 0, "want 1 or more"},
		{"fewer ports than replicas", 50000, 50001, 3, 0, 0, 0, "cannot give each of 3 replicas a slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi, err := Slice(tt.lo, tt.hi, tt.n, tt.i)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Slice(%d, %d, %d, %d) = %d-%d, %v; want an error with %q", tt.lo, tt.hi, tt.n, tt.i, lo, hi, err, tt.wantErr)
				}
				return
			}
			if err != nil || lo != tt.wantLo || hi != tt.wantHi {
				t.Fatalf("Slice(%d, %d, %d, %d) = %d-%d, %v; want %d-%d", tt.lo, tt.hi, tt.n, tt.i, lo, hi, err, tt.wantLo, tt.wantHi)
			}
		})
	}
}

func TestGracePeriod(t *testing.T) {
	for _, tt := range []struct {
		grace time.Duration
		want  int64
	}{{30 * time.Second, 45}, {25 * time.Second, 40}, {1500 * time.Millisecond, 17}} {
		if got := GracePeriod(tt.grace); got != tt.want {
			t.Errorf("GracePeriod(%s) = %d, want %d", tt.grace, got, tt.want)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	good := "listen: [\"0.0.0.0:21\"]\npassive_ports: 40000-40047\nadmin_listen: 0.0.0.0:9121\n"
	tests := []struct {
		name, config string
		n            int
		want         string
	}{
		{"no replicas", good, 0, "replicas 0: want 1 or more"},
		{"more replicas than ports", good, 49, "cannot give each of 49 replicas a slice"},
		{"no passive ports", "listen: [\"0.0.0.0:21\"]\nadmin_listen: 0.0.0.0:9121\n", 3, `passive_ports "": want LO-HI`},
		{"two listen addresses", strings.Replace(good, `["0.0.0.0:21"]`, `["0.0.0.0:21", "[::]:21"]`, 1), 3, "want one address"},
		{"no admin endpoint", "listen: [\"0.0.0.0:21\"]\npassive_ports: 40000-40047\n", 3, "admin_listen (the probes need it)"},
		{"bad shutdown grace", good + "timeouts: {shutdown_grace: soon}\n", 3, `shutdown_grace "soon"`},
		{"not YAML", "listen: [", 3, "test.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(Options{Replicas: tt.n, Config: []byte(tt.config), ConfigFile: "test.yaml"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one with %q", err, tt.want)
			}
		})
	}
}
