package broker_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/broker"
	"trackgate/broker/brokertest"
)

// TestSlowSubscriberLosesNothing publishes 100,000 QoS 1 positions from four
// devices to an ingest subscriber that acknowledges nothing for two seconds
// and then slowly: the broker holds the publishers back instead of dropping
// what overflows the subscriber's quota, and every position arrives. The
// quota is small (1,000) so that it is reached at once.
func TestSlowSubscriberLosesNothing(t *testing.T) {
	const (
		devices = 4
		each    = 25000
		total   = devices * each
	)
	iss := newIssuer(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, iss, func(c *broker.Config) { c.MaxInflight, c.Registerer = 1000, reg })

	var (
		mu   sync.Mutex
		seen = make(map[string]bool, total)
	)
	acks := make(chan paho.Message, total)
	ingestSubscriber(t, b, iss, func(o *paho.ClientOptions) {
		o.SetAutoAckDisabled(true).SetOrderMatters(false).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			mu.Lock()
			seen[m.Topic()+" "+string(m.Payload())] = true
			mu.Unlock()
			acks <- m
		})
	})
	// The slow subscriber: nothing for two seconds, then about 20,000
	// acknowledgements a second at most.
	go func() {
		time.Sleep(2 * time.Second)
		n := 0
		for m := range acks {
			m.Ack()
			if n++; n%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()

	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	var published atomic.Int64
	var wg sync.WaitGroup
	for d := range devices {
		id := fmt.Sprintf("van-%d", d)
		pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID(id).SetUsername(id).
			SetPassword(iss.deviceToken(t, id)).SetWriteTimeout(time.Minute))
		waitToken(t, "connect "+id, pub.Connect())
		defer pub.Disconnect(250)
		wg.Go(func() {
			toks := make([]paho.Token, 0, 512)
			for i := range each {
				payload := fmt.Sprintf(`{"time":%q,"lat":52.1,"lon":4.2}`, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
				toks = append(toks, pub.Publish("devices/"+id+"/positions", 1, false, payload))
				if len(toks) == cap(toks) || i == each-1 {
					for _, tok := range toks {
						if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
							t.Errorf("%s: publish: %v", id, tok.Error())
							return
						}
					}
					published.Add(int64(len(toks)))
					toks = toks[:0]
				}
			}
		})
	}
	wg.Wait()
	if published.Load() != total {
		t.Fatalf("published %d of %d", published.Load(), total)
	}
	expectAllHeldNoneDropped(t, reg, func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }, total,
		"the subscriber was never slow enough to test anything")
}

// TestManyPublishersLoseNothing: a hundred devices publish at once, half at
// QoS 1 and half at QoS 0, to an ingest subscriber that stops reading for
// two seconds, through a write queue of 16 messages with a quota large
// enough never to be the limit.
// Far more publishers pass the flow control's check at a time than half
// the queue leaves room for; their reservations keep the queue from
// overflowing, and every position arrives.
func TestManyPublishersLoseNothing(t *testing.T) {
	const (
		devices = 100
		each    = 100
		total   = devices * each
	)
	iss := newIssuer(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, iss, func(c *broker.Config) { c.MaxInflight, c.WriteQueue, c.Registerer = 65535, 16, reg })

	var (
		mu      sync.Mutex
		seen    = make(map[string]bool, total)
		stalled sync.Once
	)
	ingestSubscriber(t, b, iss, func(o *paho.ClientOptions) {
		o.SetOrderMatters(true).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			// The handler holds paho's reader: the socket's buffers fill,
			// then the broker's write queue.
			stalled.Do(func() { time.Sleep(2 * time.Second) })
			mu.Lock()
			seen[m.Topic()+" "+string(m.Payload())] = true
			mu.Unlock()
		})
	})

	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	var wg sync.WaitGroup
	for d := range devices {
		id := fmt.Sprintf("van-%d", d)
		pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID(id).SetUsername(id).
			SetPassword(iss.deviceToken(t, id)).SetWriteTimeout(time.Minute))
		waitToken(t, "connect "+id, pub.Connect())
		defer pub.Disconnect(250)
		wg.Go(func() {
			toks := make([]paho.Token, 0, each)
			for i := range each {
				// 50 positions a message: a few of them fill the socket's buffers.
				var payload strings.Builder
				payload.WriteByte('[')
				for j := range 50 {
					if j > 0 {
						payload.WriteByte(',')
					}
					fmt.Fprintf(&payload, `{"time":%q,"lat":52.1,"lon":4.2}`, base.Add(time.Duration(i*50+j)*time.Second).Format(time.RFC3339))
				}
				payload.WriteByte(']')
				// Odd devices publish at QoS 0: those wait for room too,
				// rather than crowd out what others were promised.
				toks = append(toks, pub.Publish("devices/"+id+"/positions", byte(1-d%2), false, payload.String()))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
					t.Errorf("%s: publish: %v", id, tok.Error())
					return
				}
			}
		})
	}
	wg.Wait()
	expectAllHeldNoneDropped(t, reg, func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }, total,
		"the write queue never filled")
}

// ingestSubscriber connects the cloud's ingest bridge as a persistent
// session (options edited by edit) with the shared subscription to every
// device's positions; it disconnects when the test ends.
func ingestSubscriber(t *testing.T, b *brokertest.Broker, iss *issuer, edit func(*paho.ClientOptions)) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID("svc:cloud/ingest").
		SetUsername("svc:cloud").SetPassword(iss.sign(t, iss.claims("svc:cloud", broker.ScopeIngest))).
		SetCleanSession(false)
	edit(o)
	sub := paho.NewClient(o)
	waitToken(t, "connect the subscriber", sub.Connect())
	t.Cleanup(func() { sub.Disconnect(250) })
	waitToken(t, "subscribe", sub.Subscribe("$share/cloud/devices/+/positions", 1, nil))
}

// expectAllHeldNoneDropped waits up to a minute for received() to reach
// total, then checks that the broker held publishes back (else why says
// why the test tested nothing) and dropped none.
func expectAllHeldNoneDropped(t *testing.T, reg prometheus.Gatherer, received func() int, total int, why string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for n := received(); n != total; n = received() {
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber got %d of %d messages", n, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if held := metricValue(t, reg, "trackgate_broker_publishes_held_total"); held == 0 {
		t.Error("no publish was held back: " + why)
	}
	if dropped := metricValue(t, reg, "trackgate_broker_messages_dropped"); dropped != 0 {
		t.Errorf("the broker dropped %v messages", dropped)
	}
}
