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
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"trackgate/broker"
	"trackgate/gateway/spool"
	"trackgate/gateway/uplink"
	"trackgate/hw/receiver"
	"trackgate/internal/logx"
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
	// Uplink forwards the devices' messages to an upstream broker through
	// an on-disk queue; an empty URL disables it.
	Uplink Uplink
	Logger *slog.Logger // default slog.Default()
}

// Uplink configures the gateway's uplink.
type Uplink struct {
	// URL, Token, ClientID and CAFile are the forwarder's (uplink.Config).
	URL      string
	Token    uplink.TokenSource
	ClientID string
	CAFile   string
	// Queue configures the queue; its Dir defaults to DATA/uplink.
	Queue spool.Config
	// Register, if set, makes sure the receivers' devices are registered
	// to the gateway's owner (an enrolled gateway); it is retried until it
	// succeeds.
	Register func(ctx context.Context, devices []string) error
	// Enrolment, if set, describes the gateway's enrolment in /status.
	Enrolment func() any
}

// Gateway is the edge process. Create it with New and start it with Run.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	broker  *broker.Broker
	readers []*receiver.Reader
	metrics *metrics
	http    *server.Server
	reg     *prometheus.Registry
	queue   *spool.Spool      // with an uplink, from Run
	fwd     *uplink.Forwarder // with an uplink, from Run
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
	g.reg = reg
	cfg.Broker.Registerer = reg
	if cfg.Uplink.URL != "" {
		if cfg.Uplink.Token == nil {
			return nil, errors.New("gateway: the uplink needs a token (enrol the gateway, or give --uplink-token-file)")
		}
		if cfg.Uplink.Queue.Dir == "" {
			cfg.Uplink.Queue.Dir = filepath.Join(cfg.Broker.Auth.Data, "uplink")
		}
		cfg.Uplink.Queue.Logger = cfg.Logger
		g.cfg.Uplink = cfg.Uplink
		cfg.Broker.Tap = func(topic string, payload []byte, retain bool) error {
			return g.queue.Append(topic, payload, retain)
		}
	}
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
// broker, then the uplink, whose queue keeps what it did not send.
func (g *Gateway) Run(ctx context.Context) error {
	if g.cfg.Uplink.URL != "" {
		stopUplink, err := g.startUplink(ctx)
		if err != nil {
			return err
		}
		defer stopUplink()
	}
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
	if g.cfg.Uplink.Register != nil && len(g.readers) > 0 {
		eg.Go(func() error { g.register(ctx); return nil })
	}
	err := eg.Wait()
	stopBroker()
	<-brokerDone
	if err == nil && brokerErr != nil {
		err = fmt.Errorf("gateway: %w", brokerErr)
	}
	return err
}

// startUplink opens the queue and starts the forwarder; the function it
// returns stops the forwarder and closes the queue.
func (g *Gateway) startUplink(ctx context.Context) (func(), error) {
	u := g.cfg.Uplink
	q, err := spool.Open(u.Queue)
	if err != nil {
		return nil, fmt.Errorf("gateway: uplink queue: %w", err)
	}
	fwd, err := uplink.New(uplink.Config{URL: u.URL, Token: u.Token, ClientID: u.ClientID, CAFile: u.CAFile,
		Spool: q, Dir: u.Queue.Dir, Logger: g.log})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := g.reg.Register(fwd.Collector()); err != nil {
		q.Close()
		return nil, fmt.Errorf("gateway: uplink metrics: %w", err)
	}
	g.queue, g.fwd = q, fwd
	st := q.Stats()
	g.log.Info("uplink queue open", "dir", u.Queue.Dir, "items", st.Items, "bytes", st.Bytes, "quarantined", st.Quarantined)
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fwd.Run(fctx)
	}()
	return func() {
		cancel()
		<-done
		if err := q.Close(); err != nil {
			g.log.Error("uplink queue not closed cleanly", logx.Err(err))
		}
	}, nil
}

// register makes sure the receivers' devices are registered to the
// gateway's owner, retrying with a backoff until it succeeds or ctx ends.
func (g *Gateway) register(ctx context.Context) {
	ids := make([]string, len(g.readers))
	for i, r := range g.readers {
		ids[i] = r.Spec().Device
	}
	for wait := 2 * time.Second; ; wait = min(2*wait, 5*time.Minute) {
		err := g.cfg.Uplink.Register(ctx, ids)
		if err == nil {
			return
		}
		g.log.Warn("receivers' devices not registered with the cloud; retrying", "devices", ids, "in", wait.String(), logx.Err(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
