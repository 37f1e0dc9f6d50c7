package cloud_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/cloud/ingest"
	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// BenchmarkEndToEndMQTT measures the whole path in one process: paho
// publishers at QoS 1 → embedded broker → ingest bridge → real influxd, b.N
// positions from 1,000 devices over 20 connections, until InfluxDB holds them
// all. Run it with a fixed count (make bench uses -benchtime 200000x).
func BenchmarkEndToEndMQTT(b *testing.B) {
	s := startStack(b, ingest.Config{})
	const devices, conns = 1000, 20
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	payloads := make([][]byte, b.N)
	for i := range payloads {
		p := position.Position{Time: base.Add(time.Duration(i/devices) * 100 * time.Millisecond),
			Lat: 52 + float64(i%9973)/1e4, Lon: 4 + float64(i%7919)/1e4, Speed: 1.2, Sats: 9, Set: position.Required | position.FieldSpeed | position.FieldSats}
		payloads[i] = p.AppendJSON(nil)
	}
	clients := make([]paho.Client, conns)
	for c := range clients {
		clients[c] = paho.NewClient(paho.NewClientOptions().AddBroker(s.broker.TCPURL).SetClientID(fmt.Sprintf("bench-%d", c)))
		if tok := clients[c].Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		defer clients[c].Disconnect(100)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			var last paho.Token
			for i := c; i < b.N; i += conns {
				last = clients[c].Publish(topic.Device(fmt.Sprintf("dev-%04d", i%devices), topic.Positions), 1, false, payloads[i])
			}
			if last != nil {
				last.Wait()
			}
		})
	}
	wg.Wait()
	s.waitFor(b, "every position in InfluxDB", func() bool { return s.metric(b, "trackgate_ingest_positions_written_total") >= float64(b.N) })
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "positions/s")
	if n := s.count(b); n != b.N {
		b.Fatalf("InfluxDB holds %d points, want %d", n, b.N)
	}
}
