// Package gateway is trackgate's edge process: it embeds the MQTT broker that
// phones and the cloud connect to, and runs one reader per GPS receiver
// (serial port, USB receiver or NMEA-over-TCP server), publishing each fix
// to the broker as its device and keeping the device's retained status
// (online, no-fix, offline, with counters) up to date. It serves /healthz,
// /metrics and /status over HTTP.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"trackgate/broker"
	"trackgate/hw/receiver"
	"trackgate/internal/server"
)

// Config configures a Gateway.
type Config struct {
	Broker broker.Config // the embedded broker
	// HTTP is the address of /healthz, /metrics and /status; "" disables it.
	HTTP string
	// Sources are the receivers to read.
	Sources []receiver.Spec
	// Receiver holds the settings every reader shares (its Spec and Logger
	// are filled in per source).
	Receiver receiver.Config
	Logger   *slog.Logger // default slog.Default()
}

// Gateway is the edge process. Create it with New and start it with Run.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	broker  *broker.Broker
	readers []*receiver.Reader
	metrics *metrics
	http    *server.Server
}

// New checks cfg and returns a Gateway. It does no I/O.
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Broker.Logger == nil {
		cfg.Broker.Logger = cfg.Logger
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger}
	reg := prometheus.NewRegistry()
	cfg.Broker.Registerer = reg
	b, err := broker.New(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.broker = b
	seen := make(map[string]string)
	for _, spec := range cfg.Sources {
		if other, ok := seen[spec.Device]; ok {
			return nil, fmt.Errorf("gateway: sources %s and %s both publish as device %q", other, spec.Source(), spec.Device)
		}
		seen[spec.Device] = spec.Source()
		rc := cfg.Receiver
		rc.Spec, rc.Logger = spec, cfg.Logger
		g.readers = append(g.readers, receiver.New(rc, newPublisher(g, spec.Device)))
	}
	g.metrics = newMetrics(reg, g.readers)
	if cfg.HTTP != "" {
		g.http = server.New(server.Config{Addr: cfg.HTTP, Gatherer: reg, Logger: cfg.Logger})
		g.http.Handle("GET /status", g.statusHandler())
	}
	return g, nil
}

// Broker returns the embedded broker (for its addresses once Ready).
func (g *Gateway) Broker() *broker.Broker { return g.broker }

// HTTP returns the HTTP server, nil when disabled.
func (g *Gateway) HTTP() *server.Server { return g.http }

// Run runs the gateway until ctx ends, then stops it in order: the readers
// first (each publishes its device offline), then the HTTP server and the
// broker.
func (g *Gateway) Run(ctx context.Context) error {
	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	var brokerErr error
	brokerDone := make(chan struct{})
	go func() {
		defer close(brokerDone)
		brokerErr = g.broker.Run(brokerCtx)
	}()
	select {
	case <-g.broker.Ready():
	case <-brokerDone:
		return fmt.Errorf("gateway: %w", brokerErr)
	}

	eg, ctx := errgroup.WithContext(ctx)
	if g.http != nil {
		eg.Go(func() error { return g.http.Run(ctx) })
	}
	for _, r := range g.readers {
		eg.Go(func() error { return r.Run(ctx) })
	}
	// A broker failing mid-run stops everything else.
	eg.Go(func() error {
		select {
		case <-brokerDone:
			if brokerErr == nil {
				brokerErr = errors.New("broker stopped")
			}
			return fmt.Errorf("gateway: %w", brokerErr)
		case <-ctx.Done():
			return nil
		}
	})
	err := eg.Wait()
	stopBroker()
	<-brokerDone
	if err == nil && brokerErr != nil {
		err = fmt.Errorf("gateway: %w", brokerErr)
	}
	return err
}
