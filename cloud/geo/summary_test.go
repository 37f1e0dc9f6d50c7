package geo

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"trackgate/internal/position"
)

// metresLat is the latitude, in degrees, of m metres north of the equator.
func metresLat(m float64) float64 { return m / (EarthRadius * rad) }

// summarize adds ps one by one to a new Accumulator, failing on a refusal.
func summarize(t testing.TB, ps []position.Position) (*Accumulator, Summary) {
	t.Helper()
	var a Accumulator
	for i := range ps {
		if !a.Add(&ps[i]) {
			t.Fatalf("point %d (%v) refused", i, ps[i].Time)
		}
	}
	return &a, a.Summary()
}

// checkSummary compares got with want, floats within 1e-9 m or s.
func checkSummary(t *testing.T, got, want Summary) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"Distance", got.Distance, want.Distance},
		{"Duration", got.Duration, want.Duration},
		{"Moving", got.Moving, want.Moving},
		{"MaxSpeed", got.MaxSpeed, want.MaxSpeed},
		{"AvgSpeed", got.AvgSpeed, want.AvgSpeed},
		{"Gain", got.Gain, want.Gain},
		{"Loss", got.Loss, want.Loss},
	} {
		if !near(f.got, f.want, 1e-9) {
			t.Errorf("%s = %.12g, want %.12g", f.name, f.got, f.want)
		}
	}
	if got.Points != want.Points {
		t.Errorf("Points = %d, want %d", got.Points, want.Points)
	}
	if !got.First.Equal(want.First) || !got.Last.Equal(want.Last) {
		t.Errorf("First, Last = %v, %v, want %v, %v", got.First, got.Last, want.First, want.Last)
	}
	if (got.Bounds == nil) != (want.Bounds == nil) || got.Bounds != nil && *got.Bounds != *want.Bounds {
		t.Errorf("Bounds = %+v, want %+v", got.Bounds, want.Bounds)
	}
}

// climb returns points 1 s apart on one spot with altitudes from..to in steps.
func climb(alts ...float64) []position.Position {
	ps := make([]position.Position, len(alts))
	for i, a := range alts {
		ps[i] = withAlt(pt(float64(i), 52, 5), a)
	}
	return ps
}

// steps returns from, from+step, …, to.
func steps(from, to, step float64) []float64 {
	var v []float64
	for i := 0; ; i++ {
		a := from + float64(i)*step
		if step > 0 && a > to || step < 0 && a < to {
			return v
		}
		v = append(v, a)
	}
}

