// Package broker is trackgate's embedded MQTT broker: a Mochi MQTT v2 server
// with TCP, TLS and MQTT-over-WebSocket listeners that authenticates every
// client with a signed token (a device's, a service's or a person's), allows
// each only the topics its token grants, validates positions (and translates
// OwnTracks) before they fan out, and disconnects a session when its token
// expires or is revoked. Run blocks until its context ends and then
// disconnects clients and closes.
//
// The gateway embeds it; broker/cmd/broker runs it alone.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	pebbledb "github.com/cockroachdb/pebble"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/internal/server"
)

// Config configures a Broker. The zero value of every field but Verifier and
// InsecureAllowAll is usable.
type Config struct {
	// TCP is the address of the plain MQTT listener, e.g. ":1883" (":0" picks
	// a free port); empty disables it.
	TCP string
	// TLS is the address of the MQTT over TLS listener, e.g. ":8883"; it
	// needs TLSCert and TLSKey. Empty disables it.
	TLS string
	// TLSCert and TLSKey are the PEM files of the TLS listener's certificate
	// chain and key, reloaded when they change.
	TLSCert, TLSKey string
	// WebSocket is the address of the MQTT-over-WebSocket listener, e.g.
	// ":8083"; empty disables it.
	WebSocket string
	// Auth says where the keys and the revocation list of the tokens
	// clients present come from. Required unless Verifier or
	// InsecureAllowAll is set.
	Auth AuthConfig
	// Verifier, if set, checks the tokens instead of one built from Auth.
	Verifier Verifier
	// Revocations, if set with Verifier, tells the broker of revoked tokens
	// so that it disconnects their sessions at once.
	Revocations RevocationSource
	// InsecureAllowAll lets every client connect and use every topic. It is
	// for experiments only, and the broker says so loudly when it starts.
	InsecureAllowAll bool
	// MaxInflight is how many QoS 1 and 2 messages the broker holds per client
	// while they wait for an acknowledgement; default 16384, at most 65535.
	// A durable subscriber (the ingest bridge) is never let fall behind by
	// more than half of it, or of its write queue (WriteQueue): publishers
	// are held back instead. Any other subscriber that falls further behind
	// loses what overflows, counted. Half the default keeps the ingest
	// bridge's batches full at 100,000 positions/s; a larger window only
	// queues more (latency), and costs memory and store writes, as every
	// message in flight is persisted.
	MaxInflight uint16
	// WriteQueue is how many messages may wait to be written to one client
	// (default 256, 16 to 65536); one more is dropped, counted, except for
	// a durable subscriber, whose publishers are held back when half of it
	// is taken. Its buffer, 8 bytes a message, is allocated with every
	// connection, idle ones included, and stays resident once the memory
	// it takes was used before.
	WriteQueue int
	// MaxPacketSize is the largest MQTT packet accepted, in bytes; a client
	// sending a larger one is disconnected. Default 1 MiB: far above the
	// 64 KiB position payload limit, yet bounded.
	MaxPacketSize uint32
	// KeepaliveMin and KeepaliveMax bound the keepalive a client may ask
	// for, in seconds (defaults 5 and 3600); a client asking for none gets
	// KeepaliveMax, so that a dead connection is always noticed.
	KeepaliveMin, KeepaliveMax uint16
	// ConnRate is how many connections per second one remote address may
	// open (default 10, with a burst of ConnBurst, default 100); a negative
	// ConnRate turns the limit off.
	ConnRate  float64
	ConnBurst int
	// Persist keeps sessions, subscriptions and retained messages in a
	// Pebble store in Auth.Data/mqtt, and the QoS 1 and 2 messages in
	// flight in a log in Auth.Data/mqtt-inflight, so that they survive a
	// restart. PersistSync syncs every write to disk (survives a
	// power cut, at a cost in throughput); without it a write survives the
	// process being killed, not the machine losing power.
	Persist, PersistSync bool
	// Tap, if set, is given every message accepted on a device's
	// positions, status and session topics (OwnTracks already translated)
	// before its publisher is acknowledged, and the devices' wills: the
	// gateway's uplink queue. An error refuses the message: an MQTT 5
	// publisher gets PUBACK 0x97 (quota exceeded), a 3.1.1 one no PUBACK,
	// so that it sends the message again; an inside publisher's message is
	// dropped (the Tap counts it).
	Tap func(topic string, payload []byte, retain bool) error
	// Registerer receives the broker's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Logger receives the broker's logs; default slog.Default().
	Logger *slog.Logger
}

