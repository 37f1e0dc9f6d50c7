// Package cloud assembles trackgate's cloud process: the MQTT → InfluxDB
// ingest bridge, the authorization server, the tracks and their REST API,
// and the HTTP server with its health, readiness and metrics endpoints.
package cloud

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"trackgate/cloud/api"
	"trackgate/cloud/auth"
	"trackgate/cloud/influx"
	"trackgate/cloud/ingest"
	"trackgate/cloud/jobs"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/cloud/web"
	"trackgate/internal/server"
	"trackgate/internal/topic"
)

// Config configures the cloud process.
type Config struct {
	HTTP   string            // HTTP listen address, default "127.0.0.1:8080"
	TLS    TLSConfig         // HTTPS; without it HTTP listens on loopback only
	MQTT   ingest.MQTTConfig // the broker the ingest bridge subscribes to
	Influx influx.Config     // where positions are stored
	Ingest ingest.Config     // batching and retry of the ingest bridge
	Data   string            // data directory: the SQL store and the signing keys
	Auth   auth.Config       // the authorization server
	Web    WebConfig         // the website
	// ImportMaxMB is the largest import upload, in MiB (default 1024);
	// ImportBatchSize the positions per InfluxDB write of an import.
	ImportMaxMB     int64
	ImportBatchSize int
	// MQTTPasswordFile holds the ingest bridge's MQTT password; without
	// it the bridge presents a broker token the cloud signs itself.
	MQTTPasswordFile string
	Logger           *slog.Logger // default slog.Default()
}

// WebConfig configures the website.
type WebConfig struct {
	// TilesURL is the map's tile URL template; empty for no tiles.
	TilesURL, TilesAttribution string
	// PhoneMQTT is the broker URL phones connect to, shown in new devices'
	// OwnTracks settings (default: the --mqtt URL).
	PhoneMQTT string
}

// RegisterDataFlags adds the flags every command that opens the data
// directory shares: --data and --issuer.
func (c *Config) RegisterDataFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Data, "data", "./var/cloud", "data `directory`: the SQL store and the signing keys")
	fs.StringVar(&c.Auth.Issuer, "issuer", "http://127.0.0.1:8080", "the cloud's public base `URL`: the issuer of its tokens")
	fs.DurationVar(&c.Auth.DeviceTokenTTL, "device-token-ttl", 365*24*time.Hour, "lifetime of device tokens (revocable)")
	fs.DurationVar(&c.Auth.AccessTokenTTL, "access-token-ttl", auth.MaxAccessTokenTTL, "lifetime of access tokens (at most 15m)")
}

