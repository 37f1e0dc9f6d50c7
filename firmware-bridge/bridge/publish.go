package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// ErrPublish is a position the broker did not acknowledge in time: the
// adapter reports failure to the tracker (an HTTP 503, a closed
// connection), which sends it again.
var ErrPublish = errors.New("the broker did not take the position")

// publisher publishes positions to the broker over MQTT with the bridge's
// broker token, QoS 1, and waits for each PUBACK: a tracker's report is
// acknowledged to it only once the broker has it.
type publisher struct {
	client  paho.Client
	timeout time.Duration
	log     *slog.Logger
}

// newPublisher returns the publisher of the service whose token subject
// is sub, connecting with client id sub/bridge.
func newPublisher(broker, sub string, timeout time.Duration, tk *tokens, log *slog.Logger) *publisher {
	o := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(sub + "/bridge").
		SetCredentialsProvider(func() (string, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			tok, err := tk.token(ctx, tokenMQTT)
			if err != nil {
				log.Error("no broker token", "err", err)
			}
			return sub, tok
		}).
		SetCleanSession(false). // unacknowledged publishes are sent again after a reconnect
		SetKeepAlive(30 * time.Second).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).
		SetOnConnectHandler(func(paho.Client) { log.Info("connected to the broker", "broker", broker) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			log.Warn("lost the broker; reconnecting", "broker", broker, "err", err)
		})
	return &publisher{client: paho.NewClient(o), timeout: timeout, log: log}
}

// connect starts connecting in the background (paho retries until it
// succeeds or disconnect is called).
func (p *publisher) connect() { p.client.Connect() }

// connected reports whether the broker connection is up.
func (p *publisher) connected() bool { return p.client.IsConnectionOpen() }

// disconnect closes the connection after giving publishes in flight up to
// a second.
func (p *publisher) disconnect() { p.client.Disconnect(1000) }

// publish sends a payload to the topic of device's kind and waits for its
// PUBACK, up to the publish timeout or until ctx ends.
func (p *publisher) publish(ctx context.Context, device, kind string, payload []byte, retain bool) error {
	t := p.client.Publish(topic.Device(device, kind), 1, retain, payload)
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("%w: %v", ErrPublish, err)
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("%w: no acknowledgement in %s", ErrPublish, p.timeout)
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrPublish, ctx.Err())
	}
}

// appendPositions appends the wire form of ps: one object, or an array.
func appendPositions(dst []byte, ps []position.Position) []byte {
	if len(ps) == 1 {
		return ps[0].AppendJSON(dst)
	}
	dst = append(dst, '[')
	for i := range ps {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = ps[i].AppendJSON(dst)
	}
	return append(dst, ']')
}
