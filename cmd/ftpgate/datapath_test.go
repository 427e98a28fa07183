package main

import (
	"strings"
	"testing"

	"github.com/ftpgate/ftpgate/proxy"
)

// TestDataPathSetting: data_path in the file, --data-path over it, and a
// wrong value is an error naming the choices.
func TestDataPathSetting(t *testing.T) {
	file := writeConfig(t, "upstream: 198.18.1.2:21\nfirewall:\n  mode: none\ndata_path: kernel\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // DataPath, or the error's text
		err  bool
	}{
		{"default", []string{"--upstream", "198.18.1.2:21", "--firewall", "none"}, "", false},
		{"flag", []string{"--upstream", "198.18.1.2:21", "--firewall", "none", "--data-path", "kernel"}, proxy.DataPathKernel, false},
		{"file", []string{"--config", file}, proxy.DataPathKernel, false},
		{"flag over file", []string{"--config", file, "--data-path", "splice"}, proxy.DataPathSplice, false},
		{"bad", []string{"--upstream", "198.18.1.2:21", "--firewall", "none", "--data-path", "ebpf"}, "want splice, kernel or sockmap", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc, err := newRunFlags().parse(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			pc, _, err := fc.settings()
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pc.DataPath != tc.want {
				t.Fatalf("data path %q, want %q", pc.DataPath, tc.want)
			}
		})
	}
}
