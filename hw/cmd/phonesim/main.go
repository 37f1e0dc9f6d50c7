// Command phonesim is a simulated phone: it publishes a moving position over
// MQTT once per interval, as the phone app would.
package main

import (
	"context"
	"flag"
	"io"
	"time"

	"trackgate/hw/phonesim"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("phonesim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg phonesim.Config
	fs.StringVar(&cfg.Broker, "mqtt", "tcp://127.0.0.1:1883", "broker `URL`")
	fs.StringVar(&cfg.Device, "device", "demo-phone", "device `id`")
	fs.StringVar(&cfg.Username, "username", "", "MQTT user name")
	fs.StringVar(&cfg.Password, "password", "", "MQTT password (device token)")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "time between positions")
	fs.Float64Var(&cfg.Route.Lat, "lat", 52.3731, "latitude of the centre of the simulated circuit")
	fs.Float64Var(&cfg.Route.Lon, "lon", 4.8922, "longitude of the centre of the simulated circuit")
	fs.Float64Var(&cfg.Route.Radius, "radius", 500, "radius of the circuit, metres")
	fs.Float64Var(&cfg.Route.Speed, "speed", 8.3, "speed, metres per second")
	fs.Float64Var(&cfg.Route.Alt, "alt", 2, "altitude, metres")
	log, err := logx.Parse(fs, "phonesim [flags]", args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	return phonesim.Run(ctx, cfg)
}
