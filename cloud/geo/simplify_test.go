package geo

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"trackgate/internal/position"
)

// simplifyAll runs ps through a Simplifier and returns what it emits.
func simplifyAll(t testing.TB, tolerance float64, window int, ps []position.Position) []position.Position {
	t.Helper()
	var out []position.Position
	s := NewSimplifier(tolerance, window, func(p *position.Position) error {
		out = append(out, *p)
		return nil
	})
	for i := range ps {
		if err := s.Add(&ps[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSimplified checks that out is a subsequence of in that keeps its first
// and last points and that every point left out lies within tolerance of the
// segment between the kept points around it. Points are told apart by time.
func checkSimplified(t testing.TB, tolerance float64, in, out []position.Position) {
	t.Helper()
	if len(in) == 0 {
		if len(out) != 0 {
			t.Fatalf("%d points out of none", len(out))
		}
		return
	}
	if len(out) == 0 || out[0] != in[0] || out[len(out)-1] != in[len(in)-1] {
		t.Fatalf("first or last point lost: %d points out of %d", len(out), len(in))
	}
	j := 0 // index in out of the last kept point at or before in[i]
	for i := 1; i < len(in); i++ {
		if j+1 < len(out) && in[i] == out[j+1] {
			j++
			continue
		}
		if j+1 >= len(out) {
			t.Fatalf("out is not a subsequence of in: in[%d] (%v) after the last point out", i, in[i].Time)
		}
		if !in[i].Time.Before(out[j+1].Time) {
			t.Fatalf("out is not a subsequence of in: out[%d] (%v) not found in order", j+1, out[j+1].Time)
		}
		seg := newSegment(&out[j], &out[j+1])
		if d := math.Sqrt(seg.dist2(&in[i])); d > tolerance*(1+1e-12) {
			t.Fatalf("in[%d] left out at %g m from its segment, more than the tolerance %g m", i, d, tolerance)
		}
	}
	if j != len(out)-1 {
		t.Fatalf("out is not a subsequence of in: %d of %d points matched", j+1, len(out))
	}
}

// referenceDP is the textbook recursive Douglas–Peucker over the whole input,
// with the same distance, for comparison.
func referenceDP(ps []position.Position, tol2 float64) []position.Position {
	if len(ps) < 3 {
		return ps
	}
	seg := newSegment(&ps[0], &ps[len(ps)-1])
	far, farD2 := -1, tol2
	for i := 1; i < len(ps)-1; i++ {
		if d2 := seg.dist2(&ps[i]); d2 > farD2 {
			far, farD2 = i, d2
		}
	}
	if far < 0 {
		return []position.Position{ps[0], ps[len(ps)-1]}
	}
	left := referenceDP(ps[:far+1], tol2)
	return append(left[:len(left):len(left)], referenceDP(ps[far:], tol2)[1:]...)
}

// line returns n points 1 s apart along a straight line north from lat, lon,
// step metres apart.
func line(n int, lat, lon, step float64) []position.Position {
	ps := make([]position.Position, n)
	for i := range ps {
		ps[i] = pt(float64(i), lat+metresLat(step*float64(i)), lon)
	}
	return ps
}

// zigzag returns legs of n points each, heading north while swinging
// amplitude metres east and back: its corners and the points between them.
func zigzag(legs, n int, amplitude float64) (all, corners []position.Position) {
	var sec float64
	for l := 0; l <= legs; l++ {
		for i := 0; i < n; i++ {
			if l == legs && i > 0 {
				break
			}
			f := float64(i) / float64(n)
			east := amplitude * f
			if l%2 == 1 {
				east = amplitude * (1 - f)
			}
			p := pt(sec, 52+metresLat(100*(float64(l)+f)), 5+metresLat(east)/math.Cos(52*rad))
			sec++
			all = append(all, p)
			if i == 0 {
				corners = append(corners, p)
			}
		}
	}
	return all, corners
}

func TestSimplifier(t *testing.T) {
	walk := randomWalk(5000, 2)
	zz, corners := zigzag(10, 20, 50)
	arc := make([]position.Position, 50) // a circle's arc: no three points collinear
	for i := range arc {
		a := float64(i) * math.Pi / 60
		arc[i] = pt(float64(i), 52+metresLat(30*math.Sin(a)), 5+metresLat(30*math.Cos(a))/math.Cos(52*rad))
	}
	diagonal := make([]position.Position, 1000)
	for i := range diagonal {
		diagonal[i] = pt(float64(i), 45+float64(i)*1e-4, 7-float64(i)*3e-4)
	}
	offLine := []position.Position{pt(0, 0, 0), pt(1, metresLat(5), metresLat(2e-6)), pt(2, metresLat(10), 0)}
	cases := []struct {
		name      string
		in        []position.Position
		tolerance float64
		window    int
		want      []position.Position // when not nil, exactly the points out
		wantN     int                 // when not 0, the number of points out
		wantKept  []position.Position // points that must be out, among others
	}{
		{name: "no points", in: nil, tolerance: 5},
		{name: "one point", in: walk[:1], tolerance: 5, want: walk[:1]},
		{name: "two points", in: walk[:2], tolerance: 5, want: walk[:2]},
		{name: "two identical points", in: []position.Position{pt(0, 1, 1), pt(1, 1, 1)}, tolerance: 5, want: []position.Position{pt(0, 1, 1), pt(1, 1, 1)}},
		{name: "straight line", in: line(1000, 52, 5, 3), tolerance: 1, wantN: 2},
		{name: "straight line, tolerance 0", in: line(1000, 0, 0, 1), tolerance: 0, wantN: 2},
		{name: "straight diagonal line, tolerance 0", in: diagonal, tolerance: 0, wantN: 2},
		{name: "a micrometre off the line, tolerance 0", in: offLine, tolerance: 0, wantN: 3},
		{name: "straight line keeps window boundaries", in: line(1000, 52, 5, 3), tolerance: 1, window: 7, wantN: 1 + 999/6 + 1},
		{name: "zigzag keeps its corners", in: zz, tolerance: 10, want: corners},
		{name: "zigzag keeps its corners over windows", in: zz, tolerance: 10, window: 13, wantKept: corners,
			wantN: len(corners) + 13}, // boundaries every 12 points up to 192, but for 60, 120 and 180: corners

		{name: "zigzag under the tolerance", in: zz, tolerance: 60, wantN: 2},
		{name: "tolerance 0 keeps every point of an arc", in: arc, tolerance: 0, want: arc},
		{name: "negative tolerance is 0", in: arc, tolerance: -1, want: arc},
		{name: "out and back is not a line", in: []position.Position{pt(0, 0, 0), pt(1, metresLat(1000), 0), pt(2, 0, 0)}, tolerance: 5, wantN: 3},
		{name: "across the antimeridian", in: []position.Position{pt(0, 0, 179.9999), pt(1, metresLat(0.1), 180), pt(2, 0, -179.9999)}, tolerance: 1, wantN: 2},
		{name: "across the antimeridian westwards", in: []position.Position{pt(0, 0, -179.9999), pt(1, metresLat(0.1), 180), pt(2, 0, 179.9999)}, tolerance: 1, wantN: 2},
		{name: "across the antimeridian, a corner", in: []position.Position{pt(0, 0, -179.9999), pt(1, metresLat(5), 180), pt(2, 0, 179.9999)}, tolerance: 1, wantN: 3},
		{name: "random walk", in: walk, tolerance: 5},
		{name: "random walk, window 3", in: walk, tolerance: 5, window: 3},
		{name: "random walk, window 4", in: walk, tolerance: 5, window: 4},
		{name: "random walk, window 1000", in: walk, tolerance: 2, window: 1000},
		{name: "random walk, tolerance 0", in: walk, tolerance: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := simplifyAll(t, tc.tolerance, tc.window, tc.in)
			tol := max(tc.tolerance, collinear)
			checkSimplified(t, tol, tc.in, got)
			if tc.want != nil && !equalPoints(got, tc.want) {
				t.Fatalf("got %d points %v, want %d", len(got), times(got), len(tc.want))
			}
			if tc.wantN != 0 && len(got) != tc.wantN {
				t.Fatalf("%d points, want %d", len(got), tc.wantN)
			}
			for _, k := range tc.wantKept {
				if !slices.Contains(got, k) {
					t.Fatalf("point at %v left out", k.Time)
				}
			}
			if tc.window == 0 && len(tc.in) <= DefaultWindow {
				if want := referenceDP(tc.in, tol*tol); !equalPoints(got, want) {
					t.Fatalf("got %d points, the recursive algorithm keeps %d", len(got), len(want))
				}
			}
		})
	}
}

// equalPoints reports whether a and b hold the same points.
func equalPoints(a, b []position.Position) bool { return slices.Equal(a, b) }

// times returns the seconds since t0 of ps, for messages.
func times(ps []position.Position) []float64 {
	v := make([]float64, len(ps))
	for i := range ps {
		v[i] = ps[i].Time.Sub(t0).Seconds()
	}
	return v
}

func TestSimplifierWindowBoundaries(t *testing.T) {
	walk := randomWalk(60, 3)
	for window := 3; window <= 12; window++ {
		for n := 0; n <= len(walk); n++ {
			t.Run(fmt.Sprint(window, "/", n), func(t *testing.T) {
				in := walk[:n]
				checkSimplified(t, 3, in, simplifyAll(t, 3, window, in))
				checkSimplified(t, collinear, in, simplifyAll(t, 0, window, in))
			})
		}
	}
}

func TestSimplifierCopiesAndRestarts(t *testing.T) {
	var out []position.Position
	s := NewSimplifier(1, 0, func(p *position.Position) error {
		out = append(out, *p)
		return nil
	})
	p := pt(0, 1, 1)
	for i := range 10 {
		p = pt(float64(i), metresLat(float64(i)), 0)
		if err := s.Add(&p); err != nil {
			t.Fatal(err)
		}
		p.Lat = 80 // the Simplifier holds its own copy
	}
	if len(out) != 0 {
		t.Fatalf("emitted %d points before Flush with a window of %d", len(out), DefaultWindow)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Lat != 0 || out[1].Lat != metresLat(9) {
		t.Fatalf("got %+v", out)
	}
	if err := s.Flush(); err != nil || len(out) != 2 {
		t.Fatalf("a second Flush: %v, %d points", err, len(out))
	}
	next := pt(100, 5, 5)
	if err := s.Add(&next); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil || len(out) != 3 || out[2] != next {
		t.Fatalf("a new stream after Flush: %v, %+v", err, out)
	}
}

func TestSimplifierEmitError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	s := NewSimplifier(0, 3, func(*position.Position) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	walk := randomWalk(10, 4)
	var err error
	for i := 0; err == nil && i < len(walk); i++ {
		err = s.Add(&walk[i])
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Add returned %v, want emit's error", err)
	}
	if err := s.Add(&walk[9]); !errors.Is(err, boom) {
		t.Fatalf("Add after the error returned %v", err)
	}
	if err := s.Flush(); !errors.Is(err, boom) || calls != 2 {
		t.Fatalf("Flush after the error returned %v after %d calls of emit", err, calls)
	}
}
