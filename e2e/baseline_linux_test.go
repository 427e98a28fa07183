//go:build linux

package e2e

import (
	"testing"
)

// TestBaseline runs every client and mode directly against every server, routed through the
// proxy namespace without ftpgate. It proves the harness (topology, servers, clients,
// checksums) and is the reference the ftpgate tests are compared with.
func TestBaseline(t *testing.T) {
	t.Parallel()
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requirePrereqs(t, serverNeed(kind), needCurl, needLftp, needPython)
			tp := newTopology(t)
			srv := startServer(t, tp, kind)
			t.Run("transfers", func(t *testing.T) {
				runMatrix(t, tp, srv, nil, directV4(), directV6())
				runMirrors(t, tp, srv, directV4())
			})
		})
	}
}
