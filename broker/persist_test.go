package broker_test

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/broker/brokertest"
)

// TestPersistenceAcrossRestart: a subscriber with a persistent session goes
// offline, a device publishes 1,000 QoS 1 positions, the broker restarts
// (on the same data directory), and the subscriber, back, gets all 1,000.
func TestPersistenceAcrossRestart(t *testing.T) {
	const n = 1000
	iss := newIssuer(t)
	data := t.TempDir()
	start := func() *brokertest.Broker {
		return startBroker(t, iss, func(c *broker.Config) { c.Auth.Data, c.Persist = data, true })
	}
	b := start()
	ingest := iss.sign(t, iss.claims("svc:cloud", broker.ScopeIngest))
	got := make(chan string, 2*n)
	subOpts := func(url string) *paho.ClientOptions {
		return paho.NewClientOptions().AddBroker(url).SetClientID("svc:cloud/ingest").SetUsername("svc:cloud").
			SetPassword(ingest).SetCleanSession(false).SetAutoReconnect(false).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	}
	sub := paho.NewClient(subOpts(b.TCPURL))
	waitToken(t, "connect the subscriber", sub.Connect())
	waitToken(t, "subscribe", sub.Subscribe("$share/cloud/devices/+/positions", 1, nil))
	sub.Disconnect(250)

	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID("van-1").
		SetUsername("van-1").SetPassword(iss.deviceToken(t, "van-1")))
	waitToken(t, "connect the publisher", pub.Connect())
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range n {
		payload := fmt.Sprintf(`{"time":%q,"lat":52.1,"lon":4.2}`, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
		waitToken(t, "publish", pub.Publish("devices/van-1/positions", 1, false, payload))
	}
	pub.Disconnect(250)

	b.Stop()
	b = start()
	sub = paho.NewClient(subOpts(b.TCPURL))
	waitToken(t, "reconnect the subscriber", sub.Connect())
	defer sub.Disconnect(250)
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for len(seen) < n {
		select {
		case p := <-got:
			seen[p] = true
		case <-deadline:
			t.Fatalf("got %d of %d positions after the restart", len(seen), n)
		}
	}
}

// waitToken waits for a paho token and fails the test on its error.
func waitToken(t testing.TB, what string, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, tok.Error())
	}
}
