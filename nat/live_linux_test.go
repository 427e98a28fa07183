package nat

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSetDataPorts: a reload's new passive range replaces the closed range
// of the own table in one transaction, pinholes in the sets stay, and Ping
// answers until Shutdown.
func TestSetDataPorts(t *testing.T) {
	ns := newNS(t)
	fw := newFirewall(t, ns, Config{DataPorts: []PortRange{{40000, 40100}}})
	kf := fw.(*kernelFirewall)
	ctx := context.Background()
	if err := kf.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	p := pinholeCases[0].p
	if err := fw.Open(ctx, p, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := kf.SetDataPorts(ctx, []PortRange{{41000, 41009}}); err != nil {
		t.Fatalf("SetDataPorts: %v", err)
	}
	got := listOwnTable(t, ns)
	if !strings.Contains(got, "41000-41009") || strings.Contains(got, "40000-40100") {
		t.Fatalf("table after SetDataPorts(41000-41009):\n%s", got)
	}
	if n := len(ns.setElements(t, "inet", "ftpgate", pinholeCases[0].set)); n != 1 {
		t.Fatalf("pinholes after SetDataPorts: %d, want the 1 that was open", n)
	}
	if err := fw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kf.Ping(ctx); err == nil {
		t.Fatal("Ping after Shutdown: nil, want an error")
	}
}
