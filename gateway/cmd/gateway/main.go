// Command gateway runs trackgate's edge process: the embedded MQTT broker that
// phones and the cloud connect to.
package main

import (
	"context"
	"flag"
	"io"

	"trackgate/gateway"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg gateway.Config
	cfg.Broker.RegisterFlags(fs, true)
	var lf logx.Flags
	lf.Register(fs)
	if err := config.Parse(fs, "gateway [flags]", args, nil); err != nil {
		return err
	}
	log, err := lf.New(stderr)
	if err != nil {
		return config.Usagef("%v", err)
	}
	cfg.Logger = log
	g, err := gateway.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return g.Run(ctx)
}
