package importer

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"trackgate/cloud/export"
	"trackgate/internal/position"
)

// allFields is every field of a Position.
const allFields = position.FieldGeoid<<1 - 1

// randomPositions returns n valid positions a little over a second apart,
// each field present at random, the values needing every digit of a
// float64, and among them the edges of the ranges.
func randomPositions(n int, seed uint64) []position.Position {
	r := rand.New(rand.NewPCG(seed, 7))
	fixes := []position.Fix{position.FixNone, position.Fix2D, position.Fix3D, position.FixDGPS, position.FixRTK, position.FixFloat, position.FixDR}
	t0 := time.Date(2025, 3, 30, 0, 59, 58, 123456789, time.UTC)
	ps := make([]position.Position, n)
	for i := range ps {
		p := position.Position{Time: t0.Add(time.Duration(i) * 1001 * time.Millisecond),
			Lat: r.Float64()*180 - 90, Lon: r.Float64()*360 - 180, Set: position.Required}
		for _, f := range []struct {
			bit      position.Fields
			v        *float64
			min, max float64
		}{
			{position.FieldAlt, &p.Alt, -400, 9000}, {position.FieldSpeed, &p.Speed, 0, 80}, {position.FieldCourse, &p.Course, 0, 359.9},
			{position.FieldHDOP, &p.HDOP, 0, 20}, {position.FieldVDOP, &p.VDOP, 0, 20}, {position.FieldPDOP, &p.PDOP, 0, 20},
			{position.FieldAcc, &p.Acc, 0, 100}, {position.FieldBatt, &p.Batt, 0, 100}, {position.FieldGeoid, &p.Geoid, -100, 100},
		} {
			if r.IntN(4) != 0 {
				*f.v = f.min + r.Float64()*(f.max-f.min)
				p.Set |= f.bit
			}
		}
		if r.IntN(4) != 0 {
			p.Sats, p.Set = r.IntN(40), p.Set|position.FieldSats
		}
		if r.IntN(4) != 0 {
			p.Fix, p.Set = fixes[r.IntN(len(fixes))], p.Set|position.FieldFix
		}
		ps[i] = p
	}
	ps[0].Lat, ps[0].Lon, ps[0].Alt, ps[0].Speed, ps[0].Course, ps[0].Set = -90, 180, 0, 0, 0, allFields
	ps[1].Lat, ps[1].Lon, ps[1].Set = 1e-7, -1.2345678901234567, position.Required
	return ps
}

// exportTrack is the track the round trips export, its texts needing
// escapes.
var exportTrack = export.Track{ID: "trk-1 <&\"'>", Name: "Ams <&\"'> → Zürich, \"quoted\" ]]> --", Device: "van-1 <b>&amp;</b>",
	Started: time.Date(2025, 3, 30, 0, 59, 0, 0, time.FixedZone("CET", 3600))}

// exportAs writes ps with trackgate's exporter in format f.
func exportAs(t testing.TB, f export.Format, ps []position.Position) []byte {
	t.Helper()
	var b bytes.Buffer
	e, err := export.New(f, &b, exportTrack)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if err := e.Point(&ps[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gpxCarries returns p as GPX carries it: no accuracy or battery, the RTK
// kinds as dgps, no dead reckoning.
func gpxCarries(p position.Position) position.Position {
	p.Set &^= position.FieldAcc | position.FieldBatt
	switch p.Fix {
	case position.FixRTK, position.FixFloat:
		p.Fix = position.FixDGPS
	case position.FixDR:
		p.Set &^= position.FieldFix
	}
	return p
}

// csvCarries returns p as the CSV export carries it: no DOPs but HDOP, no
// geoid separation.
func csvCarries(p position.Position) position.Position {
	p.Set &^= position.FieldPDOP | position.FieldVDOP | position.FieldGeoid
	return p
}

func TestRoundTrip(t *testing.T) {
	ps := randomPositions(2000, 1)
	for _, c := range []struct {
		export  export.Format
		read    Format
		carries func(position.Position) position.Position
	}{
		{export.GPX, GPX, gpxCarries},
		{export.CSV, CSV, csvCarries},
		{export.JSON, GeoJSON, func(p position.Position) position.Position { return p }},
	} {
		t.Run(string(c.export), func(t *testing.T) {
			data := exportAs(t, c.export, ps)
			f, err := Detect(data[:min(len(data), 4096)])
			if err != nil || f != c.read {
				t.Errorf("Detect = %q, %v, want %q", f, err, c.read)
			}
			got, _, err := readAll(t, c.read, string(data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(got) != len(ps) {
				t.Fatalf("%d positions, want %d", len(got), len(ps))
			}
			for i := range ps {
				want := c.carries(ps[i])
				if d := diff(&got[i], &want, 0); d != "" {
					t.Fatalf("position %d: %s", i, d)
				}
			}
		})
	}
}

// TestRoundTripGeoJSON reads the GeoJSON export. It writes a LineString
// and no time for its positions, which cannot be stored without one: the
// import fails, saying what is missing, unless the export carries
// coordTimes.
func TestRoundTripGeoJSON(t *testing.T) {
	ps := randomPositions(100, 2)
	data := exportAs(t, export.GeoJSON, ps)
	got, _, err := readAll(t, GeoJSON, string(data))
	if !bytes.Contains(data, []byte(`"coordTimes"`)) {
		e, ok := errors.AsType[*Error](err)
		if !ok || e.Line != 1 || !strings.Contains(e.Msg, "LineString without properties.coordTimes") {
			t.Fatalf("Read = %v, want line 1: LineString without properties.coordTimes", err)
		}
		return
	}
	if err != nil || len(got) != len(ps) {
		t.Fatalf("Read = %d positions, %v; want %d", len(got), err, len(ps))
	}
	for i := range ps {
		want := ps[i]
		want.Set &= position.Required | position.FieldAlt
		if d := diff(&got[i], &want, 0); d != "" {
			t.Fatalf("position %d: %s", i, d)
		}
	}
}

// TestRoundTripBatches reads a large export in small batches and checks that
// the slices handed on are the reader's own, reused.
func TestRoundTripBatches(t *testing.T) {
	ps := randomPositions(10_000, 3)
	data := exportAs(t, export.CSV, ps)
	var first *position.Position
	n := 0
	st, err := Read(context.Background(), bytes.NewReader(data), CSV, Options{Now: now, BatchSize: 999}, func(b []position.Position) error {
		if first == nil {
			first = &b[0]
		} else if &b[0] != first {
			t.Error("the batch slice is not reused")
		}
		for i := range b {
			want := csvCarries(ps[n+i])
			if d := diff(&b[i], &want, 0); d != "" {
				t.Fatalf("position %d: %s", n+i, d)
			}
		}
		n += len(b)
		return nil
	})
	if err != nil || st.Points != len(ps) || n != len(ps) {
		t.Fatalf("Read = %+v, %v after %d positions", st, err, n)
	}
}
