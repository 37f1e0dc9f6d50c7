// Package broker is trackgate's embedded MQTT broker: a Mochi MQTT v2 server
// with a TCP listener and an MQTT-over-WebSocket listener, a seam for the hook
// that authenticates devices and checks their topics, and a Run that blocks
// until its context ends and then disconnects clients and closes.
//
// The gateway embeds it; broker/cmd/broker runs it alone.
package broker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Config configures a Broker. The zero value of every field but Auth and
// InsecureAllowAll is usable.
type Config struct {
	// TCP is the address of the plain MQTT listener, e.g. ":1883" (":0" picks
	// a free port); empty disables it.
	TCP string
	// WebSocket is the address of the MQTT-over-WebSocket listener, e.g.
	// ":8083"; empty disables it.
	WebSocket string
	// Auth authenticates clients and checks what they may publish and
	// subscribe to. Required unless InsecureAllowAll.
	Auth mqtt.Hook
	// InsecureAllowAll lets every client connect and use every topic. It is
	// for experiments only, and the broker says so loudly when it starts.
	InsecureAllowAll bool
	// MaxInflight is how many QoS 1 and 2 messages the broker holds per client
	// while they wait for an acknowledgement; default and maximum 65535. A
	// subscriber that falls further behind loses messages, so it is set high.
	MaxInflight uint16
	// MaxPacketSize is the largest MQTT packet accepted, in bytes; a client
	// sending a larger one is disconnected. Default 8 MiB: far above the
	// 64 KiB position payload limit, which the ingest bridge enforces and
	// counts, yet bounded.
	MaxPacketSize uint32
	// Logger receives the broker's logs; default slog.Default().
	Logger *slog.Logger
}

// Broker is an embedded MQTT broker. Create it with New and start it with Run.
type Broker struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu    sync.Mutex // guards addrs and srv
	addrs map[string]net.Addr
	srv   *mqtt.Server // while serving
}

// ErrNotRunning is returned by Publish when the broker is not serving.
var ErrNotRunning = errors.New("broker: not running")

// Publish publishes a message from inside the process (the gateway's own
// readers) to the broker's subscribers, as QoS 1: subscribers at QoS 1 get it
// at least once, and a persistent session that is offline keeps it. Inside
// publishers are trusted: no authentication or ACL applies.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
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
	ListenerWebSocket = "ws"
)

// New checks cfg and returns a Broker. It does no I/O.
func New(cfg Config) (*Broker, error) {
	if cfg.Auth == nil && !cfg.InsecureAllowAll {
		return nil, errors.New("broker: no auth hook configured; set InsecureAllowAll (--insecure-allow-all) explicitly to accept every client")
	}
	if cfg.Auth != nil && cfg.InsecureAllowAll {
		return nil, errors.New("broker: an auth hook and InsecureAllowAll exclude each other")
	}
	if cfg.TCP == "" && cfg.WebSocket == "" {
		return nil, errors.New("broker: no listener configured (TCP and WebSocket addresses both empty)")
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 65535
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = 8 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Broker{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), addrs: map[string]net.Addr{}}, nil
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
		Logger:       b.log.With("component", "mqtt"),
		Capabilities: b.capabilities(),
	})
	hook := b.cfg.Auth
	if b.cfg.InsecureAllowAll {
		hook = new(auth.AllowHook)
		b.log.Warn("INSECURE: the broker accepts every client and every topic without authentication (--insecure-allow-all); do not expose it to a network you do not trust")
	}
	if err := srv.AddHook(hook, nil); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(newTakeoverHook(srv.Clients, b.log), nil); err != nil {
		return fmt.Errorf("broker: add session takeover hook: %w", err)
	}

	var opened []net.Listener
	closeOpened := func() {
		for _, l := range opened {
			l.Close()
		}
	}
	for _, l := range []struct {
		name, addr string
		wrap       func(net.Listener) listeners.Listener
	}{
		{ListenerTCP, b.cfg.TCP, func(ln net.Listener) listeners.Listener { return listeners.NewNet(ListenerTCP, ln) }},
		{ListenerWebSocket, b.cfg.WebSocket, func(ln net.Listener) listeners.Listener { return newWebSocket(ListenerWebSocket, ln) }},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeOpened()
			return fmt.Errorf("broker: listen %s on %s: %w", l.name, l.addr, err)
		}
		opened = append(opened, ln)
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
	if err := srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
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
	c.MaximumClientWritesPending = int32(b.cfg.MaxInflight)
	c.MaximumPacketSize = b.cfg.MaxPacketSize
	return c
}

// RegisterFlags adds the broker's flags to fs, writing into c: --mqtt,
// --mqtt-ws and --insecure-allow-all (whose default is allowAll).
func (c *Config) RegisterFlags(fs *flag.FlagSet, allowAll bool) {
	fs.StringVar(&c.TCP, "mqtt", ":1883", "MQTT listener `address`; empty disables it")
	fs.StringVar(&c.WebSocket, "mqtt-ws", ":8083", "MQTT over WebSocket listener `address`; empty disables it")
	fs.Func("mqtt-max-packet-size", "largest MQTT packet accepted, in `bytes` (default 8388608)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		c.MaxPacketSize = uint32(n)
		return nil
	})
	fs.BoolVar(&c.InsecureAllowAll, "insecure-allow-all", allowAll,
		"accept every client and topic without authentication (experiments only; device authentication is not built yet, so this is on by default for now)")
}
