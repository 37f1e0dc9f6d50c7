package geo

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// pt returns a valid position at t0+sec with only the required fields.
func pt(sec float64, lat, lon float64) position.Position {
	return position.Position{
		Time: t0.Add(time.Duration(sec * float64(time.Second))),
		Lat:  lat, Lon: lon, Set: position.Required,
	}
}

// withAlt returns p with an altitude.
func withAlt(p position.Position, alt float64) position.Position {
	p.Alt = alt
	p.Set |= position.FieldAlt
	return p
}

// withSpeed returns p with a reported speed.
func withSpeed(p position.Position, speed float64) position.Position {
	p.Speed = speed
	p.Set |= position.FieldSpeed
	return p
}

// withFix returns p with a fix kind.
func withFix(p position.Position, fix position.Fix) position.Position {
	p.Fix = fix
	p.Set |= position.FieldFix
	return p
}

// randomWalk returns n points at 1 Hz starting in Amsterdam, moving about
// 0–15 m each second in a wandering direction, with altitudes, occasional
// stops, reported speeds on some points and no-fix points now and then.
func randomWalk(n int, seed uint64) []position.Position {
	r := rand.New(rand.NewPCG(seed, 1))
	ps := make([]position.Position, n)
	lat, lon, alt, heading := 52.37, 4.89, 10.0, 0.0
	for i := range ps {
		heading += r.NormFloat64() * 0.3
		step := r.Float64() * 15
		if r.IntN(20) == 0 {
			step = 0
		}
		lat += step * math.Cos(heading) / (EarthRadius * rad)
		lon += step * math.Sin(heading) / (EarthRadius * rad * math.Cos(lat*rad))
		alt += r.NormFloat64()
		p := withAlt(pt(float64(i), lat, lon), alt)
		if r.IntN(3) == 0 {
			p = withSpeed(p, step)
		}
		switch r.IntN(50) {
		case 0:
			p = withFix(p, position.FixNone)
		case 1:
			p = withFix(p, position.Fix3D)
		}
		ps[i] = p
	}
	return ps
}

// near reports whether got is within tol of want.
func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestHaversine(t *testing.T) {
	// The references are computed independently, as R·atan2(|a×b|, a·b) of
	// the points' unit vectors, or analytically.
	cases := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want, tol              float64
	}{
		{"same point", 52.37, 4.89, 52.37, 4.89, 0, 0},
		{"one degree of the equator", 0, 0, 0, 1, 111195.0802335329, 1e-6},
		{"equator to pole", 0, 17, 90, 17, math.Pi / 2 * EarthRadius, 1e-6},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadius, 1e-6},
		{"across the antimeridian", 0, 179.5, 0, -179.5, 111195.0802335329, 1e-6},
		{"Amsterdam Dam to Utrecht Dom", 52.373056, 4.892222, 52.090833, 5.121667, 35056.884013914554, 1e-6},
		{"Big Ben to the Statue of Liberty", 51.5007, -0.1246, 40.6892, -74.0445, 5574848.157146155, 1e-5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Haversine(tc.lat1, tc.lon1, tc.lat2, tc.lon2); !near(got, tc.want, tc.tol) {
				t.Errorf("Haversine = %.9f, want %.9f", got, tc.want)
			}
			if got := Haversine(tc.lat2, tc.lon2, tc.lat1, tc.lon1); !near(got, tc.want, tc.tol) {
				t.Errorf("reversed: Haversine = %.9f, want %.9f", got, tc.want)
			}
		})
	}
}

func TestBoundsJSON(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    Bounds
		wantErr string
	}{
		{name: "GeoJSON order", in: `[4.89,52.09,5.12,52.37]`, want: Bounds{MinLat: 52.09, MinLon: 4.89, MaxLat: 52.37, MaxLon: 5.12}},
		{name: "exact digits", in: `[-0.1246000000000001,1e-7,179.99999999999997,-90]`,
			want: Bounds{MinLon: -0.1246000000000001, MinLat: 1e-7, MaxLon: 179.99999999999997, MaxLat: -90}},
		{name: "spaces", in: " [ 1 , 2 , 3 , 4 ] ", want: Bounds{MinLon: 1, MinLat: 2, MaxLon: 3, MaxLat: 4}},
		{name: "three numbers", in: `[1,2,3]`, wantErr: "geo: bbox: 3 numbers, want 4"},
		{name: "six numbers (3D bbox)", in: `[1,2,3,4,5,6]`, wantErr: "geo: bbox: 6 numbers, want 4"},
		{name: "an object", in: `{"minLat":1}`, wantErr: "geo: bbox: json: cannot unmarshal object"},
		{name: "a string in it", in: `[1,"2",3,4]`, wantErr: "geo: bbox: json: cannot unmarshal string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Bounds
			err := json.Unmarshal([]byte(tc.in), &b)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b != tc.want {
				t.Fatalf("got %+v, want %+v", b, tc.want)
			}
			out, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			var again Bounds
			if err := json.Unmarshal(out, &again); err != nil || again != b {
				t.Fatalf("round trip through %s gave %+v, %v", out, again, err)
			}
		})
	}

	out, err := json.Marshal(Bounds{MinLat: 52.09, MinLon: 4.89, MaxLat: 52.37, MaxLon: 5.12})
	if err != nil || string(out) != `[4.89,52.09,5.12,52.37]` {
		t.Fatalf("Marshal = %s, %v", out, err)
	}
	b := Bounds{MinLat: 1}
	if err := b.UnmarshalJSON([]byte("null")); err != nil || b != (Bounds{MinLat: 1}) {
		t.Fatalf("null changed %+v, %v", b, err)
	}
}
