package tracks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"trackgate/cloud/influx"
	"trackgate/cloud/ingest"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

// fixture is a tracks service on a real SQL store and a real influxd, with
// a clock the test moves.
type fixture struct {
	t   *testing.T
	st  *store.Store
	db  *influx.Client
	svc *tracks.Service
	now time.Time
	ann *store.User
}

func newFixture(t *testing.T, inf *testenv.Influx) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := influx.New(influx.Config{URL: inf.URL, Bucket: inf.Database})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	f := &fixture{t: t, st: st, db: db, now: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	f.svc = tracks.New(tracks.Config{Store: st, Points: db, Now: func() time.Time { return f.now }})
	f.ann = &store.User{Name: fmt.Sprintf("ann-%d", time.Now().UnixNano()), PasswordHash: "x"}
	if err := st.CreateUser(ctx, f.ann); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) device(id string, split time.Duration) *store.Device {
	f.t.Helper()
	d := &store.Device{ID: id, OwnerID: f.ann.ID, AutoSplit: split}
	if err := f.st.CreateDevice(context.Background(), d, nil); err != nil {
		f.t.Fatal(err)
	}
	return d
}

// positions stores one position per step from start, moving north about
// 11 m per step, and files them as the ingest bridge does.
func (f *fixture) positions(device string, start time.Time, step time.Duration, n int) {
	f.t.Helper()
	var batch []ingest.Stored
	var lines []byte
	for i := range n {
		p := position.Position{Time: start.Add(time.Duration(i) * step), Lat: 52 + float64(i)*1e-4, Lon: 5, Set: position.Required}
		batch = append(batch, ingest.Stored{Device: device, Position: p})
		lines = p.AppendLineProtocol(lines, device)
	}
	ctx := context.Background()
	if err := f.db.Write(ctx, lines); err != nil {
		f.t.Fatal(err)
	}
	f.svc.Record(ctx, batch)
}

