package export

import (
	"io"
	"math"
	"runtime"
	"testing"

	"trackgate/internal/position"
)

// benchPoints returns n points with every field as a receiver reports them:
// coordinates to 1e-7 degree, the rest to a tenth.
func benchPoints(n int) []position.Position {
	ps := randomPoints(n, 9)
	round := func(v, scale float64) float64 { return math.Round(v*scale) / scale }
	for i := range ps {
		p := &ps[i]
		p.Set = position.FieldGeoid<<1 - 1
		p.Lat, p.Lon = round(p.Lat, 1e7), round(p.Lon, 1e7)
		for _, v := range []*float64{&p.Alt, &p.Speed, &p.Course, &p.HDOP, &p.PDOP, &p.VDOP, &p.Acc, &p.Batt, &p.Geoid} {
			*v = round(*v, 10)
		}
		if p.Fix == "" {
			p.Fix = position.Fix3D
		}
	}
	return ps
}

// BenchmarkExport exports 100,000 points with every field in each format to
// io.Discard.
func BenchmarkExport(b *testing.B) {
	const n = 100000
	ps := benchPoints(n)
	track := testTrack(ps)
	for _, f := range []Format{JSON, GeoJSON, GPX, CSV} {
		b.Run(string(f), func(b *testing.B) {
			var before, after runtime.MemStats
			b.ReportAllocs()
			runtime.ReadMemStats(&before)
			for b.Loop() {
				e, err := New(f, io.Discard, track)
				if err != nil {
					b.Fatal(err)
				}
				for i := range ps {
					if err := e.Point(&ps[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.Close(); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			points := float64(b.N) * n
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/points, "ns/point")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/points, "allocs/point")
		})
	}
}
