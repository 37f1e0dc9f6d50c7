package broker

import (
	"context"
	"log/slog"
)

// mochiHandler filters the embedded Mochi server's logs: it leaves out the
// packet dumps Mochi attaches to some records (they hold payloads, that is
// people's positions, and run to kilobytes), and demotes to debug the
// records of what the broker's own hooks already log and count (refused
// publishes and the packets behind them).
type mochiHandler struct{ slog.Handler }

// demoted are Mochi's messages for events trackgate's hooks log themselves.
var demoted = map[string]bool{
	"publish packet error":    true,
	"error processing packet": true,
}

// Enabled reports whether the level is wanted: debug records are checked
// when they are written, since a demoted record may be above it.
func (h mochiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l) || h.Handler.Enabled(ctx, slog.LevelDebug)
}

// Handle writes r without its packet attributes, at debug level if demoted.
func (h mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if demoted[r.Message] {
		level = slog.LevelDebug
	}
	if !h.Handler.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pk" && a.Key != "packet" {
			out.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, out)
}

// WithAttrs keeps the filter on the derived handler.
func (h mochiHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return mochiHandler{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the filter on the derived handler.
func (h mochiHandler) WithGroup(name string) slog.Handler {
	return mochiHandler{h.Handler.WithGroup(name)}
}
