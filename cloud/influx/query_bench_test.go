package influx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"testing"
	"time"

	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

const benchPoints = 100_000

// benchPosition is the i-th position of a benchmark track: every field set,
// one a second.
func benchPosition(i int) position.Position {
	return position.Position{
		Time: t0.Add(time.Duration(i) * time.Second), Lat: 52 + float64(i)*1e-6, Lon: 4.9 + float64(i)*1.3e-6,
		Alt: 10 + float64(i%100)/10, Geoid: 47.1, Speed: float64(i%30) * 0.37, Course: float64(i%360) + 0.25,
		HDOP: 0.9, PDOP: 1.4, VDOP: 1.1, Acc: 4.5, Batt: 87, Sats: i % 12, Fix: position.Fix3D, Set: allFields,
	}
}

// BenchmarkPoints100k exports a 100,000-point track, every field set, from a
// real influxd 1.8: InfluxDB's own time included.
func BenchmarkPoints100k(b *testing.B) {
	inf := testenv.StartInflux(b)
	c := newTestClient(b, inf.URL, inf.Database+"/autogen", "")
	ps := make([]position.Position, benchPoints)
	for i := range ps {
		ps[i] = benchPosition(i)
	}
	writePositions(b, c, "bench", ps...)
	ctx := context.Background()
	from, to := t0, t0.Add(benchPoints*time.Second)
	b.ReportAllocs()
	iterations := 0
	for b.Loop() {
		n, chunks := 0, 0
		var err error
		chunks, err = c.points(ctx, "bench", from, to, func(p *position.Position) error {
			if p.Set != allFields {
				return fmt.Errorf("position %d has fields %b", n, p.Set)
			}
			n++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != benchPoints || chunks != benchPoints/queryChunkSize {
			b.Fatalf("%d points in %d chunks", n, chunks)
		}
		iterations++
	}
	b.ReportMetric(float64(iterations*benchPoints)/b.Elapsed().Seconds(), "points/s")
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(iterations), "ms/export")
}

// benchAnswer is influxd 1.8's answer for a 100,000-point track, as it
// encodes it: encoding/json over rows of interface values, in chunks of
// 10,000 rows, one a line.
func benchAnswer(tb testing.TB) []byte {
	columns := []string{"time", "acc", "alt", "batt", "course", "fix", "geoid", "hdop", "lat", "lon", "pdop", "sats", "speed", "vdop"}
	var out bytes.Buffer
	for start := 0; start < benchPoints; start += queryChunkSize {
		values := make([][]any, 0, queryChunkSize)
		for i := start; i < start+queryChunkSize; i++ {
			p := benchPosition(i)
			values = append(values, []any{p.Time.UnixNano(), p.Acc, p.Alt, p.Batt, p.Course, string(p.Fix), p.Geoid,
				p.HDOP, p.Lat, p.Lon, p.PDOP, int64(p.Sats), p.Speed, p.VDOP})
		}
		partial := start+queryChunkSize < benchPoints
		type series struct {
			Name    string   `json:"name"`
			Columns []string `json:"columns"`
			Values  [][]any  `json:"values"`
			Partial bool     `json:"partial,omitempty"`
		}
		type result struct {
			StatementID int      `json:"statement_id"`
			Series      []series `json:"series"`
			Partial     bool     `json:"partial,omitempty"`
		}
		chunk := map[string][]result{"results": {{Series: []series{{"position", columns, values, partial}}, Partial: partial}}}
		if err := json.NewEncoder(&out).Encode(chunk); err != nil {
			tb.Fatal(err)
		}
	}
	return out.Bytes()
}

// BenchmarkParse100k measures the parsing alone, of the hand-written parser
// and, for comparison, of encoding/json with UseNumber decoding each chunk.
func BenchmarkParse100k(b *testing.B) {
	body := benchAnswer(b)
	b.Logf("answer of %d points: %d bytes", benchPoints, len(body))
	for _, bc := range []struct {
		name  string
		parse func(io.Reader, func(*position.Position) error) error
	}{
		{"hand", func(r io.Reader, fn func(*position.Position) error) error { return newChunkReader(r).run(fn) }},
		{"encoding-json", decodeChunksStd},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			iterations := 0
			for b.Loop() {
				n := 0
				err := bc.parse(bytes.NewReader(body), func(p *position.Position) error {
					if n == 7 && (p.Time != benchPosition(7).Time || p.Lat != benchPosition(7).Lat || p.Sats != 7) {
						return fmt.Errorf("position 7: %+v", *p)
					}
					n++
					return nil
				})
				if err != nil || n != benchPoints {
					b.Fatalf("%d points, %v", n, err)
				}
				iterations++
			}
			b.ReportMetric(float64(iterations*benchPoints)/b.Elapsed().Seconds(), "points/s")
		})
	}
}

// decodeChunksStd is the alternative to chunkReader measured by
// BenchmarkParse100k: encoding/json (UseNumber, for exact timestamps)
// decoding one chunk at a time, columns mapped by name.
func decodeChunksStd(r io.Reader, fn func(*position.Position) error) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var p position.Position
	for {
		var chunk struct {
			Error   string
			Results []struct {
				Error  string
				Series []struct {
					Columns []string
					Values  [][]any
				}
			}
		}
		if err := dec.Decode(&chunk); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if chunk.Error != "" {
			return &ServerError{Status: 200, Msg: chunk.Error}
		}
		for _, res := range chunk.Results {
			if res.Error != "" {
				return &ServerError{Status: 200, Msg: res.Error}
			}
			for _, s := range res.Series {
				cols := make([]column, len(s.Columns))
				for i, name := range s.Columns {
					cols[i] = columnOf([]byte(name))
				}
				for _, row := range s.Values {
					if len(row) != len(cols) {
						return errors.New("short row")
					}
					p = position.Position{}
					for i, v := range row {
						if v == nil || cols[i] == colIgnore {
							continue
						}
						switch cols[i] {
						case colTime:
							n, err := strconv.ParseInt(string(v.(json.Number)), 10, 64)
							if err != nil {
								return err
							}
							p.Time, p.Set = time.Unix(0, n).UTC(), p.Set|position.FieldTime
						case colFix:
							p.Fix, p.Set = position.Fix(v.(string)), p.Set|position.FieldFix
						case colSats:
							n, err := v.(json.Number).Int64()
							if err != nil || n > math.MaxInt32 {
								return errors.New("bad sats")
							}
							p.Sats, p.Set = int(n), p.Set|position.FieldSats
						default:
							f, err := v.(json.Number).Float64()
							if err != nil {
								return err
							}
							ptr, bit := referenceFloat(&p, cols[i].name())
							*ptr, p.Set = f, p.Set|bit
						}
					}
					if err := fn(&p); err != nil {
						return err
					}
				}
			}
		}
	}
}
