package loadgen_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/hw/loadgen"
	"trackgate/internal/position"
	"trackgate/internal/topic"
)

func devices(prefix string, n int) []loadgen.Device {
	out := make([]loadgen.Device, n)
	for i := range out {
		out[i].ID = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func TestConfigChecked(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  loadgen.Config
		want string
	}{
		{"not loopback", loadgen.Config{Broker: "tcp://192.0.2.1:1883", Duration: time.Second}, "not a loopback address"},
		{"no host", loadgen.Config{Broker: "1883", Duration: time.Second}, "want a URL"},
		{"no duration", loadgen.Config{Broker: "tcp://127.0.0.1:1883"}, "duration"},
		{"too long", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: 2 * time.Hour}, "duration"},
		{"too many connections", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second,
			Phones: devices("p", 15000), Idle: devices("i", 6000)}, "connections"},
		{"batch", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second, Batch: 1001}, "batch"},
		{"inflight", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second, Inflight: -1}, "inflight"},
		{"rate", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second, Rate: -5}, "rate"},
		{"receivers", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second, Receivers: 3}, "directory"},
		{"device id", loadgen.Config{Broker: "tcp://127.0.0.1:1883", Duration: time.Second,
			Phones: []loadgen.Device{{ID: "a/b"}}}, "device"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadgen.Run(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// TestRunPublishesWhatItReports drives a real broker whose tap records every
// position accepted, and checks the report against it: every position
// acknowledged arrived, stamped with strictly increasing times per device,
// at about the rate asked, after the idle connections were up.
func TestRunPublishesWhatItReports(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]time.Time{}
	b := brokertest.Start(t, broker.Config{Tap: func(tp string, payload []byte, _ bool) error {
		dev, kind, err := topic.Parse(tp)
		if err != nil || kind != topic.Positions {
			return nil
		}
		ps, errs := position.Decode(payload, nil)
		if len(errs) > 0 {
			t.Errorf("%s: %v", tp, errs[0])
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps {
			got[dev] = append(got[dev], p.Time)
		}
		return nil
	}})
	var events []string
	rep, err := loadgen.Run(t.Context(), loadgen.Config{
		Broker: b.TCPURL, Phones: devices("phone", 5), Idle: devices("idle", 20),
		Rate: 300, Batch: 3, Duration: 2 * time.Second,
		OnEvent: func(ev string, _ time.Time) { events = append(events, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "idle-connected,phones-connected" {
		t.Errorf("events %v", events)
	}
	mu.Lock()
	defer mu.Unlock()
	var n int64
	for dev, ts := range got {
		n += int64(len(ts))
		for i := 1; i < len(ts); i++ {
			if !ts[i].After(ts[i-1]) {
				t.Fatalf("%s: position %d at %v, not after %v", dev, i, ts[i], ts[i-1])
			}
		}
	}
	if rep.Positions != n || rep.Messages*3 != n || rep.Unacked != 0 {
		t.Errorf("report: %d positions in %d messages, %d unacknowledged; the broker took %d", rep.Positions, rep.Messages, rep.Unacked, n)
	}
	if len(got) != 5 || n < 450 || n > 660 {
		t.Errorf("%d positions from %d phones in 2 s at 300/s", n, len(got))
	}
	if rep.First.After(rep.Last) || rep.Started.After(rep.Ended) || rep.Idle != 20 {
		t.Errorf("report %+v", rep)
	}
}
