// Package gateway is trackgate's edge process: it embeds the MQTT broker that
// phones and the cloud connect to. Serial GPS readers, network NMEA sources
// and the uplink to an upstream broker join it here.
package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"trackgate/broker"
)

// Config configures a Gateway.
type Config struct {
	Broker broker.Config // the embedded broker
	Logger *slog.Logger  // default slog.Default()
}

// Gateway is the edge process. Create it with New and start it with Run.
type Gateway struct {
	cfg    Config
	broker *broker.Broker
}

// New checks cfg and returns a Gateway. It does no I/O.
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Broker.Logger == nil {
		cfg.Broker.Logger = cfg.Logger
	}
	b, err := broker.New(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return &Gateway{cfg: cfg, broker: b}, nil
}

// Broker returns the embedded broker (for its addresses once Ready).
func (g *Gateway) Broker() *broker.Broker { return g.broker }

// Run runs the gateway until ctx ends, then stops it in order.
func (g *Gateway) Run(ctx context.Context) error {
	return g.broker.Run(ctx)
}
