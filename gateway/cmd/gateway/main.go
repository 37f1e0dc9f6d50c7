// Command gateway runs trackgate's edge process: the embedded MQTT broker that
// phones and the cloud connect to, one reader per GPS receiver, and the
// uplink that forwards the devices' messages to an upstream broker through
// an on-disk queue. `gateway enroll` enrols it with a cloud.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"trackgate/gateway"
	"trackgate/gateway/spool"
	"trackgate/hw/receiver"
	"trackgate/internal/config"
	"trackgate/internal/logx"
	"trackgate/internal/server"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "enroll" {
		return enroll(ctx, args[1:], stdout, stderr)
	}
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
	up := &cfg.Uplink
	fs.StringVar(&up.URL, "uplink", "", "upstream broker `URL` to forward the devices' positions and status to, mqtt://HOST[:1883] or mqtts://HOST[:8883]; empty keeps them local")
	tokenFile := fs.String("uplink-token-file", "", "`file` (mode 0600) holding the token the uplink connects with, read again at each connection; default the enrolment's (gateway enroll)")
	fs.StringVar(&up.ClientID, "uplink-client-id", "", "MQTT client `id` upstream (default the token's subject, a slash and the host name)")
	fs.StringVar(&up.CAFile, "uplink-ca", "", "PEM `file` of the authorities that sign the upstream broker's certificate (default the system's)")
	up.Queue.MaxBytes = 1 << 30
	fs.Func("uplink-queue-max", "largest size of the uplink queue on disk, `bytes` with an optional KiB, MiB or GiB suffix (default 1GiB)", func(v string) error {
		n, err := parseBytes(v)
		up.Queue.MaxBytes = n
		return err
	})
	fs.Func("uplink-queue-full", "what a full uplink queue does: `drop-oldest` (delete the oldest entries) or drop-new (refuse new ones; phones keep and resend them) (default drop-oldest)", func(v string) error {
		p, err := spool.ParseFullPolicy(v)
		up.Queue.Full = p
		return err
	})
	up.Queue.Sync = time.Second
	fs.Func("uplink-fsync", "when the uplink queue syncs to disk: `always` (before each message is acknowledged), never, or an interval such as 1s, the most a power cut can lose (default 1s)", func(v string) error {
		d, err := parseSync(v)
		up.Queue.Sync = d
		return err
	})
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (/debug/pprof/) on this loopback `address`, e.g. 127.0.0.1:6060; empty: off")
	log, err := logx.Parse(fs, "gateway [flags]\n       gateway enroll --cloud URL [flags]", args, stderr)
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		if _, err := server.ServeDebug(ctx, *pprofAddr, log); err != nil {
			return err
		}
	}
	if *sourcesFile != "" {
		specs, err := readSources(*sourcesFile)
		if err != nil {
			return config.Usagef("%v", err)
		}
		cfg.Sources = append(cfg.Sources, specs...)
	}
	cfg.Logger = log
	if up.URL != "" {
		if err := uplinkCredentials(up, *tokenFile, cfg.Broker.Auth.Data, log); err != nil {
			return err
		}
	}
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