// OpenAuth opens the SQL store in dir and the authorization server on it.
// The caller closes the store.
func OpenAuth(ctx context.Context, dir string, cfg auth.Config) (*auth.Server, *store.Store, error) {
	st, err := store.Open(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	a, err := auth.New(ctx, cfg, st, dir)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return a, st, nil
}

// RegisterFlags adds the flags of `cloud serve` to fs, writing into c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.RegisterDataFlags(fs)
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "HTTP(S) listen `address`; plain HTTP only on a loopback address")
	fs.DurationVar(&c.Auth.RefreshGrace, "refresh-grace", 0, "window in which a rotated refresh token presented again gets the same successor instead of revoking its grant (at most 10s)")
	fs.DurationVar(&c.Auth.RefreshIdle, "refresh-idle", 30*24*time.Hour, "lifetime of an unused refresh token")
	fs.DurationVar(&c.Auth.RefreshMax, "refresh-max", 90*24*time.Hour, "longest a sign-in is refreshed for")
	fs.DurationVar(&c.Auth.SessionTTL, "session-ttl", 12*time.Hour, "lifetime of a sign-in session at the authorization server")
	fs.StringVar(&c.TLS.Cert, "tls-cert", "", "HTTPS certificate chain `file` (PEM), reloaded when it changes")
	fs.StringVar(&c.TLS.Key, "tls-key", "", "HTTPS private key `file` (PEM)")
	fs.StringVar(&c.TLS.ACMEDomain, "acme-domain", "", "get HTTPS certificates automatically (ACME) for these comma-separated `hosts`")
	fs.StringVar(&c.TLS.ACMEEmail, "acme-email", "", "contact `address` for the ACME CA")
	fs.StringVar(&c.TLS.ACMEDirectory, "acme-directory", "", "ACME directory `URL` (default Let's Encrypt)")
	fs.StringVar(&c.TLS.Redirect, "http-redirect", "", "plain-HTTP listen `address` that redirects to HTTPS and answers ACME challenges, e.g. :80")
	fs.StringVar(&c.MQTT.Broker, "mqtt", "tcp://127.0.0.1:1883", "`URL` of the MQTT broker positions arrive on (tcp://, ssl://, ws://)")
	fs.StringVar(&c.MQTT.ClientID, "mqtt-client-id", ingest.DefaultClientID, "MQTT client `id` of the ingest bridge (its persistent session); svc:cloud or svc:cloud/… to use the broker token the cloud signs for itself")
	fs.StringVar(&c.MQTT.Username, "mqtt-username", "", "MQTT user `name` of the ingest bridge, with --mqtt-password-file, for a broker that does not take the cloud's own tokens")
	fs.StringVar(&c.MQTTPasswordFile, "mqtt-password-file", "", "`file` holding the ingest bridge's MQTT password (see --mqtt-username)")
	fs.StringVar(&c.Influx.URL, "influx-url", "http://127.0.0.1:8086", "InfluxDB base `URL`")
	fs.StringVar(&c.Influx.Org, "influx-org", "trackgate", "InfluxDB organisation (ignored by InfluxDB 1.x)")
	fs.StringVar(&c.Influx.Bucket, "influx-bucket", "trackgate", "InfluxDB bucket (on 1.x: database or database/retention-policy)")
	fs.StringVar(&c.Influx.Token, "influx-token", "", "InfluxDB API `token` (on 1.x: user:password, or empty when auth is off)")
	fs.Int64Var(&c.ImportMaxMB, "import-max-mb", 1024, "largest file an import takes, in MiB")
	fs.IntVar(&c.ImportBatchSize, "import-batch-size", 5000, "positions per InfluxDB write of an import")
	fs.IntVar(&c.Ingest.BatchSize, "ingest-batch-size", 5000, "positions per InfluxDB write")
	fs.DurationVar(&c.Ingest.BatchWait, "ingest-batch-wait", 100*time.Millisecond, "longest wait to fill a batch")
	fs.IntVar(&c.Ingest.MaxUnacked, "ingest-max-unacked", 50000, "messages held unacknowledged at most (backpressure beyond)")
	fs.IntVar(&c.Ingest.Writers, "ingest-writers", 2, "concurrent writes to InfluxDB")
	fs.StringVar(&c.Web.TilesURL, "tiles-url", web.DefaultTilesURL, "map tile `URL` template of the website ({z}/{x}/{y}, {s} for subdomains); empty: no tiles, tracks on a plain background")
	fs.StringVar(&c.Web.TilesAttribution, "tiles-attribution", web.DefaultTilesAttribution, "credit line the map shows for its tiles")
	fs.StringVar(&c.Web.PhoneMQTT, "phone-mqtt", "", "broker `URL` phones connect to (tcp://HOST:1883 or mqtts://HOST:8883), shown in a new device's OwnTracks settings (default: --mqtt)")
}

// Cloud is the cloud process. Create it with New and start it with Run.
type Cloud struct {
	cfg    Config
	auth   atomic.Pointer[auth.Server]    // once Run opened it
	tracks atomic.Pointer[tracks.Service] // once Run opened the store
	influx *influx.Client
	bridge *ingest.Bridge
	site   *web.Server
	http   *server.Server
	// redirect serves the plain-HTTP listener next to HTTPS.
	redirect http.Handler
}

// New checks cfg and wires the cloud's parts. Its only I/O is reading the
// TLS certificate files.
func New(cfg Config) (*Cloud, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTP == "" {
		return nil, errors.New("cloud: no HTTP address (--http)")
	}
	if cfg.Data == "" {
		return nil, errors.New("cloud: no data directory (--data)")
	}
	if err := cfg.TLS.check(cfg.HTTP); err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	c := &Cloud{}
	var tlsCfg *tls.Config
	var redirect http.Handler
	if cfg.TLS.enabled() {
		var err error
		if tlsCfg, redirect, err = cfg.TLS.build(cfg.Data, cfg.Logger); err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
	}
	if cfg.Web.PhoneMQTT == "" {
		cfg.Web.PhoneMQTT = cfg.MQTT.Broker
	}
	site, err := web.New(web.Config{TilesURL: cfg.Web.TilesURL, TilesAttribution: cfg.Web.TilesAttribution, MQTT: cfg.Web.PhoneMQTT,
		Logger: cfg.Logger.With("component", "web"), Session: c.webPage})
	if err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	c.site = site
	cfg.Ingest.Logger = cfg.Logger.With("component", "ingest")
	cfg.Ingest.OnStored = c.stored
	cfg.MQTT.Control = c.control
	db, err := influx.New(cfg.Influx)
	if err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.influx = db
	if cfg.MQTTPasswordFile != "" {
		pw, err := os.ReadFile(cfg.MQTTPasswordFile)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("cloud: MQTT password: %w", err)
		}
		cfg.MQTT.Password = strings.TrimRight(string(pw), "\r\n")
	} else if cfg.MQTT.Username == "" {
		cfg.MQTT.Credentials = c.brokerCredentials
	}
	bridge, err := ingest.NewBridge(cfg.MQTT, cfg.Ingest, db, ingest.NewMetrics(reg))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cloud: %w", err)
	}
	srv := server.New(server.Config{
		Addr:     cfg.HTTP,
		TLS:      tlsCfg,
		Gatherer: reg,
		Logger:   cfg.Logger.With("component", "http"),
		Checks: []server.Check{
			{Name: "influxdb", Check: db.Ping},
			{Name: "mqtt", Check: func(context.Context) error {
				if !bridge.Connected() {
					return fmt.Errorf("not connected to %s", cfg.MQTT.Broker)
				}
				return nil
			}},
		},
	})
	c.cfg, c.bridge, c.http, c.redirect = cfg, bridge, srv, redirect
	return c, nil
}

