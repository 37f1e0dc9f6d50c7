// Package config gives every trackgate command the same command-line
// contract: each flag may also be set as the environment variable
// TRACKGATE_<FLAG> (upper case, dashes as underscores), a flag given on the
// command line wins over the environment, and --help lists both.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "TRACKGATE_"

// EnvName is the environment variable that sets the flag named name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ErrHelp is returned by Parse when help was asked for and printed. Other
// errors it returns are *UsageError.
var ErrHelp = flag.ErrHelp

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable, looked up with getenv (os.Getenv when
// nil). synopsis heads the --help text, which lists each flag with its
// variable and default.
func Parse(fs *flag.FlagSet, synopsis string, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs.Usage = func() { Usage(fs.Output(), fs, synopsis) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{Err: err}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if len(errs) > 0 {
		return &UsageError{Err: errors.Join(errs...)}
	}
	return nil
}

// Usage writes the help text of fs: the synopsis, then one entry per flag
// with its environment variable, default and description.
func Usage(w io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintf(w, "Usage: %s\n", synopsis)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\nFlags (each also settable as the environment variable shown):\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\t[%s]", f.Name, typ, EnvName(f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "\n      %s\n", usage)
	})
}
