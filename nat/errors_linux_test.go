package nat

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestExplain(t *testing.T) {
	// As the nftables library returns them: an errno inside a netlink
	// OpError, wrapped with context.
	wrap := func(errno unix.Errno) error {
		return fmt.Errorf("receive: NFT_MSG_NEWTABLE: %w", &netlink.OpError{Op: "receive", Err: errno})
	}
	tests := []struct {
		name      string
		err       error
		setup     bool // explainSetup instead of explain
		list      bool // explainList instead of explain
		want      string
		unchanged bool
	}{
		{name: "no permission", err: wrap(unix.EPERM), want: "CAP_NET_ADMIN"},
		{name: "no permission says the way out", err: wrap(unix.EPERM), want: "firewall mode none"},
		{name: "no nfnetlink", err: wrap(unix.EPROTONOSUPPORT), want: "modprobe nf_tables"},
		{name: "no family", err: wrap(unix.EAFNOSUPPORT), want: "CONFIG_NF_TABLES_INET"},
		{name: "old kernel", err: wrap(unix.EOPNOTSUPP), want: "Linux 5.12"},
		{name: "set full", err: wrap(unix.ENFILE), want: "raise the \"size\""},
		{name: "missing module in setup", err: wrap(unix.ENOENT), setup: true, want: "nft_ct"},
		{name: "no nf_tables subsystem", err: wrap(unix.EINVAL), list: true, want: "modprobe nf_tables"},
		{name: "invalid elsewhere", err: wrap(unix.EINVAL), unchanged: true},
		{name: "missing object elsewhere", err: wrap(unix.ENOENT), unchanged: true},
		{name: "other errno", err: wrap(unix.EBUSY), unchanged: true},
		{name: "not an errno", err: errors.New("odd"), unchanged: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got error
			switch {
			case tc.setup:
				got = explainSetup(tc.err)
			case tc.list:
				got = explainList(tc.err)
			default:
				got = explain(tc.err)
			}
			if tc.unchanged {
				if got != tc.err {
					t.Errorf("explain(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !strings.Contains(got.Error(), tc.want) || !strings.HasPrefix(got.Error(), tc.err.Error()) {
				t.Errorf("explain(%v) = %q, want the error followed by a hint containing %q", tc.err, got, tc.want)
			}
			var errno unix.Errno
			if !errors.As(got, &errno) || !errors.Is(got, tc.err) {
				t.Errorf("explain(%v) lost the wrapped error", tc.err)
			}
		})
	}
	if explain(nil) != nil {
		t.Error("explain(nil) != nil")
	}
	if !IsPermission(explain(wrap(unix.EPERM))) || IsPermission(explain(wrap(unix.ENOENT))) {
		t.Error("IsPermission does not see through explain")
	}
}