// RevocationSource reports revoked tokens, and fetches the list again when
// asked: *token.Revocations is one.
type RevocationSource interface {
	OnRevoke(func(jtis []string))
	Refresh()
}

// Broker is an embedded MQTT broker. Create it with New and start it with Run.
type Broker struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	m    *metrics
	auth *tokenAuth // the verifier built from Config.Auth, if any

	mu    sync.Mutex // guards addrs and srv
	addrs map[string]net.Addr
	srv   *mqtt.Server // while serving
}

// server returns the Mochi server while serving, else nil.
func (b *Broker) server() *mqtt.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

// ErrNotRunning is returned by Publish when the broker is not serving.
var ErrNotRunning = errors.New("broker: not running")

// Publish publishes a message from inside the process (the gateway's own
// readers) to the broker's subscribers, as QoS 1: subscribers at QoS 1 get it
// at least once, and a persistent session that is offline keeps it. Inside
// publishers are trusted: no authentication or ACL applies.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	srv := b.server()
	if srv == nil {
		return ErrNotRunning
	}
	if err := srv.Publish(topic, payload, retain, 1); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Listener names, as Addr takes them.
const (
	ListenerTCP       = "tcp"
	ListenerTLS       = "tls"
	ListenerWebSocket = "ws"
)

// New checks cfg and returns a Broker. It does no I/O.
func New(cfg Config) (*Broker, error) {
	if cfg.Verifier != nil && cfg.InsecureAllowAll {
		return nil, errors.New("broker: a token verifier and InsecureAllowAll exclude each other")
	}
	if cfg.TCP == "" && cfg.WebSocket == "" && cfg.TLS == "" {
		return nil, errors.New("broker: no listener configured (TCP, TLS and WebSocket addresses all empty)")
	}
	if (cfg.TLS != "") != (cfg.TLSCert != "" && cfg.TLSKey != "") {
		return nil, errors.New("broker: the TLS listener needs a certificate and a key (--tls-cert, --tls-key), and they need a TLS listener (--mqtt-tls)")
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 16384
	}
	if cfg.WriteQueue == 0 {
		cfg.WriteQueue = 256
	}
	if cfg.WriteQueue < 16 || cfg.WriteQueue > 65536 {
		return nil, fmt.Errorf("broker: a write queue of %d messages per client is outside 16 to 65536", cfg.WriteQueue)
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = 1 << 20
	}
	if cfg.KeepaliveMin == 0 {
		cfg.KeepaliveMin = 5
	}
	if cfg.KeepaliveMax == 0 {
		cfg.KeepaliveMax = 3600
	}
	if cfg.Persist && cfg.Auth.Data == "" {
		return nil, errors.New("broker: persistence needs a data directory (--data)")
	}
	if cfg.KeepaliveMin > cfg.KeepaliveMax {
		return nil, fmt.Errorf("broker: keepalive bounds %d > %d", cfg.KeepaliveMin, cfg.KeepaliveMax)
	}
	if cfg.ConnRate == 0 {
		cfg.ConnRate = 10
	}
	if cfg.ConnBurst <= 0 {
		cfg.ConnBurst = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), addrs: map[string]net.Addr{}}
	if cfg.Verifier == nil && !cfg.InsecureAllowAll {
		a, err := newTokenAuth(cfg.Auth, cfg.Logger.With("component", "auth"))
		if err != nil {
			return nil, fmt.Errorf("broker: %w; or set InsecureAllowAll (--insecure-allow-all) explicitly to accept every client", err)
		}
		b.auth = a
		b.cfg.Verifier, b.cfg.Revocations = a, a.revocations
	}
	b.m = newMetrics(cfg.Registerer, b)
	return b, nil
}

// AuthStatus returns the state of token verification; ok is false when the
// broker does not verify tokens from its Auth config.
func (b *Broker) AuthStatus() (st AuthStatus, ok bool) {
	if b.auth == nil {
		return st, false
	}
	return b.auth.status(), true
}

// Ready is closed once the listeners accept connections.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr returns the bound address of the named listener (ListenerTCP or
// ListenerWebSocket), or nil before Ready or when that listener is disabled.
func (b *Broker) Addr(name string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[name]
}

