package geo

import (
	"testing"

	"trackgate/internal/position"
)

// benchPoints is the size of the benchmarks' tracks.
const benchPoints = 100000

func BenchmarkHaversine(b *testing.B) {
	var sum float64
	for b.Loop() {
		sum += Haversine(52.373056, 4.892222, 52.090833, 5.121667)
	}
	if sum == 0 {
		b.Fatal(sum)
	}
}

func BenchmarkAccumulator(b *testing.B) {
	ps := randomWalk(benchPoints, 7)
	b.ReportAllocs()
	for b.Loop() {
		var a Accumulator
		for i := range ps {
			a.Add(&ps[i])
		}
		if a.Summary().Points != benchPoints {
			b.Fatal(a.Summary())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchPoints), "ns/point")
}

// BenchmarkSimplifier simplifies a 100,000-point random walk at 5 m, with
// the default window and a small one.
func BenchmarkSimplifier(b *testing.B) {
	ps := randomWalk(benchPoints, 7)
	for _, bc := range []struct {
		name   string
		window int
	}{{"window=10000", 0}, {"window=1000", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			kept := 0
			emit := func(*position.Position) error { kept++; return nil }
			b.ReportAllocs()
			for b.Loop() {
				kept = 0
				s := NewSimplifier(5, bc.window, emit)
				for i := range ps {
					if err := s.Add(&ps[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchPoints), "ns/point")
			b.ReportMetric(float64(kept), "kept")
		})
	}
}
