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

// TestFlowLogGroupSetting: flow_log_group in the file, --flow-log-group over
// it, zero for nat's default, and a group out of range is an error.
func TestFlowLogGroupSetting(t *testing.T) {
	file := writeConfig(t, "upstream: 198.18.1.2:21\ndata_path: kernel\nflow_log_group: 5000\n")
	base := []string{"--upstream", "198.18.1.2:21", "--data-path", "kernel"}
	for _, tc := range []struct {
		name string
		args []string
		want uint16
		err  string
	}{
		{"default", base, 0, ""},
		{"flag", append(base, "--flow-log-group", "77"), 77, ""},
		{"zero is the default", append(base, "--flow-log-group", "0"), 0, ""},
		{"largest", append(base, "--flow-log-group", "65535"), 65535, ""},
		{"file", []string{"--config", file}, 5000, ""},
		{"flag over file", []string{"--config", file, "--flow-log-group", "6000"}, 6000, ""},
		{"too big", append(base, "--flow-log-group", "65536"), 0, "want an NFLOG group from 1 to 65535"},
		{"negative", append(base, "--flow-log-group", "-1"), 0, "want an NFLOG group from 1 to 65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc, err := newRunFlags().parse(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			_, nc, err := fc.settings()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !nc.Flows.Enabled || nc.Flows.LogGroup != tc.want {
				t.Fatalf("flows %+v, want enabled with log group %d", nc.Flows, tc.want)
			}
		})
	}
}
