// Package bridge is the firmware-bridge's host: it runs the protocol
// adapters of trackers and apps that cannot speak MQTT with tokens (each
// adapter its own package), finds the device each report names through the
// cloud's API, and publishes canonical positions to the broker.
//
// The bridge is a service client of the cloud: with the client credentials
// grant it gets a broker token (scope bridge: publish any device's
// positions and status) and an API token (scope devices:resolve), keeps
// them in DATA/tokens.json (mode 0600) and asks for new ones before they
// run out. A protocol identifier (an IMEI, an OsmAnd id) names the device
// whose id it is, or whose identifiers list it; answers are cached. An
// unknown identifier is refused and logged, at most once a minute per
// identifier, with how to register it. A device with a secret takes
// positions only through protocols that carry it.
//
// A report is acknowledged to the tracker (an HTTP 200, a protocol ACK)
// only once the broker has acknowledged its positions (MQTT QoS 1); when
// the broker does not, the tracker is told to retry (a 503, a closed
// connection), so nothing it was told was taken is lost.
package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"trackgate/internal/position"
	"trackgate/internal/server"
	"trackgate/internal/topic"
)

// Protocol describes one adapter: its name (its flag, --NAME ADDR), its
// default address, and how to build its handler, either HTTP or Stream.
type Protocol struct {
	// Name is the protocol's name, its flag and its metrics label.
	Name string
	// Addr is the default listen address; an empty flag disables it.
	Addr string
	// Usage describes the protocol in --help.
	Usage string
	// Flags, if set, registers the adapter's own flags (named NAME-…).
	Flags func(fs *flag.FlagSet)
	// HTTP builds the handler of an HTTP protocol.
	HTTP func(env *Env) (http.Handler, error)
	// Stream builds the handler of a stream (TCP) protocol.
	Stream func(env *Env) (StreamHandler, error)
}

// Config configures the bridge. Fields without a default are required.
type Config struct {
	// Cloud is the cloud's base URL: its /token and API.
	Cloud string
	// Issuer is the iss of the cloud's tokens, checked on device tokens;
	// default Cloud.
	Issuer string
	// MQTT is the broker's URL, e.g. tcp://127.0.0.1:1883.
	MQTT string
	// Data is the data directory: the token file (default ./var/bridge).
	Data string
	// ClientID and ClientSecret are the bridge's service client, made
	// with `cloud client add --service --scope "bridge devices:resolve"`.
	ClientID     string
	ClientSecret string
	// HTTP is the address of /healthz, /readyz and /metrics; "" disables
	// it.
	HTTP string
	// Listen maps each enabled protocol's name to its listen address.
	Listen map[string]string
	// Limits bound the stream protocols' connections.
	Limits Limits
	// HTTPRate is the requests per second one address may make to an HTTP
	// protocol, in bursts of HTTPBurst; defaults 20 and 200.
	HTTPRate  float64
	HTTPBurst int
	// CacheTTL is how long a device found by identifier is used before it
	// is looked up again; default 1 minute.
	CacheTTL time.Duration
	// PublishTimeout is how long a report waits for the broker's
	// acknowledgement before the tracker is told to retry; default 10 s.
	PublishTimeout time.Duration
	Logger         *slog.Logger
}

// Host runs the adapters. Create it with New.
type Host struct {
	cfg       Config
	adapters  []*adapter
	log       *slog.Logger
	reg       *prometheus.Registry
	metrics   *metrics
	tokens    *tokens
	resolver  *resolver
	publisher *publisher
	devTokens *deviceTokens
	unknown   unknownLog
}

