package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/time/rate"

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
	// Control, if set, gets the devices' session and status messages, in
	// the order they arrive, on a second connection (client id ClientID
	// with "/control" appended); a message is acknowledged once Control
	// returns, whatever it returns (the error is logged).
	Control func(ctx context.Context, device, kind string, payload []byte, at time.Time) error
}

// ControlTopics are the shared subscriptions of the bridge's control
// connection: devices' recording commands and status.
var ControlTopics = []string{"$share/cloud/devices/+/session", "$share/cloud/devices/+/status"}

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
	// control is the connection of MQTTConfig.Control, or nil.
	control paho.Client
	logBad  rate.Sometimes

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
	b.client = paho.NewClient(b.clientOptions(mq.ClientID, []string{mq.Topic}, false).
		SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
			b.pipe.Handle(b.handleCtx, msg)
		}))
	if mq.Control != nil {
		b.logBad = rate.Sometimes{First: 5, Interval: 10 * time.Second}
		b.control = paho.NewClient(b.clientOptions(mq.ClientID+"/control", ControlTopics, true).
			SetDefaultPublishHandler(b.handleControl))
	}
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

// Connected reports whether the bridge's connections to the broker are up.
func (b *Bridge) Connected() bool {
	return b.client.IsConnectionOpen() && (b.control == nil || b.control.IsConnectionOpen())
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
	if b.control != nil {
		b.control.Connect()
	}
	err := b.pipe.Run(ctx)
	b.stopHandling()
	b.client.Disconnect(500)
	if b.control != nil {
		b.control.Disconnect(500)
	}
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// handleControl passes a session or status message to MQTTConfig.Control
// and acknowledges it. Messages come one at a time, in order.
func (b *Bridge) handleControl(_ paho.Client, msg paho.Message) {
	defer msg.Ack()
	device, kind, err := topic.Parse(msg.Topic())
	if err == nil && kind != topic.Session && kind != topic.Status {
		err = fmt.Errorf("topic %q: not a session or status topic", msg.Topic())
	}
	if err == nil {
		err = b.mq.Control(b.handleCtx, device, kind, msg.Payload(), time.Now())
	}
	if err != nil {
		b.logBad.Do(func() { b.log.Warn("control message not carried out", "topic", msg.Topic(), "err", err) })
	}
}

// clientOptions are the options of a connection with client id id that
// subscribes to topics at every connection; ordered runs its handler for
// one message at a time, in order, where otherwise handlers may block
// (backpressure) without stalling keepalive.
func (b *Bridge) clientOptions(id string, topics []string, ordered bool) *paho.ClientOptions {
	o := paho.NewClientOptions()
	if b.mq.Credentials != nil {
		o.SetCredentialsProvider(b.mq.Credentials)
	}
	return o.
		AddBroker(b.mq.Broker).
		SetClientID(id).
		SetUsername(b.mq.Username).
		SetPassword(b.mq.Password).
		SetCleanSession(false). // the broker keeps what we have not acknowledged
		SetAutoAckDisabled(true).
		SetOrderMatters(ordered).
		SetKeepAlive(30 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			// Subscribe on every connection: the broker may have lost the
			// session. Messages go to the default handler.
			filters := map[string]byte{}
			for _, t := range topics {
				filters[t] = 1
			}
			t := c.SubscribeMultiple(filters, nil)
			t.Wait()
			if err := t.Error(); err != nil {
				b.log.Error("subscribe failed", "topics", topics, "err", err)
				return
			}
			b.log.Info("ingest subscribed", "broker", b.mq.Broker, "topics", topics, "client_id", id)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.log.Warn("lost the broker; reconnecting", "broker", b.mq.Broker, "err", err)
		})
}
