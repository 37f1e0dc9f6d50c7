package gateway

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"trackgate/hw/gpssim"
	"trackgate/hw/receiver"
)

// BenchmarkFixLatency measures the time from the last byte of an epoch
// written on the pseudo-terminal to the fix arriving at an MQTT subscriber
// of the gateway's broker: framing, parsing, assembly, publishing and the
// broker's delivery over loopback. One iteration is one epoch of a u-blox
// receiver at 20 Hz; run it with -benchtime Nx.
func BenchmarkFixLatency(b *testing.B) {
	var mu sync.Mutex
	written := make(map[time.Time]time.Time)
	link := filepath.Join(b.TempDir(), "gps0")
	startSim(b, gpssim.Config{Link: link, Rate: 20, Baud: 115200, Profile: gpssim.UBlox, Seed: 1,
		OnEpoch: func(f gpssim.Fix, at time.Time) {
			mu.Lock()
			written[f.Time] = at
			mu.Unlock()
		}})
	spec, _ := receiver.ParseSpec("serial:" + link + "@115200=van")
	g := startGateway(b, Config{Sources: []receiver.Spec{spec}})
	positions := subscribe(b, g.mqtt, "devices/van/positions")

	// Let the reader learn where an epoch ends.
	for range 5 {
		<-positions
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		select {
		case m := <-positions:
			var p struct {
				Time time.Time `json:"time"`
			}
			if err := json.Unmarshal(m.payload, &p); err != nil {
				b.Fatal(err)
			}
			// The fix can arrive before the simulator's write call has
			// returned and recorded it.
			var at time.Time
			for wait := 0; at.IsZero(); wait++ {
				mu.Lock()
				at = written[p.Time]
				mu.Unlock()
				if wait == 1000 {
					b.Fatalf("fix at %v never written", p.Time)
				}
				if at.IsZero() {
					time.Sleep(100 * time.Microsecond)
				}
			}
			lat = append(lat, max(0, m.at.Sub(at)))
		case <-time.After(5 * time.Second):
			b.Fatal("no fix for 5 s")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(1), "max-µs")
}
