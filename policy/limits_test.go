package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ftpgate/ftpgate/rewrite"
)

func TestSession(t *testing.T) {
	rules := []ClientRule{
		{Name: "office", Listeners: []string{"public"}, Networks: pfx("198.18.0.0/24"), Action: "allow"},
		{Name: "others", Listeners: []string{"public"}, Action: "deny"},
	}
	tests := []struct {
		name  string
		rules []ClientRule
		facts SessionFacts
		allow bool
		rule  string
	}{
		{name: "no rules", facts: SessionFacts{Client: outsider}, allow: true},
		{name: "office on public", rules: rules, facts: SessionFacts{Client: office, Listener: "public"}, allow: true, rule: `client rule "office"`},
		{name: "outsider on public", rules: rules, facts: SessionFacts{Client: outsider, Listener: "public"}, rule: `client rule "others"`},
		{name: "outsider on another listener", rules: rules, facts: SessionFacts{Client: outsider, Listener: "inside"}, allow: true},
		{name: "by listener address", rules: []ClientRule{{Listeners: []string{"198.18.1.1:21"}, Action: "deny"}},
			facts: SessionFacts{Client: office, ListenerAddr: pubAddr}, rule: "client rule #1"},
		{name: "mapped client address", rules: []ClientRule{{Networks: pfx("198.18.0.0/24"), Action: "deny"}},
			facts: SessionFacts{Client: netip4in6(office)}, rule: "client rule #1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Clients: tt.rules}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			d := cfg.Session(tt.facts)
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Fatalf("Session = %+v, want allow=%v rule=%q", d, tt.allow, tt.rule)
			}
			if !d.Allow && (d.Code != 421 || d.Text == "" || !strings.Contains(d.Reason, tt.facts.Client.Addr().Unmap().String())) {
				t.Fatalf("denial %+v: want 421, a text and a reason naming the client", d)
			}
		})
	}
	if err := (Config{Clients: []ClientRule{{Name: "x"}}}).Validate(); err == nil || !strings.Contains(err.Error(), `client rule "x": no action`) {
		t.Fatalf("client rule without action: %v", err)
	}
}

func TestAdmitSession(t *testing.T) {
	tests := []struct {
		name              string
		lim               Limits
		active, perClient int
		allow             bool
		rule              string
	}{
		{name: "defaults, room", active: 1023, perClient: 63, allow: true},
		{name: "defaults, process full", active: 1024, perClient: 0, rule: "limits.max_sessions"},
		{name: "defaults, client full", active: 10, perClient: 64, rule: "limits.max_sessions_per_client"},
		{name: "custom", lim: Limits{MaxSessions: 5, MaxSessionsPerClient: 2}, active: 3, perClient: 2, rule: "limits.max_sessions_per_client"},
		{name: "off", lim: Limits{MaxSessions: -1, MaxSessionsPerClient: -1}, active: 1 << 20, perClient: 1 << 20, allow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.lim.AdmitSession(tt.active, tt.perClient)
			if d.Allow != tt.allow || d.Rule != tt.rule {
				t.Fatalf("AdmitSession(%d, %d) = %+v, want allow=%v rule=%q", tt.active, tt.perClient, d, tt.allow, tt.rule)
			}
			if !d.Allow && d.Code != 421 {
				t.Fatalf("code %d, want 421", d.Code)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{}.WithDefaults()
	want := Limits{MaxSessions: 1024, MaxSessionsPerClient: 64, MaxLoginFailures: 10, UpstreamConnect: "eager",
		DataIdleTimeout: 60 * time.Second, MaxLine: rewrite.DefaultMaxLine, MaxReply: rewrite.DefaultMaxReply,
		MaxReplyLines: rewrite.DefaultMaxReplyLines}
	if got != want {
		t.Fatalf("WithDefaults = %+v, want %+v", got, want)
	}
	if off := (Limits{DataIdleTimeout: -1, MaxLoginFailures: -1}).WithDefaults(); off.DataIdleTimeout != -1 || off.MaxLoginFailures != -1 {
		t.Fatalf("negative (off) values not kept: %+v", off)
	}
	if r := (Limits{MaxLine: 1000}).Reader(); r != (rewrite.Limits{MaxLine: 1000, MaxReply: rewrite.DefaultMaxReply, MaxReplyLines: rewrite.DefaultMaxReplyLines}) {
		t.Fatalf("Reader = %+v", r)
	}
	burst, rate, ok := Limits{}.LoginFailureRate()
	if !ok || burst != 10 || rate != 10.0/60 {
		t.Fatalf("LoginFailureRate = %d, %v, %v", burst, rate, ok)
	}
	if _, _, ok := (Limits{MaxLoginFailures: -1}).LoginFailureRate(); ok {
		t.Fatal("login failure limit not off")
	}
	for _, d := range []Decision{Limits{}.LoginCooldown(), Limits{MaxUploadSize: 10}.UploadTooLarge()} {
		if d.Allow || d.Code == 0 || d.Text == "" || d.Rule == "" {
			t.Fatalf("incomplete denial %+v", d)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		want string
	}{
		{name: "zero", lim: Limits{}},
		{name: "lazy", lim: Limits{UpstreamConnect: "lazy"}},
		{name: "bad connect", lim: Limits{UpstreamConnect: "soon"}, want: `upstream_connect "soon"`},
		{name: "tiny line", lim: Limits{MaxLine: 10}, want: "max_line 10"},
		{name: "reply smaller than a line", lim: Limits{MaxLine: 4096, MaxReply: 1000}, want: "max_reply 1000"},
		{name: "negative reply lines", lim: Limits{MaxReplyLines: -1}, want: "cannot be turned off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValidate(t, tt.lim.Validate(), tt.want)
		})
	}
}

func netip4in6(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}
