package proxy

import (
	"bytes"
	"net/netip"
	"runtime"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// jsonLogger logs JSON lines without a timestamp into buf at level lvl.
func jsonLogger(buf *bytes.Buffer, lvl zap.AtomicLevel) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(buf), lvl))
}

// TestSessionLoggerLines: a session logger writes the same lines as zap's
// own With, through a chain of With calls and a level change.
func TestSessionLoggerLines(t *testing.T) {
	var want, got bytes.Buffer
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	client := netip.MustParseAddrPort("198.18.0.7:40001")
	zl := jsonLogger(&want, lvl).With(zap.Uint64("session", 7), zap.Stringer("client", client))
	sl := sessionLogger(jsonLogger(&got, lvl), zap.Uint64("session", 7), zap.Stringer("client", client))
	for _, l := range []*zap.Logger{zl, sl} {
		l.Info("session start")
		l = l.With(zap.String("user", "anonymous"))
		l.Debug("hidden")
		l.Info("login", zap.Int("code", 230))
		lvl.SetLevel(zap.DebugLevel)
		l.Debug("shown")
		lvl.SetLevel(zap.InfoLevel)
	}
	if want.String() != got.String() {
		t.Fatalf("session logger wrote\n%s\nzap's With wrote\n%s", got.String(), want.String())
	}
	if n := bytes.Count(got.Bytes(), []byte("\n")); n != 3 {
		t.Fatalf("%d lines, want 3:\n%s", n, got.String())
	}
}

// TestSessionLoggerSmall: a session logger and its With keep their context
// as fields, far less than zap's encoded context (a 1 KiB buffer each).
func TestSessionLoggerSmall(t *testing.T) {
	var buf bytes.Buffer
	parent := jsonLogger(&buf, zap.NewAtomicLevelAt(zap.InfoLevel))
	const n = 200
	ls := make([]*zap.Logger, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range ls {
		ls[i] = sessionLogger(parent, zap.Uint64("session", uint64(i)), zap.String("client", "198.18.0.7:40001")).
			With(zap.String("user", "anonymous"))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1024 {
		t.Fatalf("a session logger allocated %d bytes, want under 1 KiB", per)
	}
	runtime.KeepAlive(ls)
}
