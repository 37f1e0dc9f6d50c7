package gpssim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

const gpxTimed = `<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>canal</name>
    <trkseg>
      <trkpt lat="52.3700" lon="4.8900"><ele>1.5</ele><time>2026-11-21T10:00:00Z</time></trkpt>
      <trkpt lat="52.3710" lon="4.8900"><ele>3.5</ele><time>2026-11-21T10:00:10Z</time></trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="52.3710" lon="4.8920"><ele>2</ele><time>2026-11-21T11:00:20.5+01:00</time></trkpt>
    </trkseg>
  </trk>
</gpx>`

const gpxRoute = `<gpx version="1.1"><rte>
  <rtept lat="-33.8650" lon="151.2090"/>
  <rtept lat="-33.8660" lon="151.2090"><ele>20</ele></rtept>
</rte></gpx>`

func TestLoadGPX(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		gpx     string
		want    []Point
		wantErr string
	}{
		{name: "track with times", gpx: gpxTimed, want: []Point{
			{Lat: 52.37, Lon: 4.89, Alt: 1.5, Time: t0},
			{Lat: 52.371, Lon: 4.89, Alt: 3.5, Time: t0.Add(10 * time.Second)},
			{Lat: 52.371, Lon: 4.892, Alt: 2, Time: t0.Add(20500 * time.Millisecond)},
		}},
		{name: "route without times", gpx: gpxRoute, want: []Point{
			{Lat: -33.865, Lon: 151.209}, {Lat: -33.866, Lon: 151.209, Alt: 20},
		}},
		{name: "not xml", gpx: "hello", wantErr: "gpx: EOF"},
		{name: "empty", gpx: `<gpx><trk><trkseg/></trk></gpx>`, wantErr: "gpx: no trkpt or rtept"},
		{name: "bad latitude", gpx: `<gpx><rte><rtept lat="91" lon="0"/></rte></gpx>`, wantErr: "point 1: position 91, 0 out of range"},
		{name: "bad number", gpx: `<gpx><rte><rtept lat="x" lon="0"/></rte></gpx>`, wantErr: "gpx: strconv.ParseFloat"},
		{name: "bad time", gpx: `<gpx><rte><rtept lat="1" lon="0"><time>noon</time></rtept></rte></gpx>`, wantErr: "gpx: point 1: parsing time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadGPX(strings.NewReader(tc.gpx))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadGPX = %v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("LoadGPX = %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Lat != tc.want[i].Lat || got[i].Lon != tc.want[i].Lon || got[i].Alt != tc.want[i].Alt ||
					!got[i].Time.Equal(tc.want[i].Time) {
					t.Errorf("point %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func FuzzLoadGPX(f *testing.F) {
	f.Add(gpxTimed)
	f.Add(gpxRoute)
	f.Fuzz(func(t *testing.T, s string) {
		pts, err := LoadGPX(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(pts) == 0 {
			t.Fatal("no points and no error")
		}
		for _, p := range pts {
			if err := p.validate(); err != nil {
				t.Fatalf("LoadGPX returned %+v: %v", p, err)
			}
		}
	})
}

func TestTrack(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	a := Point{Lat: 52.37, Lon: 4.89, Alt: 0}
	b := Point{Lat: 52.371, Lon: 4.89, Alt: 10} // 111 m north
	ab := distance(a, b)
	timedA, timedB := a, b
	timedA.Time, timedB.Time = t0, t0.Add(10*time.Second)
	tests := []struct {
		name                string
		pts                 []Point
		speed               float64
		elapsed             time.Duration
		lat, alt, v, course float64
	}{
		{"timed, half way", []Point{timedA, timedB}, 99, 5 * time.Second, 52.3705, 5, ab / 10, 0},
		{"timed, looping", []Point{timedA, timedB}, 99, 12500 * time.Millisecond, 52.37025, 2.5, ab / 10, 0},
		{"untimed, at speed", []Point{a, b, a}, ab / 4, 2 * time.Second, 52.3705, 5, ab / 4, 0},
		{"untimed, coming back", []Point{a, b, a}, ab / 4, 6 * time.Second, 52.3705, 5, ab / 4, 180},
		{"untimed, looping", []Point{a, b, a}, ab / 4, 9 * time.Second, 52.37025, 2.5, ab / 4, 0},
		{"one point", []Point{a}, 10, time.Hour, 52.37, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := newTrack(tc.pts, tc.speed)
			if err != nil {
				t.Fatal(err)
			}
			p, v, course := tr.at(tc.elapsed)
			if math.Abs(p.Lat-tc.lat) > 1e-9 || math.Abs(p.Alt-tc.alt) > 1e-9 || math.Abs(v-tc.v) > 1e-9 ||
				math.Abs(course-tc.course) > 1e-6 {
				t.Errorf("at(%v) = %+v, %v m/s, %v°; want lat %v alt %v, %v m/s, %v°",
					tc.elapsed, p, v, course, tc.lat, tc.alt, tc.v, tc.course)
			}
		})
	}
}

func TestTrackErrors(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		pts     []Point
		wantErr string
	}{
		{"no points", []Point{}, "route: no points"},
		{"some times", []Point{{Time: t0}, {Lat: 1}}, "route: 1 of 2 points have no time"},
		{"going back", []Point{{Time: t0}, {Time: t0.Add(-time.Second)}}, "route: point 2: time"},
		{"no time span", []Point{{Time: t0}, {Lat: 1, Time: t0}}, "route: its times span no time"},
		{"bad point", []Point{{Lat: 100}}, "route: point 1: position 100, 0 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newTrack(tc.pts, 1); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("newTrack = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// TestGeneratedLoop checks that the generated path starts at its start,
// stays near it, moves at the speed and closes.
func TestGeneratedLoop(t *testing.T) {
	for _, speed := range []float64{1.4, 13.9, 40} {
		for seed := range uint64(4) {
			start := Point{Lat: 52.3702, Lon: 4.8952}
			pts := generatedLoop(start.Lat, start.Lon, speed, rand.New(rand.NewPCG(seed, 0)))
			tr, err := newTrack(pts, speed)
			if err != nil {
				t.Fatal(err)
			}
			lap := tr.dist[len(pts)-1] / speed
			// At least 200 m from the start, a lap takes about 5 minutes.
			want := max(300, 2*math.Pi*200/speed)
			if lap < want*0.8 || lap > want*1.3 {
				t.Errorf("speed %v: a lap takes %.0f s, want about %.0f", speed, lap, want)
			}
			prev, _, _ := tr.at(0)
			if d := distance(prev, start); d > 1e-6 {
				t.Errorf("speed %v: starts %v m from the start", speed, d)
			}
			for s := 1; s <= int(lap)+5; s++ {
				p, v, _ := tr.at(time.Duration(s) * time.Second)
				if d := distance(p, prev); math.Abs(d-speed) > speed*0.01 || v != speed {
					t.Fatalf("speed %v seed %d: moved %.2f m in second %d at %v m/s", speed, seed, d, s, v)
				}
				if d := distance(p, start); d > 4*max(speed*300/(2*math.Pi), 200) {
					t.Fatalf("speed %v seed %d: %.0f m from the start", speed, seed, d)
				}
				if p.Alt < 0 || p.Alt > 24 {
					t.Fatalf("altitude %v", p.Alt)
				}
				prev = p
			}
		}
	}
}