// New checks cfg and returns the host of the enabled protocols among
// protocols. It does no I/O.
func New(cfg Config, protocols []*Protocol) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for key, v := range map[string]string{"cloud": cfg.Cloud, "mqtt": cfg.MQTT, "client-id": cfg.ClientID, "client-secret": cfg.ClientSecret} {
		if v == "" {
			return nil, fmt.Errorf("--%s is required", key)
		}
	}
	if cfg.Data == "" {
		cfg.Data = "./var/bridge"
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.HTTPRate <= 0 {
		cfg.HTTPRate = 20
	}
	if cfg.HTTPBurst <= 0 {
		cfg.HTTPBurst = 200
	}
	h := &Host{cfg: cfg, log: cfg.Logger}
	for _, p := range protocols {
		if (p.HTTP == nil) == (p.Stream == nil) {
			return nil, fmt.Errorf("protocol %s: give HTTP or Stream", p.Name)
		}
		if cfg.Listen[p.Name] == "" {
			continue
		}
		a := &adapter{p: p, env: &Env{Protocol: p.Name, Log: h.log.With("protocol", p.Name), host: h}}
		var err error
		if p.HTTP != nil {
			a.http, err = p.HTTP(a.env)
		} else {
			a.stream, err = p.Stream(a.env)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		h.adapters = append(h.adapters, a)
	}
	if len(h.adapters) == 0 {
		return nil, errors.New("no protocol enabled: give at least one listen address (--osmand, --gt06, …)")
	}
	h.reg = prometheus.NewRegistry()
	h.tokens = newTokens(cfg.Cloud, cfg.ClientID, cfg.ClientSecret, filepath.Join(cfg.Data, "tokens.json"), h.log)
	h.resolver = newResolver(cfg.Cloud, cfg.CacheTTL, h.tokens, h.log)
	var err error
	if h.devTokens, err = newDeviceTokens(cfg.Cloud, cmp.Or(cfg.Issuer, cfg.Cloud), cfg.Data, h.log); err != nil {
		return nil, err
	}
	h.publisher = newPublisher(cfg.MQTT, "svc:"+cfg.ClientID, cfg.PublishTimeout, h.tokens, h.log)
	h.metrics = newMetrics(h.reg, func() float64 {
		if h.publisher.connected() {
			return 1
		}
		return 0
	})
	return h, nil
}

// adapter is an enabled protocol with its handler.
type adapter struct {
	p      *Protocol
	env    *Env
	http   http.Handler
	stream StreamHandler
}

// Run connects to the broker, listens on every enabled protocol's address
// and serves until ctx ends. Then it stops accepting, lets reports in
// flight finish (their publishes acknowledged) for up to the publish
// timeout, closes the tracker connections, and disconnects from the broker.
func (h *Host) Run(ctx context.Context) error {
	if err := os.MkdirAll(h.cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	lns := make([]net.Listener, len(h.adapters))
	for i, a := range h.adapters {
		ln, err := net.Listen("tcp", h.cfg.Listen[a.p.Name])
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return fmt.Errorf("%s: listen %s: %w", a.p.Name, h.cfg.Listen[a.p.Name], err)
		}
		lns[i] = ln
		h.log.Info("listening", "protocol", a.p.Name, "addr", ln.Addr().String())
	}
	h.publisher.connect()
	defer h.publisher.disconnect()

	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Go(func() { h.devTokens.Run(ctx) })
	errc := make(chan error, len(lns)+1)
	var wg sync.WaitGroup
	for i, a := range h.adapters {
		serve := func() error { return h.serveStream(ctx, a.p.Name, lns[i], a.stream, h.cfg.Limits) }
		if a.http != nil {
			serve = func() error { return h.serveHTTP(ctx, a.env, lns[i], a.http) }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	if h.cfg.HTTP != "" {
		srv := server.New(server.Config{Addr: h.cfg.HTTP, Gatherer: h.reg, Logger: h.log,
			Checks: []server.Check{{Name: "broker", Check: func(context.Context) error {
				if !h.publisher.connected() {
					return errors.New("not connected to " + h.cfg.MQTT)
				}
				return nil
			}}}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Run(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// serveHTTP serves an HTTP protocol on ln until ctx ends, then shuts down,
// letting requests in flight finish.
func (h *Host) serveHTTP(ctx context.Context, env *Env, ln net.Listener, hd http.Handler) error {
	limits := &addressLimiter{rate: rate.Limit(h.cfg.HTTPRate), burst: h.cfg.HTTPBurst, m: map[string]*rate.Limiter{}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			defer func() { h.metrics.requests.WithLabelValues(env.Protocol, fmt.Sprint(rw.code)).Inc() }()
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if !limits.allow(host) {
				env.Drop(DropRateLimited)
				rw.Header().Set("Retry-After", "1")
				http.Error(rw, "too many requests", http.StatusTooManyRequests)
				return
			}
			hd.ServeHTTP(rw, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      h.cfg.PublishTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(env.Log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: serve: %w", env.Protocol, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.PublishTimeout+time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", env.Protocol, err)
	}
	<-errc
	return nil
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// addressLimiter is a request rate limit per client address.
type addressLimiter struct {
	rate  rate.Limit
	burst int

	mu sync.Mutex // guards m
	m  map[string]*rate.Limiter
}

// allow reports whether addr may make a request now. The table is cleared
// when it grows past 100,000 addresses, which forgives everyone at once
// rather than growing without bound.
func (a *addressLimiter) allow(addr string) bool {
	a.mu.Lock()
	l, ok := a.m[addr]
	if !ok {
		if len(a.m) >= 100_000 {
			clear(a.m)
		}
		l = rate.NewLimiter(a.rate, a.burst)
		a.m[addr] = l
	}
	a.mu.Unlock()
	return l.Allow()
}

// Env is what an adapter uses of the bridge: device lookups, publishing
// and counting, for one protocol.
type Env struct {
	// Protocol is the adapter's protocol name.
	Protocol string
	// Log is the adapter's logger.
	Log  *slog.Logger
	host *Host
}

// Resolve returns the device protocol identifier ident names. An unknown
// identifier is ErrUnknown, counted and logged (at most once a minute per
// identifier) with how to register it; ErrUnavailable when the cloud
// cannot be asked.
func (e *Env) Resolve(ctx context.Context, ident string) (*Device, error) {
	d, err := e.host.resolver.resolve(ctx, ident)
	switch {
	case errors.Is(err, ErrUnknown):
		e.Drop(DropUnknown)
		if e.host.unknown.due(ident, time.Now()) {
			e.Log.Warn("unknown device: register it with `trackctl devices add "+ident+"`, or add the identifier to a device with `trackctl devices set DEVICE --identifier "+ident+"`",
				"ident", ident)
		}
	case errors.Is(err, ErrUnavailable):
		e.Drop(DropUnavailable)
		e.Log.Warn("cannot look the device up", "ident", ident, "err", err)
	}
	return d, err
}

// DeviceToken verifies a device token (the password of apps that
// authenticate with one) and returns the device it was issued to, with its
// owner's name: ErrToken when it does not verify, ErrUnknown when the
// device is no longer registered.
func (e *Env) DeviceToken(ctx context.Context, raw string) (d *Device, owner string, err error) {
	c, err := e.host.devTokens.verify(ctx, raw)
	if err != nil {
		e.Drop(DropSecret)
		return nil, "", err
	}
	d, err = e.Resolve(ctx, c.Subject)
	return d, c.Owner, err
}

// Authorize checks that d may report through this protocol: with secret
// the secret it presented (hasSecret false for protocols that cannot carry
// one). It counts and returns ErrSecret or ErrNeedsSecret.
func (e *Env) Authorize(d *Device, secret string, hasSecret bool) error {
	if !hasSecret {
		if d.HasSecret() {
			e.Drop(DropNeedsSecret)
			return ErrNeedsSecret
		}
		return nil
	}
	if err := d.CheckSecret(secret); err != nil {
		e.Drop(DropSecret)
		return err
	}
	return nil
}

// Publish publishes positions of device d and waits for the broker to
// acknowledge them. Positions that fail validation are dropped and counted
// (their errors returned joined, after the valid ones are published).
func (e *Env) Publish(ctx context.Context, d *Device, ps []position.Position) error {
	now := time.Now()
	valid := ps[:0:0]
	var bad []error
	for _, p := range ps {
		if err := p.Validate(now); err != nil {
			e.Drop(DropInvalid)
			bad = append(bad, err)
			continue
		}
		valid = append(valid, p)
	}
	if len(valid) > 0 {
		if err := e.host.publisher.publish(ctx, d.ID, topic.Positions, appendPositions(nil, valid), false); err != nil {
			e.Drop(DropPublish)
			return err
		}
		e.host.metrics.positions.WithLabelValues(e.Protocol).Add(float64(len(valid)))
	}
	return errors.Join(bad...)
}

// Status is a tracker's state as the bridge publishes it, retained, on
// devices/{device}/status.
type Status struct {
	State  string    `json:"state"` // online or offline
	Time   time.Time `json:"time"`
	Source string    `json:"source"`           // the protocol
	Remote string    `json:"remote,omitempty"` // the tracker's address
	Batt   *float64  `json:"batt,omitempty"`   // battery level, percent
}

// PublishStatus publishes d's status, retained.
func (e *Env) PublishStatus(ctx context.Context, d *Device, st Status) error {
	st.Source = e.Protocol
	payload, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return e.host.publisher.publish(ctx, d.ID, topic.Status, payload, true)
}

// Online publishes that d is connected through c, with its battery level
// when batt is not nil.
func (e *Env) Online(ctx context.Context, d *Device, c *Conn, batt *float64) error {
	return e.PublishStatus(ctx, d, Status{State: "online", Time: time.Now().UTC(), Remote: c.RemoteAddr().String(), Batt: batt})
}

// Offline publishes that d's connection ended. It has its own few seconds
// to do so: the connection's context may have ended with it.
func (e *Env) Offline(ctx context.Context, d *Device) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = e.PublishStatus(ctx, d, Status{State: "offline", Time: time.Now().UTC()})
}

// PublishFix publishes a tracker's fix p of device d, or drops it (counted)
// when valid is false. Only a failure of the broker is returned: a
// position that fails validation is counted and logged on c.
func (e *Env) PublishFix(ctx context.Context, c *Conn, d *Device, p *position.Position, valid bool) error {
	if !valid {
		e.Drop(DropNoFix)
		return nil
	}
	err := e.Publish(ctx, d, []position.Position{*p})
	if errors.Is(err, ErrPublish) {
		return err
	}
	if err != nil {
		c.Log.Debug("position dropped", "err", err)
	}
	return nil
}

// Drop counts a report not published, by reason (a Drop… constant).
func (e *Env) Drop(reason string) { e.host.metrics.dropped.WithLabelValues(e.Protocol, reason).Inc() }

// unknownLog limits how often an unknown identifier is logged: once a
// minute per identifier.
type unknownLog struct {
	mu   sync.Mutex // guards last
	last map[string]time.Time
}

// due reports whether ident may be logged at now, and notes it.
func (u *unknownLog) due(ident string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last == nil || len(u.last) >= 10_000 {
		u.last = map[string]time.Time{}
	}
	if t, ok := u.last[ident]; ok && now.Sub(t) < time.Minute {
		return false
	}
	u.last[ident] = now
	return true
}

// ProtocolFlags registers the listen flag (--NAME ADDR) and the adapter's
// own flags of each protocol on fs, filling listen.
func ProtocolFlags(fs *flag.FlagSet, protocols []*Protocol, listen map[string]string) {
	for _, p := range protocols {
		listen[p.Name] = p.Addr
		fs.Func(p.Name, fmt.Sprintf("listen `address` of %s (default %q; empty disables it)", p.Usage, p.Addr), func(v string) error {
			listen[p.Name] = strings.TrimSpace(v)
			return nil
		})
		if p.Flags != nil {
			p.Flags(fs)
		}
	}
}
