// Package logx builds the structured logger every trackgate command uses and
// holds the small logging helpers they share.
package logx

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"trackgate/internal/config"
)

// Flags are the logging flags every command registers.
type Flags struct {
	Level  string // debug, info, warn or error
	Format string // text or json
}

// Register adds --log-level and --log-format to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.Format, "log-format", "text", "log format: text or json")
}

// New returns a logger writing to w as the flags say.
func (f Flags) New(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", f.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.Format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", f.Format)
}

// Err is the attribute every log line uses for an error.
func Err(err error) slog.Attr { return slog.Any("err", err) }

// Parse registers the logging flags on fs, parses args with config.Parse
// (the command line, then TRACKGATE_* variables), and returns the logger the
// flags ask for, writing to stderr. A bad logging flag is a usage error.
func Parse(fs *flag.FlagSet, synopsis string, args []string, stderr io.Writer) (*slog.Logger, error) {
	var f Flags
	f.Register(fs)
	if err := config.Parse(fs, synopsis, args, nil); err != nil {
		return nil, err
	}
	log, err := f.New(stderr)
	if err != nil {
		return nil, config.Usagef("%v", err)
	}
	return log, nil
}
