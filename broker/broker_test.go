package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/token"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  broker.Config
		want string
	}{
		{"no auth and not allow-all", broker.Config{TCP: ":0"}, "no issuer"},
		{"auth and allow-all", broker.Config{TCP: ":0", Verifier: denyAll{}, InsecureAllowAll: true}, "exclude each other"},
		{"no listener", broker.Config{InsecureAllowAll: true}, "no listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := broker.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() error = %v, want %q", err, tc.want)
			}
		})
	}
}

// denyAll is a verifier that accepts no token.
type denyAll struct{}

func (denyAll) Verify(context.Context, string) (*token.Claims, error) {
	return nil, token.ErrSignature
}

func TestRunFailsOnBusyPort(t *testing.T) {
	b := brokertest.Start(t, broker.Config{})
	busy, err := broker.New(broker.Config{TCP: b.Addr(broker.ListenerTCP).String(), InsecureAllowAll: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen tcp") {
		t.Fatalf("Run on a busy port = %v, want a listen error", err)
	}
}

// TestTCPAndWebSocket publishes over each listener and receives over the other.
func TestTCPAndWebSocket(t *testing.T) {
	b := brokertest.Start(t, broker.Config{})
	got := make(chan string, 2)
	sub := connect(t, b.TCPURL, "sub-tcp")
	subWS := connect(t, b.WSURL, "sub-ws")
	for _, c := range []paho.Client{sub, subWS} {
		name := map[paho.Client]string{sub: "tcp", subWS: "ws"}[c]
		tok := c.Subscribe("devices/+/positions", 1, func(_ paho.Client, m paho.Message) { got <- name + ":" + string(m.Payload()) })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
	}
	pub := connect(t, b.WSURL, "pub-ws")
	if tok := pub.Publish("devices/d1/positions", 1, false, "hello"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	seen := map[string]bool{}
	for range 2 {
		select {
		case m := <-got:
			seen[m] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("received only %v", seen)
		}
	}
	if !seen["tcp:hello"] || !seen["ws:hello"] {
		t.Fatalf("received %v, want the message on both listeners", seen)
	}
}

// TestStopDisconnectsClients checks that Run returns when its context ends and
// that connected clients are disconnected.
func TestStopDisconnectsClients(t *testing.T) {
	b := brokertest.Start(t, broker.Config{})
	lost := make(chan struct{})
	opts := paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID("c1").SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	b.Stop()
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("client still connected after the broker stopped")
	}
}

func connect(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// TestMaxPacketSize: a client sending a packet over the limit is disconnected.
func TestMaxPacketSize(t *testing.T) {
	b := brokertest.Start(t, broker.Config{MaxPacketSize: 1024})
	lost := make(chan struct{})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID("big").SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	c.Publish("devices/big/positions", 1, false, strings.Repeat("x", 2048))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("a client sending a packet over the limit stayed connected")
	}
}
