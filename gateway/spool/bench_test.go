package spool

import (
	"context"
	"testing"
	"time"
)

// benchTopic and benchPayload are a position as the gateway queues it.
const (
	benchTopic   = "devices/van-gps/positions"
	benchPayload = `{"t":"2025-06-01T12:34:56.789Z","lat":52.370216,"lon":4.895168,"alt":12.5,"speed":13.9,"course":271.4,"hdop":0.9,"sat":11,"acc":5}`
)

func BenchmarkAppend(b *testing.B) {
	payload := []byte(benchPayload)
	if len(payload) != 130 {
		b.Fatalf("payload of %d bytes, want 130", len(payload))
	}
	for _, bc := range []struct {
		name string
		sync time.Duration
	}{
		{"SyncNever", SyncNever},
		{"Sync1s", time.Second},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openSpool(b, Config{Sync: bc.sync})
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if err := s.Append(benchTopic, payload, false); err != nil {
					b.Fatal(err)
				}
			}
			st := s.Stats()
			b.ReportMetric(float64(st.Bytes)/float64(st.Appended), "disk-B/entry")
		})
	}
}

// BenchmarkAppendSyncAlways appends from many goroutines, each append
// waiting for its sync: concurrent appends share one (group commit).
func BenchmarkAppendSyncAlways(b *testing.B) {
	payload := []byte(benchPayload)
	s := openSpool(b, Config{Sync: SyncAlways})
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(benchTopic, payload, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	st := s.Stats()
	b.ReportMetric(float64(st.Appended)/float64(st.Syncs), "entries/sync")
}

// BenchmarkReadAck reads and acks entries one by one, appended beforehand
// in batches (so the disk holds one batch at a time).
func BenchmarkReadAck(b *testing.B) {
	const batch = 10000
	payload := []byte(benchPayload)
	s := openSpool(b, Config{Sync: SyncNever, SegmentBytes: 1 << 20})
	r := s.NewReader()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(batch, b.N-done)
		for range n {
			if err := s.Append(benchTopic, payload, false); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for range n {
			e, err := r.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			s.Ack(e.Seq)
		}
		done += n
	}
	b.StopTimer()
	if st := s.Stats(); st.Items != 0 {
		b.Fatalf("%d items left", st.Items)
	}
}