func TestSummary(t *testing.T) {
	const amsUtr = 35056.884013914554 // Amsterdam Dam to Utrecht Dom, see TestHaversine
	hour := t0.Add(time.Hour)

	// 10 s at 10 m/s north, 20 s stopped with 0.2 m of jitter a second, 10 s at 10 m/s.
	var stops []position.Position
	lat := 0.0
	for i := 0; i <= 40; i++ {
		switch {
		case i == 0:
		case i <= 10 || i > 30:
			lat += metresLat(10)
		case i%2 == 1:
			lat += metresLat(0.2)
		default:
			lat -= metresLat(0.2)
		}
		stops = append(stops, pt(float64(i), lat, 0))
	}

	cases := []struct {
		name   string
		points []position.Position
		want   Summary
	}{
		{name: "no points"},
		{
			name:   "one point",
			points: []position.Position{withAlt(pt(0, 52, 5), 7)},
			want:   Summary{Points: 1, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0},
		},
		{
			name:   "Amsterdam to Utrecht in an hour",
			points: []position.Position{pt(0, 52.373056, 4.892222), pt(3600, 52.090833, 5.121667)},
			want: Summary{Points: 2, Distance: amsUtr, Duration: 3600, Moving: 3600, MaxSpeed: amsUtr / 3600, AvgSpeed: amsUtr / 3600,
				Bounds: &Bounds{MinLat: 52.090833, MinLon: 4.892222, MaxLat: 52.373056, MaxLon: 5.121667}, First: t0, Last: hour},
		},
		{
			name:   "moving time leaves out the stop",
			points: stops,
			want: Summary{Points: 41, Distance: 200 + 20*0.2, Duration: 40, Moving: 20, MaxSpeed: 10, AvgSpeed: 204.0 / 20,
				Bounds: &Bounds{MinLat: 0, MaxLat: lat}, First: t0, Last: t0.Add(40 * time.Second)},
		},
		{
			name: "duplicates are ignored",
			points: []position.Position{pt(0, 0, 0), pt(0, 1, 1), pt(10, 0, metresLat(100)), pt(10, 5, 5),
				withFix(pt(10, 0, 0), position.FixNone)},
			want: Summary{Points: 2, Distance: 100, Duration: 10, Moving: 10, MaxSpeed: 10, AvgSpeed: 10,
				Bounds: &Bounds{MaxLon: metresLat(100)}, First: t0, Last: t0.Add(10 * time.Second)},
		},
		{
			name: "no-fix points count in points and duration only",
			points: []position.Position{
				withFix(pt(0, 10, 10), position.FixNone),
				withFix(pt(1, 0, 0), position.Fix3D),
				withAlt(withSpeed(withFix(pt(2, 40, 40), position.FixNone), 99), 1000),
				pt(11, metresLat(90), 0),
				withFix(pt(20, -10, -10), position.FixNone),
			},
			want: Summary{Points: 5, Distance: 90, Duration: 20, Moving: 10, MaxSpeed: 9, AvgSpeed: 9,
				Bounds: &Bounds{MaxLat: metresLat(90)}, First: t0, Last: t0.Add(20 * time.Second)},
		},
		{
			name: "max speed: reported when there, derived over 1 s or more otherwise",
			points: []position.Position{
				pt(0, 0, 0),
				pt(0.5, metresLat(50), 0),                  // 100 m/s over 0.5 s: not counted
				withSpeed(pt(1.5, metresLat(80), 0), 3),    // 30 m/s derived, 3 reported: 3
				pt(3.5, metresLat(120), 0),                 // 20 m/s derived
				withSpeed(pt(4.5, metresLat(120.1), 0), 0), // 0 reported
			},
			want: Summary{Points: 5, Distance: 120.1, Duration: 4.5, Moving: 3.5, MaxSpeed: 20, AvgSpeed: 120.1 / 3.5,
				Bounds: &Bounds{MaxLat: metresLat(120.1)}, First: t0, Last: t0.Add(4500 * time.Millisecond)},
		},
		{
			name:   "a clean climb 10 to 60 m in 0.5 m steps",
			points: climb(steps(10, 60, 0.5)...),
			want:   Summary{Points: 101, Duration: 100, Gain: 50, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(100 * time.Second)},
		},
		{
			name:   "a clean descent 60 to 10 m in 0.5 m steps",
			points: climb(steps(60, 10, -0.5)...),
			want:   Summary{Points: 101, Duration: 100, Loss: 50, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(100 * time.Second)},
		},
		{
			name:   "noise under 2 m is filtered",
			points: climb(100, 101.9, 98.1, 101.5, 100.5, 98.5, 101, 99, 100),
			want:   Summary{Points: 9, Duration: 8, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(8 * time.Second)},
		},
		{
			name:   "up and down",
			points: climb(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9, 8, 7, 6, 5, 4),
			want:   Summary{Points: 17, Duration: 16, Gain: 10, Loss: 6, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(16 * time.Second)},
		},
		{
			name:   "the pending change counts",
			points: climb(100, 101.5),
			want:   Summary{Points: 2, Duration: 1, Gain: 1.5, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(time.Second)},
		},
		{
			name: "elevation only from valid points that carry one",
			points: []position.Position{withAlt(pt(0, 52, 5), 10), pt(1, 52, 5), withAlt(withFix(pt(2, 52, 5), position.FixNone), 500),
				withAlt(pt(3, 52, 5), 13)},
			want: Summary{Points: 4, Duration: 3, Gain: 3, Bounds: &Bounds{52, 5, 52, 5}, First: t0, Last: t0.Add(3 * time.Second)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, got := summarize(t, tc.points)
			checkSummary(t, got, tc.want)
		})
	}
}

