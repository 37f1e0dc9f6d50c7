// Command broker runs trackgate's MQTT broker on its own, without the
// gateway's GPS readers.
package main

import (
	"context"
	"flag"
	"io"

	"trackgate/broker"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg broker.Config
	cfg.Auth.Data = "./var/broker"
	cfg.RegisterFlags(fs)
	log, err := logx.Parse(fs, "broker [flags]", args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	b, err := broker.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return b.Run(ctx)
}
