package geo

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"trackgate/internal/position"
)

// FuzzBoundsJSON checks that decoding any input as a bbox either fails or
// gives a box that encodes and decodes again to itself.
func FuzzBoundsJSON(f *testing.F) {
	for _, s := range []string{`[4.89,52.09,5.12,52.37]`, `[-180,-90,180,90]`, `[1e-7,-0,0,1e21]`, `null`, `[]`, `[1,2,3]`,
		`[1,2,3,4,5,6]`, `{"a":1}`, `[1,2,3,"4"]`, `[1,2,3,4]x`, `[1e999,0,0,0]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Bounds
		if err := b.UnmarshalJSON(data); err != nil {
			return
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encoding %+v: %v", b, err)
		}
		var again Bounds
		if err := json.Unmarshal(out, &again); err != nil || again != b {
			t.Fatalf("%q decoded to %+v, encoded to %s, decoded to %+v, %v", data, b, out, again, err)
		}
	})
}

// fuzzPoints turns data into points, 5 bytes each: seconds since the last
// point (0 is a duplicate, 255 goes back 3 s), metres north and east (signed)
// times 4, altitude, and flags (bit 0: no fix, bit 1: an altitude, bit 2: a
// speed of the altitude byte's value).
func fuzzPoints(data []byte) []position.Position {
	var ps []position.Position
	sec, lat, lon := 0.0, 45.0, 7.0
	for ; len(data) >= 5; data = data[5:] {
		if data[0] == 255 {
			sec -= 3
		} else {
			sec += float64(data[0])
		}
		lat += metresLat(4 * float64(int8(data[1])))
		lon += metresLat(4*float64(int8(data[2]))) / math.Cos(lat*rad)
		p := pt(sec, lat, lon)
		if data[4]&1 != 0 {
			p = withFix(p, position.FixNone)
		}
		if data[4]&2 != 0 {
			p = withAlt(p, float64(int8(data[3])))
		}
		if data[4]&4 != 0 {
			p = withSpeed(p, float64(data[3]))
		}
		ps = append(ps, p)
	}
	return ps
}

// FuzzAccumulator checks the summary's invariants on any sequence of points,
// and that saving the state as JSON anywhere and resuming changes nothing.
func FuzzAccumulator(f *testing.F) {
	f.Add([]byte{1, 10, 0, 5, 2, 1, 10, 0, 6, 2, 0, 3, 3, 7, 7, 2, 0, 0, 100, 3, 255, 1, 1, 1, 1, 60, 0, 0, 0, 4}, uint8(2))
	f.Add([]byte{1, 127, 127, 127, 7, 1, 128, 128, 128, 7, 10, 0, 1, 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		ps := fuzzPoints(data)
		var one, first Accumulator // first: the state after the first split points added
		added := 0
		for i := range ps {
			before := one
			if !one.Add(&ps[i]) {
				if !reflect.DeepEqual(one, before) {
					t.Fatalf("a refused point changed the state")
				}
				continue
			}
			if added++; added <= int(split) {
				first = one
			}
		}
		s := one.Summary()
		for _, v := range []float64{s.Distance, s.Duration, s.Moving, s.MaxSpeed, s.AvgSpeed, s.Gain, s.Loss} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("summary %+v has a negative or non-finite value", s)
			}
		}
		if s.Moving > s.Duration || s.Points > len(ps) || (s.Bounds != nil) != (one.Valid > 0) {
			t.Fatalf("inconsistent summary %+v of %d points", s, len(ps))
		}

		state, err := json.Marshal(&first)
		if err != nil {
			t.Fatal(err)
		}
		var resumed Accumulator
		if err := json.Unmarshal(state, &resumed); err != nil || !reflect.DeepEqual(resumed, first) {
			t.Fatalf("state %s decoded to %+v, %v, want %+v", state, resumed, err, first)
		}
		for i := range ps {
			resumed.Add(&ps[i]) // the points already in are duplicates or out of order
		}
		if !reflect.DeepEqual(resumed, one) {
			t.Fatalf("resumed at %d: %+v, want %+v", split, resumed, one)
		}
	})
}

// FuzzSimplifier checks on any track that the Simplifier's output is a
// subsequence keeping the first and last points, with every point left out
// within the tolerance of its segment, and the same as the recursive
// algorithm's when the track fits one window.
func FuzzSimplifier(f *testing.F) {
	f.Add([]byte{1, 10, 0, 0, 0, 1, 10, 1, 0, 0, 1, 10, 0, 0, 0, 1, 0, 10, 0, 0, 1, 246, 246, 0, 0}, uint8(2), uint8(0))
	f.Add([]byte{1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0}, uint8(0), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, tolerance, window uint8) {
		var ps []position.Position
		for _, p := range fuzzPoints(data) {
			if len(ps) == 0 || p.Time.After(ps[len(ps)-1].Time) {
				ps = append(ps, p)
			}
		}
		tol := float64(tolerance) / 4
		got := simplifyAll(t, tol, int(window), ps)
		checkSimplified(t, max(tol, collinear), ps, got)
		if int(window) > len(ps) || window <= 2 {
			eff := max(tol, collinear)
			if want := referenceDP(ps, eff*eff); !equalPoints(got, want) {
				t.Fatalf("got %v, the recursive algorithm keeps %v", times(got), times(want))
			}
		}
	})
}
