package demo

import (
	"fmt"
	"io"
	"time"
)

// narrator writes the demo's story: plain lines, notes (setup), items
// (what one side said) and results.
type narrator struct{ w io.Writer }

func (n *narrator) line(format string, args ...any) { fmt.Fprintf(n.w, format+"\n", args...) }
func (n *narrator) note(format string, args ...any) { n.line("* "+format, args...) }
func (n *narrator) item(format string, args ...any) { n.line("   "+format, args...) }
func (n *narrator) result(format string, args ...any) {
	n.line("   => "+format, args...)
}

// picture draws the lab for a shape.
func (n *narrator) picture(shape string) {
	if shape == shapeReverse {
		n.line("  client ns                gateway ns                         server ns")
		n.line("  198.18.0.2 --eth0--c0-- 198.18.0.1:21  ftpgate  198.18.1.1 --s0--eth0-- 198.18.1.2:21")
		n.line("  connects to the gateway  relays to the server; forwards nothing (policy drop)")
		return
	}
	n.line("  client ns                gateway ns                         server ns")
	n.line("  198.18.0.2 --eth0--c0-- 198.18.0.1  ftpgate  198.18.1.1 --s0--eth0-- 198.18.1.2:21")
	n.line("  connects to the server   intercepts tcp/21; forward policy drop, no FTP helper")
}

func size(n int64) string {
	const mib = 1 << 20
	if n >= mib {
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	}
	return fmt.Sprintf("%d bytes", n)
}

func secs(s float64) string { return fmt.Sprintf("%.2f s", s) }

func since(t time.Time) string { return secs(time.Since(t).Seconds()) }

func rate(n int64, s float64) string {
	if s <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB/s", float64(n)/s/(1<<20))
}

// short abbreviates a checksum for reading; the full one is in the logs.
func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16] + "..."
	}
	return sum
}