func (f *fixture) track(id string) *store.Track {
	f.t.Helper()
	t, err := f.st.Track(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return t
}

func (f *fixture) list(device string) []*store.Track {
	f.t.Helper()
	ts, err := f.st.TrackList(context.Background(), store.TrackFilter{OwnerID: f.ann.ID, Device: device, Limit: 100})
	if err != nil {
		f.t.Fatal(err)
	}
	return ts
}

func TestRecording(t *testing.T) {
	inf := testenv.StartInflux(t)
	ctx := context.Background()

	t.Run("start, positions, stop, late positions, delete", func(t *testing.T) {
		f := newFixture(t, inf)
		d := f.device("phone-1", 0)
		t0 := f.now
		f.positions("phone-1", t0.Add(-time.Minute), time.Second, 10) // before any track: in none
		tr, err := f.svc.Start(ctx, d, "Morning", t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Start(ctx, d, "again", t0.Add(time.Second)); !errors.Is(err, tracks.ErrRecording) {
			t.Fatalf("second start: %v, want ErrRecording", err)
		}
		f.positions("phone-1", t0.Add(time.Second), time.Second, 60)
		f.now = t0.Add(2 * time.Minute)
		if tr, err = f.svc.Stop(ctx, f.track(tr.ID), t0.Add(90*time.Second)); err != nil {
			t.Fatal(err)
		}
		s := tracks.Summary(f.track(tr.ID))
		if s.Points != 60 || s.Distance < 600 || s.Distance > 700 {
			t.Fatalf("summary %+v, want 60 points over ~656 m", s)
		}
		// Positions buffered on the phone arrive after the stop, inside the
		// span: they join the track.
		f.positions("phone-1", t0.Add(61*time.Second), time.Second, 20)
		if s := tracks.Summary(f.track(tr.ID)); s.Points != 80 {
			t.Fatalf("after late positions: %d points, want 80", s.Points)
		}
		// Out of order: the summary is computed again from InfluxDB.
		f.positions("phone-1", t0.Add(1500*time.Millisecond), time.Second, 5)
		if !f.track(tr.ID).Dirty {
			t.Fatal("an out-of-order position did not mark the summary dirty")
		}
		f.svc.RecomputeDirty(ctx)
		got := f.track(tr.ID)
		if s := tracks.Summary(got); got.Dirty || s.Points != 85 {
			t.Fatalf("recomputed: dirty %v, %d points, want 85", got.Dirty, s.Points)
		}
		// A second track of the same device, then the first is deleted:
		// only its span's points go.
		tr2, err := f.svc.Start(ctx, d, "", t0.Add(5*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		f.positions("phone-1", t0.Add(5*time.Minute), time.Second, 10)
		if err := f.svc.Delete(ctx, got); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Track(ctx, tr.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted track: %v", err)
		}
		count := 0
		if err := f.db.Points(ctx, "phone-1", t0.Add(-time.Hour), t0.Add(time.Hour), func(*position.Position) error { count++; return nil }); err != nil {
			t.Fatal(err)
		}
		if count != 10+10 { // the 10 before the first track, the 10 of the second
			t.Fatalf("%d points left, want 20", count)
		}
		if s := tracks.Summary(f.track(tr2.ID)); s.Points != 10 {
			t.Fatalf("second track: %d points, want 10", s.Points)
		}
	})

	t.Run("session messages are idempotent", func(t *testing.T) {
		f := newFixture(t, inf)
		f.device("phone-2", 0)
		start := []byte(`{"action":"start","name":"Ride","time":"2026-11-21T09:59:58Z"}`)
		for range 2 {
			if err := f.svc.Session(ctx, "phone-2", start, f.now); err != nil {
				t.Fatal(err)
			}
		}
		ts := f.list("phone-2")
		if len(ts) != 1 || ts[0].Name != "Ride" || !ts[0].Recording() || !ts[0].Started.Equal(f.now.Add(-2*time.Second)) {
			t.Fatalf("after two starts: %+v", ts)
		}
		stop := []byte(`{"action":"stop"}`)
		for range 2 {
			if err := f.svc.Session(ctx, "phone-2", stop, f.now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		ts = f.list("phone-2")
		if len(ts) != 1 || ts[0].Recording() || !ts[0].Stopped.Equal(f.now.Add(time.Minute)) {
			t.Fatalf("after two stops: %+v", ts[0])
		}
		for _, bad := range []string{`{"action":"pause"}`, `{"action":"start","time":"2030-01-01T00:00:00Z"}`, `nope`} {
			if err := f.svc.Session(ctx, "phone-2", []byte(bad), f.now); err == nil {
				t.Errorf("session %s: no error", bad)
			}
		}
		if err := f.svc.Session(ctx, "nobody", start, f.now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("an unregistered device's session: %v", err)
		}
	})

	t.Run("one call files the positions of many devices", func(t *testing.T) {
		// The ingest bridge hands over every device's positions at once:
		// each goes to its own device's tracks and last position.
		f := newFixture(t, inf)
		manual := f.device("manual", 0)
		f.device("auto", 10*time.Minute)
		f.device("old", 0)
		t0 := f.now
		tr, err := f.svc.Start(ctx, manual, "", t0)
		if err != nil {
			t.Fatal(err)
		}
		oldTrack, err := f.svc.Start(ctx, &store.Device{ID: "old", OwnerID: f.ann.ID}, "", t0.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Stop(ctx, oldTrack, t0.Add(-50*time.Minute)); err != nil {
			t.Fatal(err)
		}
		var batch []ingest.Stored
		for i := range 10 { // interleaved, as they arrive
			for j, dev := range []string{"manual", "auto", "old", "unregistered"} {
				p := position.Position{Time: t0.Add(time.Duration(i+1) * time.Second), Lat: 52 + float64(i)*1e-4 + float64(j), Lon: 5, Set: position.Required}
				batch = append(batch, ingest.Stored{Device: dev, Position: p})
			}
		}
		// A late one of "old", inside its stopped track.
		batch = append(batch, ingest.Stored{Device: "old", Position: position.Position{Time: t0.Add(-55 * time.Minute), Lat: 50, Lon: 5, Set: position.Required}})
		f.svc.Record(ctx, batch)
		if s := tracks.Summary(f.track(tr.ID)); s.Points != 10 {
			t.Errorf("manual track: %d points, want 10", s.Points)
		}
		if ts := f.list("auto"); len(ts) != 1 || !ts[0].Auto || tracks.Summary(ts[0]).Points != 10 {
			t.Errorf("automatic tracks: %+v", ts)
		}
		if s := tracks.Summary(f.track(oldTrack.ID)); s.Points != 1 {
			t.Errorf("stopped track: %d points, want the late one", s.Points)
		}
		for j, dev := range []string{"manual", "auto", "old"} {
			st, err := f.st.DeviceStateOf(ctx, dev)
			if err != nil {
				t.Fatal(err)
			}
			var last struct{ Lat float64 }
			if err := json.Unmarshal(st.Position, &last); err != nil || !st.LastTime.Equal(t0.Add(10*time.Second)) || last.Lat != 52.0009+float64(j) {
				t.Errorf("%s: last position %s at %v (%v)", dev, st.Position, st.LastTime, err)
			}
		}
		// An older position does not replace the newest.
		f.svc.Record(ctx, []ingest.Stored{{Device: "auto", Position: position.Position{Time: t0, Lat: 1, Lon: 1, Set: position.Required}}})
		if st, _ := f.st.DeviceStateOf(ctx, "auto"); !st.LastTime.Equal(t0.Add(10 * time.Second)) {
			t.Errorf("auto: last position %s at %v after an older one", st.Position, st.LastTime)
		}
		if st, _ := f.st.DeviceStateOf(ctx, "unregistered"); len(st.Position) != 0 {
			t.Errorf("an unregistered device has a last position: %s", st.Position)
		}
	})

	t.Run("automatic tracks split at gaps and close when idle", func(t *testing.T) {
		f := newFixture(t, inf)
		f.device("tracker", 10*time.Minute)
		t0 := f.now
		f.positions("tracker", t0, 10*time.Second, 30) // 5 minutes
		f.now = t0.Add(5 * time.Minute)
		ts := f.list("tracker")
		if len(ts) != 1 || !ts[0].Auto || !ts[0].Recording() || tracks.Summary(ts[0]).Points != 30 {
			t.Fatalf("first automatic track: %+v", ts)
		}
		// A gap of 20 minutes: a new track, the first closed at its last point.
		f.now = t0.Add(25 * time.Minute)
		f.positions("tracker", t0.Add(25*time.Minute), 10*time.Second, 6)
		ts = f.list("tracker")
		if len(ts) != 2 || ts[1].Recording() || !ts[1].Stopped.Equal(t0.Add(290*time.Second)) || !ts[0].Recording() {
			t.Fatalf("after a gap: %+v %+v", ts[0], ts[1])
		}
		// Idle for longer than the split: closed at its last point.
		f.now = t0.Add(40 * time.Minute)
		f.svc.CloseIdle(ctx)
		ts = f.list("tracker")
		if ts[0].Recording() || !ts[0].Stopped.Equal(t0.Add(25*time.Minute+50*time.Second)) {
			t.Fatalf("idle track: %+v", ts[0])
		}
		// Late positions a few minutes after the second track's end extend it.
		f.positions("tracker", t0.Add(27*time.Minute), 10*time.Second, 3)
		ts = f.list("tracker")
		if len(ts) != 2 || !ts[0].Stopped.Equal(t0.Add(27*time.Minute+20*time.Second)) || tracks.Summary(ts[0]).Points != 9 {
			t.Fatalf("extended track: %+v (%d points)", ts[0], tracks.Summary(ts[0]).Points)
		}
		// A person starts a recording: the automatic track in the way closes.
		f.now = t0.Add(60 * time.Minute)
		f.positions("tracker", f.now, time.Second, 3)
		d, _ := f.st.Device(ctx, "tracker")
		tr, err := f.svc.Start(ctx, d, "Named", f.now.Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		f.positions("tracker", f.now.Add(10*time.Second), time.Second, 3)
		ts = f.list("tracker")
		if len(ts) != 4 || ts[0].ID != tr.ID || ts[1].Recording() || tracks.Summary(ts[0]).Points != 3 {
			t.Fatalf("named track over automatic ones: %+v", ts)
		}
	})
}
