package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/gateway/spool"
	"trackgate/internal/testenv"
)

// staticToken is an uplink token source for brokers that accept everyone:
// a JWT-shaped token with a subject and an expiry, never verified.
func staticToken(context.Context, bool) (string, error) {
	body, _ := json.Marshal(map[string]any{"sub": "usr:ann", "exp": time.Now().Add(time.Hour).Unix()})
	return "e30." + base64.RawURLEncoding.EncodeToString(body) + ".c2ln", nil
}

// upstreamBroker is an allow-all broker on a fixed address that records,
// through its tap, every message it accepts.
type upstreamBroker struct {
	*brokertest.Broker
	mu  sync.Mutex
	got map[string]int // messages by topic
}

func startUpstream(t *testing.T, addr string) *upstreamBroker {
	t.Helper()
	u := &upstreamBroker{got: map[string]int{}}
	u.Broker = brokertest.Start(t, broker.Config{TCP: addr, Tap: func(topic string, _ []byte, _ bool) error {
		u.mu.Lock()
		u.got[topic]++
		u.mu.Unlock()
		return nil
	}})
	return u
}

func (u *upstreamBroker) count(topic string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[topic]
}

// metricValue reads one sample from a /metrics page.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestUplinkQueueLimit: with the upstream broker away, a queue limited to
// 64 KiB follows its policy, visible in /metrics; a phone's positions that
// it kept reach the upstream broker once it is back.
func TestUplinkQueueLimit(t *testing.T) {
	for _, policy := range []spool.FullPolicy{spool.DropOldest, spool.DropNew} {
		t.Run(policy.String(), func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			const limit = 64 << 10
			g := startGateway(t, Config{Uplink: Uplink{URL: "mqtt://" + addr, Token: staticToken,
				Queue: spool.Config{Dir: t.TempDir(), MaxBytes: limit, Full: policy, Sync: spool.SyncNever}}})
			c := paho.NewClient(paho.NewClientOptions().AddBroker(g.mqtt).SetClientID("phone").SetWriteTimeout(time.Second))
			if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer c.Disconnect(100)
			const sent = 1000 // about 100 bytes each on disk: past the limit
			base := time.Now().Add(-time.Hour).UTC()
			refused, attempted := 0, 0
			for i := range sent {
				attempted++
				p := fmt.Sprintf(`{"time":%q,"lat":52.1,"lon":4.3}`, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
				tok := c.Publish("devices/phone/positions", 1, false, p)
				if !tok.WaitTimeout(200 * time.Millisecond) { // refused: no PUBACK on MQTT 3.1.1
					if refused++; refused == 3 {
						break
					}
				}
			}
			policyLabel := `{policy="` + policy.String() + `"}`
			dropped := metricValue(t, g.http, "trackgate_uplink_queue_dropped_total"+policyLabel)
			queued := metricValue(t, g.http, "trackgate_uplink_queue_items")
			size := metricValue(t, g.http, "trackgate_uplink_queue_bytes")
			if dropped == 0 || size > limit || int(queued+dropped) < attempted {
				t.Fatalf("queue at its limit: %v dropped, %v queued, %v bytes (limit %d)", dropped, queued, size, limit)
			}
			if policy == spool.DropNew && refused == 0 {
				t.Errorf("drop-new: every publish was acknowledged")
			}

			up := startUpstream(t, addr)
			deadline := time.Now().Add(30 * time.Second)
			for metricValue(t, g.http, "trackgate_uplink_queue_items") > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the queue did not drain")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := up.count("devices/phone/positions"); got == 0 {
				t.Fatalf("upstream got no positions")
			}
		})
	}
}
