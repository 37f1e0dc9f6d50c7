package tracks_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"trackgate/cloud/ingest"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/position"
)

// BenchmarkRecord files what the ingest bridge hands over in one call
// under load: 10 positions of each of 1,000 devices, half of them with
// automatic tracks (so an open track grows), half without any track.
func BenchmarkRecord(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	svc := tracks.New(tracks.Config{Store: st, Now: func() time.Time { return now }})
	u := &store.User{Name: "bench", PasswordHash: "x"}
	if err := st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	const devices, each = 1000, 10
	for i := range devices {
		d := &store.Device{ID: fmt.Sprintf("dev-%04d", i), OwnerID: u.ID}
		if i%2 == 0 {
			d.AutoSplit = 10 * time.Minute
		}
		if err := st.CreateDevice(ctx, d, nil); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]ingest.Stored, 0, devices*each)
	b.ResetTimer()
	for b.Loop() {
		batch = batch[:0]
		for i := range devices {
			for j := range each {
				p := position.Position{Time: now.Add(time.Duration(j) * 100 * time.Millisecond), Lat: 52 + float64(j)*1e-4, Lon: 5, Set: position.Required}
				batch = append(batch, ingest.Stored{Device: fmt.Sprintf("dev-%04d", i), Position: p})
			}
		}
		svc.Record(ctx, batch)
		now = now.Add(time.Second)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*devices), "ns/device")
}
