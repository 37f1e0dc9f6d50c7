package cloud_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"trackgate/cloud/ingest"
	"trackgate/gateway/spool"
	"trackgate/gateway/uplink"
	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// BenchmarkUplinkDrain: the backlog of a 10-minute outage at 100
// positions/s (10 receivers at 10 Hz: 60,000 positions in the gateway's
// queue) drains through the uplink to the broker, the ingest bridge and
// InfluxDB, while live positions keep being queued at 100/s. It reports the
// drain rate (acknowledged by the broker, and stored in InfluxDB), the
// queue's write cost and its disk bytes per position.
func BenchmarkUplinkDrain(b *testing.B) {
	const receivers, rate, outage = 10, 10, 10 * time.Minute
	backlog := receivers * rate * int(outage/time.Second)
	s := startStack(b, ingest.Config{})
	dir := b.TempDir()
	q, err := spool.Open(spool.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	start := time.Now().Add(-outage)
	payload := func(dev, i int) []byte {
		p := position.Position{Time: start.Add(time.Duration(i) * time.Second / rate).UTC(), Lat: 52 + float64(dev)/100 + float64(i)*1e-6,
			Lon: 4.9 + float64(i)*1e-6, Alt: 12.5, Speed: 13.9, Course: 271.3, HDOP: 0.9, Sats: 11, Fix: position.Fix3D,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldHDOP | position.FieldSats | position.FieldFix}
		return p.AppendJSON(nil)
	}
	topics := make([]string, receivers)
	for d := range topics {
		topics[d] = topic.Device(fmt.Sprintf("van%d", d), topic.Positions)
	}
	fill := time.Now()
	for i := range backlog / receivers {
		for d := range receivers {
			if err := q.Append(topics[d], payload(d, i), false); err != nil {
				b.Fatal(err)
			}
		}
	}
	perAppend := time.Since(fill) / time.Duration(backlog)
	var diskBytes int64
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, f := range segs {
		if fi, err := os.Stat(f); err == nil {
			diskBytes += fi.Size()
		}
	}

	body, _ := json.Marshal(map[string]any{"sub": "usr:bench", "exp": time.Now().Add(time.Hour).Unix()})
	tok := "e30." + base64.RawURLEncoding.EncodeToString(body) + ".c2ln"
	f, err := uplink.New(uplink.Config{URL: s.broker.TCPURL, Spool: q, Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Token: func(context.Context, bool) (string, error) { return tok, nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Live positions keep coming at 100/s.
	var live atomic.Int64
	go func() {
		t := time.NewTicker(time.Second / rate)
		defer t.Stop()
		for i := backlog / receivers; ctx.Err() == nil; i++ {
			<-t.C
			for d := range receivers {
				if q.Append(topics[d], payload(d, i), false) == nil {
					live.Add(1)
				}
			}
		}
	}()
	b.ResetTimer()
	began := time.Now()
	go f.Run(ctx)
	s.waitFor(b, "the backlog to drain", func() bool { st := q.Stats(); return st.Items < receivers*2 })
	acked := time.Since(began)
	s.waitFor(b, "the backlog in InfluxDB", func() bool { return s.count(b) >= backlog })
	stored := time.Since(began)
	b.StopTimer()
	st := f.Status()
	b.ReportMetric(float64(backlog)/acked.Seconds(), "acked-positions/s")
	b.ReportMetric(float64(backlog)/stored.Seconds(), "stored-positions/s")
	b.ReportMetric(float64(backlog)/stored.Seconds()/(receivers*rate), "x-realtime")
	b.ReportMetric(float64(perAppend.Nanoseconds()), "append-ns/position")
	b.ReportMetric(float64(diskBytes)/float64(backlog), "disk-B/position")
	b.ReportMetric(float64(st.Positions)/float64(st.Sent), "positions/message")
	b.Logf("backlog %d positions: acknowledged upstream in %s, in InfluxDB in %s; %d live positions meanwhile; %d messages",
		backlog, acked.Round(time.Millisecond), stored.Round(time.Millisecond), live.Load(), st.Sent)
}