func TestSummaryClimbIsExact(t *testing.T) {
	_, s := summarize(t, climb(steps(10, 60, 0.5)...))
	if s.Gain != 50 || s.Loss != 0 {
		t.Fatalf("gain, loss = %v, %v, want exactly 50, 0", s.Gain, s.Loss)
	}
}

func TestSummaryJSON(t *testing.T) {
	_, s := summarize(t, []position.Position{withAlt(pt(0, 52.373056, 4.892222), 1), withAlt(pt(3600, 52.090833, 5.121667), 4)})
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"points":2,"distance_m":35056.88401391436,"duration_s":3600,"moving_s":3600,` +
		`"max_speed_mps":9.738023337198433,"avg_speed_mps":9.738023337198433,"elevation_gain_m":3,"elevation_loss_m":0,` +
		`"bbox":[4.892222,52.090833,5.121667,52.373056],"first":"2026-11-21T10:00:00Z","last":"2026-11-21T11:00:00Z"}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	var back Summary
	if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("decoded %+v, %v, want %+v", back, err, s)
	}

	out, err = json.Marshal(Summary{})
	if err != nil || string(out) != `{"points":0,"distance_m":0,"duration_s":0,"moving_s":0,"max_speed_mps":0,"avg_speed_mps":0,"elevation_gain_m":0,"elevation_loss_m":0}` {
		t.Fatalf("empty summary: %s, %v", out, err)
	}
}

func TestAccumulatorOutOfOrder(t *testing.T) {
	a, _ := summarize(t, []position.Position{withAlt(pt(0, 0, 0), 1), withAlt(pt(10, 0, 0.001), 5)})
	before := *a
	for _, p := range []position.Position{pt(9.999, 1, 1), withFix(pt(-1, 1, 1), position.FixNone), withAlt(pt(5, 0, 0), 100)} {
		if a.Add(&p) {
			t.Errorf("a point at %v, before the last one, was added", p.Time)
		}
		if !reflect.DeepEqual(*a, before) {
			t.Fatalf("a refused point changed the state:\n%+v\nwant\n%+v", *a, before)
		}
	}
	dup := pt(10, 3, 3)
	if !a.Add(&dup) || !reflect.DeepEqual(*a, before) {
		t.Fatalf("a duplicate was not ignored: %+v", *a)
	}
}

func TestAccumulatorResume(t *testing.T) {
	ps := randomWalk(1000, 1)
	ps = append(ps[:500:500], append([]position.Position{ps[499], ps[499]}, ps[500:]...)...) // duplicates across a batch boundary
	one, want := summarize(t, ps)
	if want.Points != 1000 || want.Gain == 0 || want.Loss == 0 || want.Moving == 0 || want.Moving == want.Duration {
		t.Fatalf("the walk does not exercise the accumulator: %+v", want)
	}
	for _, split := range []int{0, 1, 2, 17, 500, 501, 502, len(ps) - 1, len(ps)} {
		t.Run(fmt.Sprint(split), func(t *testing.T) {
			first, _ := summarize(t, ps[:split])
			state, err := json.Marshal(first)
			if err != nil {
				t.Fatal(err)
			}
			var resumed Accumulator
			if err := json.Unmarshal(state, &resumed); err != nil {
				t.Fatalf("decoding %s: %v", state, err)
			}
			if !reflect.DeepEqual(&resumed, first) {
				t.Fatalf("state changed through JSON:\n%+v\nwant\n%+v", resumed, *first)
			}
			for i := split; i < len(ps); i++ {
				if !resumed.Add(&ps[i]) {
					t.Fatalf("point %d refused", i)
				}
			}
			if !reflect.DeepEqual(&resumed, one) {
				t.Fatalf("resumed state\n%+v\nwant\n%+v", resumed, *one)
			}
			if got := resumed.Summary(); !reflect.DeepEqual(got, want) {
				t.Fatalf("resumed summary\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}