// stored files the positions the ingest bridge stored in their tracks.
func (c *Cloud) stored(ctx context.Context, batch []ingest.Stored) {
	if t := c.tracks.Load(); t != nil {
		t.Record(ctx, batch)
	}
}

// control carries out the devices' session and status messages.
func (c *Cloud) control(ctx context.Context, device, kind string, payload []byte, at time.Time) error {
	t := c.tracks.Load()
	if t == nil {
		return errors.New("the track store is not open yet")
	}
	if kind == topic.Session {
		return t.Session(ctx, device, payload, at)
	}
	return t.Status(ctx, device, payload, at)
}

// ingestService is the service name of the broker token the cloud signs
// for its ingest bridge: its subject is svc:cloud.
const ingestService = "cloud"

// brokerCredentials gives the ingest bridge a fresh broker token of its own
// at every connection. Before Run opened the authorization server, and if
// signing fails, the password is empty and the broker refuses the
// connection; the bridge tries again.
func (c *Cloud) brokerCredentials() (string, string) {
	user := auth.ServicePrefix + ingestService
	a := c.auth.Load()
	if a == nil {
		return user, ""
	}
	tok, err := a.BrokerToken(context.Background(), ingestService, auth.ScopeIngest)
	if err != nil {
		c.cfg.Logger.Error("broker token for the ingest bridge", "err", err)
		return user, ""
	}
	return user, tok
}

// webPage checks a website page's session at the authorization server.
func (c *Cloud) webPage(w http.ResponseWriter, r *http.Request) (*auth.WebSession, bool) {
	return c.auth.Load().WebPage(w, r)
}

// HTTP returns the HTTP server (for its address once Ready).
func (c *Cloud) HTTP() *server.Server { return c.http }

// Run opens the data directory and runs the cloud until ctx ends or a part
// fails; then it stops every part: the ingest bridge writes and acknowledges
// what it holds, the HTTP server finishes its requests.
func (c *Cloud) Run(ctx context.Context) error {
	defer c.influx.Close()
	authCfg := c.cfg.Auth
	authCfg.OnRevoke = c.bridge.NotifyRevocations
	a, st, err := OpenAuth(ctx, c.cfg.Data, authCfg)
	if err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	defer st.Close()
	c.auth.Store(a)
	a.Mount(c.http.Handle)
	var rest *api.Server
	trk := tracks.New(tracks.Config{Store: st, Points: c.influx, Logger: c.cfg.Logger.With("component", "tracks"),
		Live: func(e tracks.Event) { rest.Publish(e) }, Watched: func(owner int64) bool { return rest.Watched(owner) }})
	jb, err := jobs.New(jobs.Config{Store: st, Points: c.influx, Tracks: trk, Dir: filepath.Join(c.cfg.Data, "imports"),
		MaxUpload: c.cfg.ImportMaxMB << 20, BatchSize: c.cfg.ImportBatchSize, Logger: c.cfg.Logger.With("component", "jobs")})
	if err != nil {
		return fmt.Errorf("cloud: %w", err)
	}
	rest = api.New(api.Config{Auth: a, Store: st, Tracks: trk, Jobs: jb, Logger: c.cfg.Logger.With("component", "api")})
	rest.Mount(c.http.Handle)
	c.site.Mount(c.http.Handle)
	c.tracks.Store(trk)
	g, ctx := errgroup.WithContext(ctx)
	stopLive := context.AfterFunc(ctx, rest.Close)
	defer stopLive()
	g.Go(func() error { return c.http.Run(ctx) })
	g.Go(func() error { return c.bridge.Run(ctx) })
	g.Go(func() error { return trk.Run(ctx) })
	g.Go(func() error { return jb.Run(ctx) })
	if c.cfg.TLS.Redirect != "" {
		g.Go(func() error {
			return runRedirect(ctx, c.cfg.TLS.Redirect, c.redirect, c.cfg.Logger.With("component", "http"))
		})
	}
	return g.Wait()
}