// Run starts the listeners and serves until ctx ends; then it stops accepting,
// disconnects every client and returns. It returns an error if a listener
// cannot be opened.
func (b *Broker) Run(ctx context.Context) error {
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true, // Publish
		Logger:       slog.New(mochiHandler{b.log.Handler()}).With("component", "mqtt"),
		Capabilities: b.capabilities(),
	})
	if err := srv.AddHook(&limitsHook{min: b.cfg.KeepaliveMin, max: b.cfg.KeepaliveMax}, nil); err != nil {
		return fmt.Errorf("broker: add limits hook: %w", err)
	}
	var hook mqtt.Hook
	trusted := func(*mqtt.Client) bool { return true }
	if b.cfg.InsecureAllowAll {
		hook = new(auth.AllowHook)
		b.log.Warn("INSECURE: the broker accepts every client and every topic without authentication (--insecure-allow-all); do not expose it to a network you do not trust")
	} else {
		ah := newAuthHook(srv, b.cfg.Verifier, b.log, b.m)
		if b.cfg.Revocations != nil {
			b.cfg.Revocations.OnRevoke(ah.Revoke)
			ah.refreshRevocations = b.cfg.Revocations.Refresh
		}
		trusted = ah.durable
		go sweepEvery(ctx, time.Minute, ah.sweep)
		if b.auth != nil {
			go b.auth.Run(ctx)
		}
		hook = ah
	}
	if err := srv.AddHook(hook, nil); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
	flow := newFlowHook(ctx, srv.Clients, int(b.cfg.MaxInflight), b.cfg.WriteQueue, trusted, b.m.publishesHeld)
	if err := srv.AddHook(flow, nil); err != nil {
		return fmt.Errorf("broker: add flow control hook: %w", err)
	}
	if b.cfg.Persist {
		dir := filepath.Join(b.cfg.Auth.Data, "mqtt")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("broker: store: %w", err)
		}
		mode := pebble.NoSync
		if b.cfg.PersistSync {
			mode = pebble.Sync
		}
		store := &sessionStore{Hook: new(pebble.Hook), dir: filepath.Join(b.cfg.Auth.Data, "mqtt-inflight"),
			sync: b.cfg.PersistSync, log: b.log}
		if err := srv.AddHook(store, &pebble.Options{Path: dir, Mode: mode, Options: storeOptions()}); err != nil {
			return fmt.Errorf("broker: open store %s: %w", dir, err)
		}
	}
	if err := srv.AddHook(newTakeoverHook(srv.Clients, b.log), nil); err != nil {
		return fmt.Errorf("broker: add session takeover hook: %w", err)
	}
	if b.cfg.Tap != nil { // last: it sees what every other hook let through
		if err := srv.AddHook(&tapHook{tap: b.cfg.Tap, log: b.log}, nil); err != nil {
			return fmt.Errorf("broker: add tap hook: %w", err)
		}
	}

	var opened []net.Listener
	closeOpened := func() {
		for _, l := range opened {
			l.Close()
		}
	}
	var tlsCfg *tls.Config
	if b.cfg.TLS != "" {
		files, err := server.LoadCertFiles(b.cfg.TLSCert, b.cfg.TLSKey, b.log)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate}
	}
	for _, l := range []struct {
		name, addr string
		wrap       func(net.Listener) listeners.Listener
	}{
		{ListenerTCP, b.cfg.TCP, func(ln net.Listener) listeners.Listener { return listeners.NewNet(ListenerTCP, ln) }},
		{ListenerTLS, b.cfg.TLS, func(ln net.Listener) listeners.Listener {
			return listeners.NewNet(ListenerTLS, tls.NewListener(ln, tlsCfg))
		}},
		{ListenerWebSocket, b.cfg.WebSocket, func(ln net.Listener) listeners.Listener { return newWebSocket(ListenerWebSocket, ln) }},
	} {
		if l.addr == "" {
			continue
		}
		raw, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeOpened()
			return fmt.Errorf("broker: listen %s on %s: %w", l.name, l.addr, err)
		}
		opened = append(opened, raw)
		ln := net.Listener(raw)
		if b.cfg.ConnRate > 0 {
			ln = newRateLimited(raw, b.cfg.ConnRate, b.cfg.ConnBurst, b.m.connRateLimited)
		}
		if err := srv.AddListener(l.wrap(ln)); err != nil {
			closeOpened()
			return fmt.Errorf("broker: add listener %s: %w", l.name, err)
		}
		b.mu.Lock()
		b.addrs[l.name] = ln.Addr()
		b.mu.Unlock()
		b.log.Info("mqtt listening", "listener", l.name, "addr", ln.Addr().String())
	}
	if err := srv.Serve(); err != nil {
		closeOpened()
		return fmt.Errorf("broker: serve: %w", err)
	}
	flow.restore()
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	close(b.ready)

	<-ctx.Done()
	b.drain(srv)
	b.log.Info("broker stopping: disconnecting clients")
	b.mu.Lock()
	b.srv = nil
	b.mu.Unlock()
	b.disconnectAll(srv, closeOpened)
	if err := srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// disconnectAll stops accepting connections, disconnects every client and
