package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"trackgate/cloud/influx"
	"trackgate/cloud/ingest"
	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

// benchMessage is a received message as the broker would hand it over.
type benchMessage struct {
	topic   string
	payload []byte
	acked   *atomic.Int64
	done    chan struct{}
	total   int64
}

func (m *benchMessage) Topic() string   { return m.topic }
func (m *benchMessage) Payload() []byte { return m.payload }
func (m *benchMessage) Ack() {
	if m.acked.Add(1) == m.total {
		close(m.done)
	}
}

// BenchmarkIngestInflux measures the ingest pipeline (decode, validate,
// batch, write, acknowledge) into a real influxd: b.N positions from 1,000
// devices, one position per message, batches of 5,000. Run it with a fixed
// count so that influxd starts once: make bench uses -benchtime 500000x.
func BenchmarkIngestInflux(b *testing.B) {
	inf := testenv.StartInflux(b)
	store, err := influx.New(influx.Config{URL: inf.URL, Bucket: inf.Database + "/autogen"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	const devices = 1000
	var acked atomic.Int64
	done := make(chan struct{})
	msgs := make([]*benchMessage, b.N)
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for i := range msgs {
		p := position.Position{
			Time: base.Add(time.Duration(i/devices) * 100 * time.Millisecond),
			Lat:  52 + float64(i%9973)/1e4, Lon: 4 + float64(i%7919)/1e4, Alt: 12.3, Speed: 1.2, Course: 270,
			HDOP: 0.9, Sats: 9, Fix: position.Fix3D, Acc: 4.5, Batt: 87,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse |
				position.FieldHDOP | position.FieldSats | position.FieldFix | position.FieldAcc | position.FieldBatt,
		}
		msgs[i] = &benchMessage{topic: fmt.Sprintf("devices/dev-%04d/positions", i%devices),
			payload: p.AppendJSON(nil), acked: &acked, done: done, total: int64(b.N)}
	}
	pipe := ingest.NewPipeline(ingest.Config{BatchSize: 5000, MaxUnacked: 100000, Logger: slog.New(slog.DiscardHandler)},
		store, ingest.NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- pipe.Run(ctx) }()

	b.ResetTimer()
	start := time.Now()
	for _, m := range msgs {
		pipe.Handle(ctx, m)
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "positions/s")
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	body, err := inf.Query("SELECT count(lat) FROM position")
	if err != nil {
		b.Fatal(err)
	}
	if want := fmt.Sprintf(`,%d]`, b.N); !strings.Contains(string(body), want) {
		b.Fatalf("InfluxDB holds %s, want %d points", body, b.N)
	}
}
