// Package brokertest starts a real embedded broker on loopback for tests of
// any component. It is imported from _test.go files only.
package brokertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"trackgate/broker"
)

// Broker is a running broker and its addresses.
type Broker struct {
	*broker.Broker
	TCPURL string // tcp://127.0.0.1:PORT
	WSURL  string // ws://127.0.0.1:PORT/mqtt
	stop   func()
}

// Stop stops the broker and waits for Run to return. Cleanup also calls it.
func (b *Broker) Stop() { b.stop() }

// Start runs a broker with TCP and WebSocket listeners on free loopback
// ports, and returns once it accepts connections (and, when it verifies
// tokens from cfg.Auth, once it has the issuer's keys). Unless cfg.TCP is set, the listener addresses are chosen here; with neither a Verifier nor an
// Auth issuer the broker allows everyone, and the connection rate limit is off
// unless cfg sets one. It is stopped when the test ends.
func Start(t testing.TB, cfg broker.Config) *Broker {
	t.Helper()
	if cfg.TCP == "" { // a broker that comes back gives its own, fixed address
		cfg.TCP, cfg.WebSocket = "127.0.0.1:0", "127.0.0.1:0"
	}
	if cfg.Verifier == nil && cfg.Auth.Issuer == "" {
		cfg.InsecureAllowAll = true
	}
	if cfg.ConnRate == 0 {
		cfg.ConnRate = -1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("brokertest: broker stopped before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("brokertest: broker not ready after 10 s")
	}
	if _, ok := b.AuthStatus(); ok {
		deadline := time.Now().Add(10 * time.Second)
		for st, _ := b.AuthStatus(); !st.KeysReady; st, _ = b.AuthStatus() {
			if time.Now().After(deadline) {
				cancel()
				t.Fatal("brokertest: the broker has no signing keys after 10 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stopped := false
	tb := &Broker{
		Broker: b,
		TCPURL: "tcp://" + b.Addr(broker.ListenerTCP).String(),
	}
	if ws := b.Addr(broker.ListenerWebSocket); ws != nil {
		tb.WSURL = "ws://" + ws.String() + "/mqtt"
	}
	tb.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("brokertest: broker Run: %v", err)
		}
	}
	t.Cleanup(tb.stop)
	return tb
}
