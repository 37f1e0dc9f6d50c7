// Command gpssim is a simulated GPS receiver: it writes NMEA 0183 on a
// pseudo-terminal, reached through a symlink, as a u-blox, SiRF or MediaTek
// receiver on a serial port would, with the faults asked for. It stops,
// removing the symlink, on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"trackgate/hw/gpssim"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("gpssim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg gpssim.Config
	var profile, route, faults string
	fs.StringVar(&cfg.Link, "link", "./var/gps0", "symlink to the receiver's pseudo-terminal, re-pointed at every plug-in")
	fs.Float64Var(&cfg.Rate, "rate", 1, "epochs per second, 0.1 to 20")
	fs.IntVar(&cfg.Baud, "baud", 9600, "line speed; a reader at another speed gets garbage (0: any speed)")
	fs.StringVar(&profile, "profile", string(gpssim.UBlox), "receiver: ublox, sirf or mtk")
	fs.StringVar(&route, "route", "", "GPX `file` to replay, looping (default: a generated loop)")
	fs.Float64Var(&cfg.Lat, "lat", 52.3702, "latitude where the generated loop starts")
	fs.Float64Var(&cfg.Lon, "lon", 4.8952, "longitude where the generated loop starts")
	fs.Float64Var(&cfg.Speed, "speed", 13.9, "speed, metres per second, along the generated loop or a route without times")
	fs.StringVar(&faults, "faults", "", "faults to reproduce: a `spec` such as badsum=0.01,garbage=0.05,drop=0.01,void=5s,unplug=30s,replug=5s")
	fs.Int64Var(&cfg.Seed, "seed", 1, "random seed of the faults and the generated loop")
	log, err := logx.Parse(fs, "gpssim [flags]", args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Profile = gpssim.Profile(profile)
	if cfg.Faults, err = gpssim.ParseFaults(faults); err != nil {
		return config.Usagef("--faults: %v", err)
	}
	if route != "" {
		if cfg.Route, err = loadRoute(route); err != nil {
			return err
		}
	}
	sim, err := gpssim.New(cfg)
	if err != nil {
		return config.Usagef("%v", err)
	}
	return sim.Run(ctx)
}

// loadRoute reads the GPX file name.
func loadRoute(name string) ([]gpssim.Point, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--route: %w", err)
	}
	defer f.Close()
	pts, err := gpssim.LoadGPX(f)
	if err != nil {
		return nil, fmt.Errorf("--route %s: %w", name, err)
	}
	return pts, nil
}
