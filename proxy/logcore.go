package proxy

import (
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A session's logger carries its context (session id, client, server,
// user) on every line. zap's With encodes that context at once into a
// buffer of its own, at least 1 KiB from zap's pool, and a session holds two
// such loggers for its whole life: at 8,000 idle sessions that was 16 MiB.
// fieldCore keeps the context as fields instead, a few hundred bytes, and
// encodes it with each line written (a line or two per command: nothing on
// the data path).

// sessionLogger returns parent with fields as the context of every line.
func sessionLogger(parent *zap.Logger, fields ...zap.Field) *zap.Logger {
	return parent.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		if fc, ok := c.(fieldCore); ok {
			return fc.With(fields)
		}
		return fieldCore{Core: c, fields: slices.Clip(fields)}
	}))
}

// fieldCore is a zapcore.Core whose context is kept as fields. It is for a
// core whose Check tests only the level, as an ioCore's does (ftpgate's
// loggers are not sampled): Check offers the entry to this core, which
// writes it with its context through the one beneath.
type fieldCore struct {
	zapcore.Core
	fields []zapcore.Field
}

func (c fieldCore) With(fields []zapcore.Field) zapcore.Core {
	return fieldCore{Core: c.Core, fields: append(slices.Clip(c.fields), fields...)}
}

func (c fieldCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c fieldCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.Core.Write(e, append(slices.Clip(c.fields), fields...))
}