// waits, up to drainTimeout, for their connections to end. Mochi's Close
// would do it listener by listener, but it can deadlock when a client of a
// listener already closed is being removed at that moment (Mochi issue
// 488); with no client left, it cannot.
func (b *Broker) disconnectAll(srv *mqtt.Server, closeListeners func()) {
	closeListeners()
	for _, cl := range srv.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	done := make(chan struct{})
	go func() {
		srv.Listeners.ClientsWg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		b.log.Warn("broker stopping with connections still closing")
	}
}

// storeOptions tune the Pebble store of the sessions for what it mostly
// holds: QoS 1 messages in flight to the ingest bridge, each written when
// sent and deleted when acknowledged a fraction of a second later. A
// memtable large enough to hold seconds of them lets a set and its delete
// meet in memory, so flushes write little more than tombstones and
// compactions have little to do (with Pebble's 4 MB default, a busy broker
// flushed and compacted several times a second: a quarter of its CPU);
// the values are JSON and short-lived, not worth compressing.
func storeOptions() *pebbledb.Options {
	return &pebbledb.Options{
		MemTableSize: 32 << 20,
		Levels:       []pebbledb.LevelOptions{{Compression: pebbledb.NoCompression}},
	}
}

// drainTimeout bounds how long a stopping broker waits for connected clients
// to acknowledge what it sent them.
const drainTimeout = 2 * time.Second

// drain waits, up to drainTimeout, until every connected client has
// acknowledged the QoS 1 messages in flight to it: what was published last
// (a gateway's final "offline" statuses) reaches the subscribers still
// connected instead of dying with their connections.
func (b *Broker) drain(srv *mqtt.Server) {
	deadline := time.Now().Add(drainTimeout)
	for {
		pending := 0
		for _, cl := range srv.Clients.GetAll() {
			if !cl.Net.Inline && !cl.Closed() {
				pending += cl.State.Inflight.Len()
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.log.Warn("broker stopping with messages not yet acknowledged", "messages", pending)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *Broker) capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumInflight = b.cfg.MaxInflight
	c.MaximumClientWritesPending = int32(b.cfg.WriteQueue)
	c.MaximumPacketSize = b.cfg.MaxPacketSize
	// A QoS 1 message waits in an offline persistent session (the ingest
	// bridge's) however long it is away: nothing accepted expires.
	c.MaximumMessageExpiryInterval = 0
	return c
}

// RegisterFlags adds the broker's flags to fs, writing into c: the
// listeners, the TLS files, the limits and --insecure-allow-all.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TCP, "mqtt", ":1883", "MQTT listener `address`; empty disables it")
	fs.StringVar(&c.TLS, "mqtt-tls", "", "MQTT over TLS listener `address`, e.g. :8883 (needs --tls-cert and --tls-key)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate chain `file` (PEM) of the MQTT TLS listener, reloaded when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&c.WebSocket, "mqtt-ws", ":8083", "MQTT over WebSocket listener `address`; empty disables it")
	fs.Func("mqtt-max-packet-size", "largest MQTT packet accepted, in `bytes` (default 1048576)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		c.MaxPacketSize = uint32(n)
		return nil
	})
	fs.Func("mqtt-max-inflight", "QoS 1 messages held per client awaiting acknowledgement, `n` up to 65535 (default 16384)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return err
		}
		c.MaxInflight = uint16(n)
		return nil
	})
	fs.IntVar(&c.WriteQueue, "mqtt-write-queue", 256, "messages that may wait to be written to one client, `n` from 16 to 65536 (8 bytes each, allocated with every connection)")
	fs.BoolVar(&c.Persist, "mqtt-persist", true, "keep sessions, subscriptions, retained and in-flight QoS 1 messages in DATA/mqtt across restarts")
	fs.BoolVar(&c.PersistSync, "mqtt-persist-sync", false, "sync every store write to disk (survives a power cut; slower)")
	fs.Float64Var(&c.ConnRate, "mqtt-conn-rate", 10, "connections per second one address may open (burst 100); negative disables the limit")
	fs.BoolVar(&c.InsecureAllowAll, "insecure-allow-all", false,
		"accept every client and topic without authentication (experiments only, never exposed)")
	c.Auth.RegisterFlags(fs)
}

// sweepEvery calls f every d until ctx ends.
func sweepEvery(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
