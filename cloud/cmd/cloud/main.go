// Command cloud runs trackgate's cloud: `cloud serve` starts the ingest bridge
// and the HTTP server.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"trackgate/cloud"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

const usage = `Usage: cloud COMMAND [flags]

Commands:
  serve    run the ingest bridge (MQTT → InfluxDB) and the HTTP server

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
	var lf logx.Flags
	lf.Register(fs)
	if err := config.Parse(fs, "cloud serve [flags]", args, nil); err != nil {
		return err
	}
	log, err := lf.New(stderr)
	if err != nil {
		return config.Usagef("%v", err)
	}
	cfg.Logger = log
	c, err := cloud.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return c.Run(ctx)
}
