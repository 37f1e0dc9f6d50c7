package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/internal/topic"
)

// MQTTConfig says how the bridge reaches the broker.
type MQTTConfig struct {
	Broker   string // broker URL, e.g. tcp://127.0.0.1:1883 or ws://host:8083/mqtt
	ClientID string // persistent-session client id, default "trackgate-cloud-ingest"
	Topic    string // subscription, default topic.SharedPositions
	Username string // optional fixed credentials
	Password string
	// Credentials, if set, is asked for the user name and password at
	// every connection (a fresh token each time) instead of Username and
	// Password.
	Credentials func() (username, password string)
}

// DefaultClientID is the ingest bridge's MQTT client id: bound to the
// subject of the broker token the cloud signs for itself (svc:cloud), as
// the broker requires.
const DefaultClientID = "svc:cloud/ingest"

// Bridge connects the Pipeline to the broker.
type Bridge struct {
	mq     MQTTConfig
	pipe   *Pipeline
	log    *slog.Logger
	client paho.Client

	// handleCtx ends when Run stops taking messages, so that no handler
	// blocks past it.
	handleCtx    context.Context
	stopHandling context.CancelFunc
}

// NewBridge returns a Bridge that feeds messages from the broker into a new
// Pipeline writing to w. It does no I/O.
func NewBridge(mq MQTTConfig, cfg Config, w Writer, m *Metrics) (*Bridge, error) {
	if mq.Broker == "" {
		return nil, errors.New("ingest: no broker URL (--mqtt)")
	}
	if mq.ClientID == "" {
		mq.ClientID = DefaultClientID
	}
	if mq.Topic == "" {
		mq.Topic = topic.SharedPositions
	}
	cfg.defaults()
	b := &Bridge{mq: mq, pipe: NewPipeline(cfg, w, m), log: cfg.Logger}
	b.handleCtx, b.stopHandling = context.WithCancel(context.Background())
	b.client = paho.NewClient(b.clientOptions())
	return b, nil
}

// NotifyRevocations asks the broker to fetch the issuer's revocation list
// now (a message on topic.Revocations), so that a revoked device is
// disconnected at once rather than at the broker's next poll. It does not
// wait; without a connection it does nothing (the poll remains). The
// message is QoS 0: a QoS 1 publish's packet id could be one the broker
// uses for a message in flight to the bridge, and Mochi keeps both
// directions' ids in one map, so that message would lose its place in the
// session.
func (b *Bridge) NotifyRevocations() {
	if b.client.IsConnectionOpen() {
		b.client.Publish(topic.Revocations, 0, false, []byte{})
	}
}

// Connected reports whether the bridge has a live connection to the broker.
func (b *Bridge) Connected() bool {
	return b.client != nil && b.client.IsConnectionOpen()
}

// Run connects (retrying until the broker answers), subscribes on every
// connection, and runs the pipeline until ctx ends; then it writes and
// acknowledges what it holds and disconnects. Run may be called once.
func (b *Bridge) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, b.stopHandling)
	defer stop()
	// With ConnectRetry the token completes only once connected; Run does not
	// wait for it, so that shutdown is never stuck behind a dead broker.
	b.client.Connect()
	err := b.pipe.Run(ctx)
	b.stopHandling()
	b.client.Disconnect(500)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

func (b *Bridge) clientOptions() *paho.ClientOptions {
	o := paho.NewClientOptions()
	if b.mq.Credentials != nil {
		o.SetCredentialsProvider(b.mq.Credentials)
	}
	return o.
		AddBroker(b.mq.Broker).
		SetClientID(b.mq.ClientID).
		SetUsername(b.mq.Username).
		SetPassword(b.mq.Password).
		SetCleanSession(false). // the broker keeps what we have not acknowledged
		SetAutoAckDisabled(true).
		SetOrderMatters(false). // handlers may block (backpressure) without stalling keepalive
		SetKeepAlive(30 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			b.pipe.Handle(b.handleCtx, msg)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			// Subscribe on every connection: the broker may have lost the
			// session. Messages go to the default handler.
			t := c.Subscribe(b.mq.Topic, 1, nil)
			t.Wait()
			if err := t.Error(); err != nil {
				b.log.Error("subscribe failed", "topic", b.mq.Topic, "err", err)
				return
			}
			b.log.Info("ingest subscribed", "broker", b.mq.Broker, "topic", b.mq.Topic, "client_id", b.mq.ClientID)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.log.Warn("lost the broker; reconnecting", "broker", b.mq.Broker, "err", err)
		})
}
