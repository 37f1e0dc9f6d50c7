package importer

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"trackgate/cloud/export"
	"trackgate/internal/position"
)

// benchPoints is the length of the benchmarks' tracks.
const benchPoints = 100_000

// benchTrack returns a track of n positions, one a second, with altitude
// and speed.
func benchTrack(n int) []position.Position {
	t0 := time.Date(2025, 5, 1, 8, 0, 0, 0, time.UTC)
	ps := make([]position.Position, n)
	for i := range ps {
		ps[i] = position.Position{Time: t0.Add(time.Duration(i) * time.Second),
			Lat: 52.3702157 + float64(i)*1.3e-6, Lon: 4.8951679 + float64(i)*0.7e-6, Alt: 2.5 + float64(i%200)/10, Speed: float64(i%300) / 10,
			Set: position.Required | position.FieldAlt | position.FieldSpeed}
	}
	return ps
}

// benchGeoJSONPoints writes ps as a FeatureCollection of Points, a feature
// a line.
func benchGeoJSONPoints(ps []position.Position) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"FeatureCollection","features":[` + "\n")
	for i := range ps {
		p := &ps[i]
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"type":"Feature","geometry":{"type":"Point","coordinates":[%s,%s,%s]},"properties":{"time":%q,"speed":%s}}`,
			strconv.FormatFloat(p.Lon, 'f', -1, 64), strconv.FormatFloat(p.Lat, 'f', -1, 64), strconv.FormatFloat(p.Alt, 'f', -1, 64),
			p.Time.Format(time.RFC3339), strconv.FormatFloat(p.Speed, 'f', -1, 64))
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

// benchGeoJSONLine writes ps as one LineString feature with coordTimes.
func benchGeoJSONLine(ps []position.Position) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"Feature","geometry":{"type":"LineString","coordinates":[`)
	for i := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "[%s,%s,%s]", strconv.FormatFloat(ps[i].Lon, 'f', -1, 64), strconv.FormatFloat(ps[i].Lat, 'f', -1, 64),
			strconv.FormatFloat(ps[i].Alt, 'f', -1, 64))
	}
	b.WriteString(`]},"properties":{"coordTimes":[`)
	for i := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", ps[i].Time.Format(time.RFC3339))
	}
	b.WriteString("]}}\n")
	return b.Bytes()
}

// benchNMEA writes ps as a receiver's GGA and RMC bursts.
func benchNMEA(ps []position.Position) []byte {
	var b bytes.Buffer
	ddmm := func(v float64) (int, float64) { return int(v), (v - float64(int(v))) * 60 }
	for i := range ps {
		p := &ps[i]
		tod := p.Time.Format("150405.00")
		ld, lm := ddmm(p.Lat)
		od, om := ddmm(p.Lon)
		b.WriteString(sentence(fmt.Sprintf("GPGGA,%s,%02d%08.5f,N,%03d%08.5f,E,1,09,1.05,%.1f,M,46.1,M,,", tod, ld, lm, od, om, p.Alt)))
		b.WriteString("\r\n")
		b.WriteString(sentence(fmt.Sprintf("GPRMC,%s,A,%02d%08.5f,N,%03d%08.5f,E,%.3f,183.20,%s,,,A", tod, ld, lm, od, om, p.Speed*3600/1852, p.Time.Format("020106"))))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// benchRead reads data as f, and reports points per second.
func benchRead(b *testing.B, f Format, data []byte, points int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		st, err := Read(context.Background(), bytes.NewReader(data), f, Options{Now: now}, func([]position.Position) error { return nil })
		if err != nil || st.Points != points {
			b.Fatalf("Read = %+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(points)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// exportBench writes ps with the exporter in format f.
func exportBench(b *testing.B, f export.Format, ps []position.Position) []byte {
	var buf bytes.Buffer
	e, err := export.New(f, &buf, export.Track{ID: "bench", Name: "bench"})
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
	return buf.Bytes()
}

// BenchmarkReadGPX reads a GPX 1.1 track with ele, time and speed in
// TrackPointExtension, as the exporter writes it.
func BenchmarkReadGPX(b *testing.B) {
	benchRead(b, GPX, exportBench(b, export.GPX, benchTrack(benchPoints)), benchPoints)
}

// BenchmarkReadCSV reads the exporter's CSV of the same track.
func BenchmarkReadCSV(b *testing.B) {
	benchRead(b, CSV, exportBench(b, export.CSV, benchTrack(benchPoints)), benchPoints)
}

// BenchmarkReadGeoJSON reads the track as a FeatureCollection of Points
// and as a LineString with coordTimes.
func BenchmarkReadGeoJSON(b *testing.B) {
	ps := benchTrack(benchPoints)
	b.Run("Points", func(b *testing.B) { benchRead(b, GeoJSON, benchGeoJSONPoints(ps), benchPoints) })
	b.Run("LineString", func(b *testing.B) { benchRead(b, GeoJSON, benchGeoJSONLine(ps), benchPoints) })
}

// BenchmarkReadNMEA reads the track as GGA and RMC bursts.
func BenchmarkReadNMEA(b *testing.B) {
	benchRead(b, NMEA, benchNMEA(benchTrack(benchPoints)), benchPoints)
}
