// Command cloud runs trackgate's cloud: `cloud serve` starts the ingest bridge
// and the HTTP server; `cloud user`, `cloud device` and `cloud keys` manage
// the data directory's users, devices and signing keys.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"trackgate/cloud"
	"trackgate/internal/config"
	"trackgate/internal/logx"
	"trackgate/internal/server"
)

func main() { config.Main(run) }

const usage = `Usage: cloud COMMAND [flags]

Commands:
  serve                         run the ingest bridge (MQTT → InfluxDB) and the HTTP server
  user add NAME                 add a user; the password is read from standard input
  user passwd NAME              change a user's password (from standard input); revokes the user's sign-ins
  user totp NAME                enrol TOTP for a user; prints the otpauth:// URI (shown once); again: a new secret
  device add --owner NAME ID    register a device; prints its device token (alone) on standard output
  device rm ID                  delete a device and revoke its token
  client add --service NAME     add a service client (client credentials grant); prints {"client_id":…,"client_secret":…}
  client add --redirect-uri URI NAME
                                add an app that signs people in (code flow with PKCE); --confidential gives it a secret
  keys rotate                   publish a new signing key, which signs after --rotation-lead

Run "cloud COMMAND --help" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return config.Usagef("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "user", "device", "client", "keys":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return config.Usagef("%s: no subcommand given", args[0])
		}
		return admin(ctx, args[0]+" "+args[1], args[2:], os.Stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return config.Usagef("unknown command %q", args[0])
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloud serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg cloud.Config
	cfg.RegisterFlags(fs)
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (/debug/pprof/) on this loopback `address`, e.g. 127.0.0.1:6061; empty: off")
	log, err := logx.Parse(fs, "cloud serve [flags]", args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	if *pprofAddr != "" {
		if _, err := server.ServeDebug(ctx, *pprofAddr, log); err != nil {
			return err
		}
	}
	c, err := cloud.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return c.Run(ctx)
}
