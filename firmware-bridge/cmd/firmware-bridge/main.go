// Command firmware-bridge speaks the protocols of tracker firmware and apps
// that cannot speak MQTT with tokens (OsmAnd / Traccar Client, OwnTracks
// HTTP, GT06, H02) and republishes their positions to the broker as the
// devices they name.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"trackgate/firmware-bridge/bridge"
	"trackgate/firmware-bridge/gt06"
	"trackgate/firmware-bridge/h02"
	"trackgate/firmware-bridge/osmand"
	"trackgate/firmware-bridge/owntracks"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

// protocols is the bridge's explicit list of adapters: a new protocol is
// one more line here.
func protocols() []*bridge.Protocol {
	return []*bridge.Protocol{
		osmand.Protocol(),
		owntracks.Protocol(),
		gt06.Protocol(),
		h02.Protocol(),
	}
}

func main() { config.Main(run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("firmware-bridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bridge.Config{Listen: map[string]string{}}
	fs.StringVar(&cfg.Cloud, "cloud", "http://127.0.0.1:8080", "the cloud's base `URL`: its token endpoint and API")
	fs.StringVar(&cfg.Issuer, "issuer", "", "the `iss` of the cloud's tokens, checked on device tokens (default: the --cloud URL)")
	fs.StringVar(&cfg.MQTT, "mqtt", "tcp://127.0.0.1:1883", "the broker's `URL` (tcp://, ssl:// or ws://)")
	fs.StringVar(&cfg.Data, "data", "./var/bridge", "data `directory`: the bridge's tokens (mode 0600), the cached signing keys and revocation list")
	fs.StringVar(&cfg.ClientID, "client-id", "firmware-bridge", "the bridge's service client `id` (cloud client add --service --scope \"bridge devices:resolve\" ID)")
	secretFile := fs.String("client-secret-file", "", "`file` holding the service client's secret, or the JSON `cloud client add` printed (mode 0600; required)")
	fs.StringVar(&cfg.HTTP, "http", "127.0.0.1:8085", "HTTP `address` of /healthz, /readyz and /metrics; empty disables it")
	bridge.ProtocolFlags(fs, protocols(), cfg.Listen)
	l := &cfg.Limits
	fs.IntVar(&l.PerAddress, "max-conns-per-address", 64, "most TCP tracker connections one IP address may hold open")
	fs.DurationVar(&l.Idle, "idle-timeout", 0, "close a TCP tracker connection silent this `long` (default 5m)")
	fs.DurationVar(&l.Frame, "frame-timeout", 0, "close a TCP tracker connection that takes longer than this to send a frame it began (default 30s)")
	fs.Float64Var(&l.Rate, "frame-rate", 0, "frames per second a TCP tracker connection may send on average (default 5)")
	fs.IntVar(&l.Burst, "frame-burst", 0, "frames a TCP tracker connection may send at once, as when it uploads its buffer (default 100)")
	fs.Float64Var(&cfg.HTTPRate, "http-rate", 0, "requests per second one address may make to an HTTP protocol (default 20)")
	fs.IntVar(&cfg.HTTPBurst, "http-burst", 0, "requests one address may make at once to an HTTP protocol (default 200)")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", 0, "look a device up in the cloud again after this `long` (default 1m)")
	fs.DurationVar(&cfg.PublishTimeout, "publish-timeout", 0, "how `long` a report waits for the broker before the tracker is told to retry (default 10s)")
	log, err := logx.Parse(fs, "firmware-bridge --client-secret-file F [flags]", args, stderr)
	if err != nil {
		return err
	}
	if *secretFile == "" {
		return config.Usagef("--client-secret-file is required (the secret `cloud client add --service` printed)")
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return config.Usagef("%v", err)
	}
	cfg.ClientSecret = secret
	cfg.Logger = log
	h, err := bridge.New(cfg, protocols())
	if err != nil {
		return config.Usagef("%v", err)
	}
	return h.Run(ctx)
}

// readSecret reads the client secret from a file only its owner can read.
func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("client secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("client secret file %s is readable by others (mode %s): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("client secret: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if strings.HasPrefix(s, "{") {
		// The JSON `cloud client add --service` prints, kept as it is.
		var c struct {
			Secret string `json:"client_secret"`
		}
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return "", fmt.Errorf("client secret file %s: %w", path, err)
		}
		s = c.Secret
	}
	if s == "" {
		return "", fmt.Errorf("client secret file %s is empty", path)
	}
	return s, nil
}
