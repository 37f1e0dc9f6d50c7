// Command gateway runs trackgate's edge process: the embedded MQTT broker that
// phones and the cloud connect to, and one reader per GPS receiver.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"trackgate/gateway"
	"trackgate/hw/receiver"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg gateway.Config
	cfg.Broker.Auth.Data = "./var/gateway"
	cfg.Broker.RegisterFlags(fs)
	fs.StringVar(&cfg.HTTP, "http", "127.0.0.1:8081", "HTTP `address` of /healthz, /metrics and /status; empty disables it")
	fs.Func("source", "a GPS receiver to read, `SOURCE=DEVICE`: serial:/dev/ttyUSB0[@BAUD], usb:VID:PID[:SERIAL][@BAUD] or tcp://HOST:PORT (repeatable; several separated by spaces)", func(v string) error {
		for _, f := range strings.Fields(v) {
			s, err := receiver.ParseSpec(f)
			if err != nil {
				return err
			}
			cfg.Sources = append(cfg.Sources, s)
		}
		return nil
	})
	sourcesFile := fs.String("sources", "", "`file` of further sources, one SOURCE=DEVICE per line (# comments)")
	rc := &cfg.Receiver
	fs.BoolVar(&rc.Lax, "nmea-lax", false, "accept NMEA sentences without a checksum")
	fs.BoolVar(&rc.ReadOnly, "read-only", false, "never write to a receiver (no identification query), for receivers that lock up when probed")
	fs.DurationVar(&rc.EpochIdle, "epoch-idle", 0, "hand on an epoch after the line was quiet this `long` when its last sentence is not yet learned (default 50ms)")
	fs.DurationVar(&rc.Silence, "silence", 0, "mark a source offline after no NMEA for this `long` (default 5s); a TCP source is reconnected, an auto-baud serial port reopened")
	fs.DurationVar(&rc.ReconnectMax, "reconnect-max", 0, "longest wait between attempts to reopen a source (default 800ms; jittered)")
	fs.DurationVar(&rc.StatusEvery, "status-interval", 0, "republish each device's status with fresh counters this `often` (default 10s)")
	log, err := logx.Parse(fs, "gateway [flags]", args, stderr)
	if err != nil {
		return err
	}
	if *sourcesFile != "" {
		specs, err := readSources(*sourcesFile)
		if err != nil {
			return config.Usagef("%v", err)
		}
		cfg.Sources = append(cfg.Sources, specs...)
	}
	cfg.Logger = log
	g, err := gateway.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return g.Run(ctx)
}

func readSources(path string) ([]receiver.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	defer f.Close()
	specs, err := receiver.ParseSpecs(f)
	if err != nil {
		return nil, fmt.Errorf("sources %s: %w", path, err)
	}
	return specs, nil
}
