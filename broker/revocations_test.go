package broker_test

import (
	"testing"
	"time"

	"trackgate/broker"
	"trackgate/internal/topic"
)

// TestRevocationsOnDemand: with the revocation list polled only hourly, a
// service publishing on trackgate/revocations makes the broker fetch it at
// once, and the revoked device's session ends within a second; the message
// itself reaches no subscriber, and a device may not send it.
func TestRevocationsOnDemand(t *testing.T) {
	iss := newIssuer(t)
	b, _ := startAuthBroker(t, iss, func(c *broker.Config) { c.Auth.RevocationsInterval = time.Hour })
	ops := watch(t, b, iss, "svc:ops", broker.ScopeOperator, "svc:ops", "#")

	c := iss.claims("van-9", broker.ScopeDevice)
	dev := mustV5(t, b.TCPURL, "van-9", "van-9", iss.sign(t, c))
	if code := publishV5(t, dev, topic.Revocations, nil); code != v5NotAuthorized {
		t.Errorf("a device asking for a refresh: PUBACK %#x, want %#x", code, v5NotAuthorized)
	}

	iss.revoke(c.ID)
	cloud := mustV5(t, b.TCPURL, "svc:cloud", "svc:cloud", iss.sign(t, iss.claims("svc:cloud", broker.ScopeIngest)))
	asked := time.Now()
	if code := publishV5(t, cloud, topic.Revocations, nil); code != 0 {
		t.Fatalf("the cloud asking for a refresh: PUBACK %#x", code)
	}
	select {
	case d := <-dev.disc:
		if d.ReasonCode != v5NotAuthorized {
			t.Errorf("DISCONNECT reason %#x, want %#x", d.ReasonCode, v5NotAuthorized)
		}
		t.Logf("session ended %v after the refresh was asked for", time.Since(asked).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatal("the revoked device is still connected 2 s after the refresh was asked for")
	}
	if ops.has(topic.Revocations) {
		t.Error("the refresh request was delivered to a subscriber")
	}
}
