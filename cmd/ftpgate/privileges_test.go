package main

import (
	"errors"
	"strings"
	"testing"
)

// fakeCaps is an effective capability set for checkCapabilities.
func fakeCaps(caps ...capability) func() (uint64, error) {
	return func() (uint64, error) {
		var m uint64
		for _, c := range caps {
			m |= 1 << c
		}
		return m, nil
	}
}

func TestCapabilityCheck(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		portMin int // net.ipv4.ip_unprivileged_port_start
		have    []capability
		missing []string // capabilities the error must name; none: no error
		absent  []string // capabilities the error must not name
	}{
		{"reverse, no firewall, high port", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\nfirewall: {mode: none}\n", 1024, nil, nil, nil},
		{"own-table needs net_admin", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\n", 1024, nil, []string{"CAP_NET_ADMIN", "own-table"}, []string{"CAP_NET_BIND_SERVICE"}},
		{"external-set needs net_admin", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\nfirewall: {mode: external-set, table: filter}\n", 1024, nil, []string{"CAP_NET_ADMIN", "external-set"}, nil},
		{"port 21 needs bind_service", "upstream: a:21\nlisten: [\"198.18.0.1:21\"]\nfirewall: {mode: none}\n", 1024, nil, []string{"CAP_NET_BIND_SERVICE", "listen 198.18.0.1:21"}, []string{"CAP_NET_ADMIN"}},
		{"default listen :21", "upstream: a:21\nfirewall: {mode: none}\n", 1024, nil, []string{"CAP_NET_BIND_SERVICE", ":21"}, nil},
		{"low port allowed by sysctl", "upstream: a:21\nlisten: [\"198.18.0.1:21\"]\nfirewall: {mode: none}\n", 0, nil, nil, nil},
		{"implicit FTPS on 990", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\nfirewall: {mode: none}\ntls: {implicit_listen: [\"198.18.0.1:990\"], cert: CERT, key: KEY}\n", 1024, nil, []string{"CAP_NET_BIND_SERVICE", "implicit_listen"}, nil},
		{"admin on a low port", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\nfirewall: {mode: none}\nadmin_listen: 127.0.0.1:91\n", 1024, nil, []string{"admin_listen"}, nil},
		{"low passive ports", "upstream: a:21\nlisten: [\"198.18.0.1:2121\"]\nfirewall: {mode: none}\npassive_ports: 900-1100\n", 1024, nil, []string{"passive_ports"}, nil},
		{"both missing, both named", "upstream: a:21\nlisten: [\"198.18.0.1:21\"]\n", 1024, nil, []string{"capabilities CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "--ambient-caps=+net_admin,+net_bind_service"}, nil},
		{"both granted", "upstream: a:21\nlisten: [\"198.18.0.1:21\"]\n", 1024, []capability{capNetAdmin, capNetBindService}, nil, nil},
		{"only one granted", "upstream: a:21\nlisten: [\"198.18.0.1:21\"]\n", 1024, []capability{capNetBindService}, []string{"capability CAP_NET_ADMIN"}, []string{"CAP_NET_BIND_SERVICE"}},
		{"redirect with firewall none still marks sockets", "mode: redirect\nlisten: [\"0.0.0.0:8021\"]\nfirewall: {mode: none}\n", 1024, nil, []string{"CAP_NET_ADMIN", "SO_MARK"}, nil},
		{"tproxy needs net_admin, not net_raw", "mode: tproxy\nlisten: [\"0.0.0.0:8021\"]\nfirewall: {mode: none}\n", 1024, nil, []string{"CAP_NET_ADMIN", "IP_TRANSPARENT"}, []string{"CAP_NET_RAW"}},
		{"tproxy granted net_admin only", "mode: tproxy\nlisten: [\"0.0.0.0:8021\"]\n", 1024, []capability{capNetAdmin}, nil, nil},
	}
	cert, key := writeCert(t, t.TempDir(), "ftpgate.test")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := strings.NewReplacer("CERT", cert, "KEY", key).Replace(tt.file)
			fc, err := loadFile(writeConfig(t, file))
			if err != nil {
				t.Fatal(err)
			}
			pc, nc, err := fc.settings()
			if err != nil {
				t.Fatal(err)
			}
			err = checkCapabilities(capabilityNeeds(pc, nc, fc.AdminListen, tt.portMin), fakeCaps(tt.have...))
			if len(tt.missing) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; want one naming %v", tt.missing)
			}
			for _, w := range tt.missing {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range tt.absent {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

func TestCapabilityReadError(t *testing.T) {
	needs := []capNeed{{capNetAdmin, "firewall"}}
	err := checkCapabilities(needs, func() (uint64, error) { return 0, errors.New("capget: EPERM") })
	if err == nil || !strings.Contains(err.Error(), "capget: EPERM") {
		t.Fatalf("error %v, want the read error", err)
	}
	if err := checkCapabilities(nil, func() (uint64, error) { t.Error("read without a need"); return 0, nil }); err != nil {
		t.Fatal(err)
	}
}
