package phonesim

import (
	"math"
	"testing"
	"time"
)

// TestRouteAt checks that the simulated positions are valid, stay on the
// circle and advance at the configured speed.
func TestRouteAt(t *testing.T) {
	r := Route{Lat: 52.3731, Lon: 4.8922, Radius: 500, Speed: 8.3, Alt: 2}
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	prev := r.At(0, t0)
	for s := 1; s <= 400; s++ {
		p := r.At(time.Duration(s)*time.Second, t0.Add(time.Duration(s)*time.Second))
		if err := p.Validate(t0.Add(time.Hour)); err != nil {
			t.Fatalf("after %d s: invalid position %+v: %v", s, p, err)
		}
		if d := haversine(r.Lat, r.Lon, p.Lat, p.Lon); math.Abs(d-r.Radius) > 1 {
			t.Fatalf("after %d s: %.1f m from the centre, want %.0f", s, d, r.Radius)
		}
		// A chord of an 8.3 m arc is a hair shorter than the arc.
		if d := haversine(prev.Lat, prev.Lon, p.Lat, p.Lon); math.Abs(d-r.Speed) > 0.1 {
			t.Fatalf("after %d s: moved %.2f m in a second, want %.1f", s, d, r.Speed)
		}
		prev = p
	}
}

func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * earthRadius * math.Asin(math.Sqrt(a))
}
