// Command trackctl is trackgate's command-line client: it signs in to a
// cloud in the browser (authorization code with PKCE and a loopback
// redirect) or with a code typed on another device (device grant), keeps
// the tokens in a 0600 file refreshed as they near expiry, and lists,
// exports and deletes tracks, manages devices and recording, and imports
// track files as server-side jobs with progress.
//
// Exit status: 0 ok, 1 error, 2 usage, 3 not signed in or sign-in ended.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"trackgate/cloud/credentials"
	"trackgate/internal/config"
)

const synopsis = `trackctl COMMAND [flags]

Commands:
  login [--server URL] [--device] [--profile NAME]   sign in (browser, or a code with --device)
  logout [--profile NAME]                            revoke the sign-in and forget its tokens
  whoami                                             the signed-in user and server
  tracks ls [--device D] [--from T] [--to T] [--limit N] [--all]
  tracks show ID
  tracks export ID [--format gpx|geojson|csv|json] [--simplify M] [-o FILE]
  tracks rm ID...
  devices ls | devices rm ID
  devices add ID [--name N] [--identifier X]... [--speed-unit U] [--secret]
  devices set ID [--name N] [--identifier X]... [--no-identifiers] [--speed-unit U] [--secret | --no-secret]
  record start --device D [--name N] | record stop --device D
  import FILE... --device D [--format F] [--name N] [--no-wait]
  jobs ls [--state S] | jobs show ID [--wait] | jobs cancel ID

Every command takes --profile NAME and --json (machine-readable output);
flags may also be set as TRACKGATE_<FLAG> environment variables.
Tokens are kept in $XDG_CONFIG_HOME/trackgate/credentials.json (mode 0600).
Exit status: 0 ok, 1 error, 2 usage, 3 not signed in or sign-in ended.`

// exitAuth is the exit status of a command that needs the user to sign in.
const exitAuth = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps err to trackctl's exit status, printing it to w.
func exitCode(err error, w io.Writer) int {
	var ae *apiError
	if errors.Is(err, credentials.ErrNotSignedIn) || errors.Is(err, credentials.ErrSignInAgain) ||
		errors.Is(err, credentials.ErrInsecure) || (errors.As(err, &ae) && ae.Status == 401) {
		fmt.Fprintln(w, "error:", err)
		return exitAuth
	}
	return config.ExitCode(err, w)
}

// env is what every command runs with.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// set by the common flags
	profile string
	json    bool
	creds   string // credentials file; default under the user's config directory
}

// command is a subcommand: its flags are registered on fs, and run is
// called with the arguments that remain.
type command struct {
	name, usage string
	flags       func(fs *flag.FlagSet)
	run         func(e *env, args []string) error
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "Usage:", synopsis)
		if len(args) == 0 {
			return config.Usagef("no command")
		}
		return nil
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	name := args[0]
	args = args[1:]
	if group, ok := groups[name]; ok {
		if len(args) == 0 {
			return config.Usagef("%s: want a subcommand: %s", name, strings.Join(group.names(), ", "))
		}
		cmd, ok := group[args[0]]
		if !ok {
			return config.Usagef("%s: unknown subcommand %q (want %s)", name, args[0], strings.Join(group.names(), ", "))
		}
		return e.runCommand(name+" "+args[0], cmd, args[1:])
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintln(stderr, "Usage:", synopsis)
		return config.Usagef("unknown command %q", name)
	}
	return e.runCommand(name, cmd, args)
}

// runCommand parses a command's flags (which may come before, between or
// after its arguments) and runs it.
func (e *env) runCommand(name string, cmd command, args []string) error {
	fs := flag.NewFlagSet("trackctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&e.profile, "profile", "", "sign-in `profile` to use (default: the default profile)")
	fs.BoolVar(&e.json, "json", false, "print JSON for scripts instead of tables")
	fs.StringVar(&e.creds, "credentials", "", "credentials `file` (default $XDG_CONFIG_HOME/trackgate/credentials.json)")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	var rest []string
	for {
		if err := config.Parse(fs, "trackctl "+name+" "+cmd.usage, args, nil); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
		if len(args) == 0 {
			break
		}
	}
	if e.creds == "" {
		p, err := credentials.DefaultPath()
		if err != nil {
			return err
		}
		e.creds = p
	}
	return cmd.run(e, rest)
}

// group is a command with subcommands.
type group map[string]command

func (g group) names() []string {
	var out []string
	for _, n := range []string{"ls", "show", "export", "rm", "add", "set", "start", "stop", "cancel"} {
		if _, ok := g[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

var commands, groups = map[string]command{}, map[string]group{}

func init() {
	for _, c := range []command{loginCommand, logoutCommand, whoamiCommand, importCommand} {
		commands[c.name] = c
	}
	groups["tracks"] = group{"ls": tracksLs, "show": tracksShow, "export": tracksExport, "rm": tracksRm}
	groups["devices"] = group{"ls": devicesLs, "add": devicesAdd, "set": devicesSet, "rm": devicesRm}
	groups["record"] = group{"start": recordStart, "stop": recordStop}
	groups["jobs"] = group{"ls": jobsLs, "show": jobsShow, "cancel": jobsCancel}
}

// connect checks a command's argument count and returns its API client.
func (e *env) connect(args []string, minN, maxN int, what string) (*client, error) {
	if err := needArgs(args, minN, maxN, what); err != nil {
		return nil, err
	}
	return e.client()
}

// needArgs checks a command's argument count.
func needArgs(args []string, minN, maxN int, what string) error {
	if len(args) < minN || (maxN >= 0 && len(args) > maxN) {
		return config.Usagef("want %s", what)
	}
	return nil
}
