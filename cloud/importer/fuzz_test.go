package importer

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"trackgate/internal/position"
)

// maxSeed leaves the inputs of the tests that exercise the size limits out
// of the seed corpus: they would slow every fuzzing run down.
const maxSeed = 64 << 10

// fuzzRead fuzzes Read of format, seeded with the inputs of the table
// tests: it must not panic or hang, every position it hands on must be
// valid, and every error must be an *Error within the file's lines (the
// input comes from memory and the batch function does not fail).
func fuzzRead(f *testing.F, format Format, reads []readCase, errs []errorCase) {
	for _, c := range reads {
		if len(c.in) <= maxSeed {
			f.Add([]byte(c.in))
		}
	}
	for _, c := range errs {
		if len(c.in) <= maxSeed {
			f.Add([]byte(c.in))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		st, err := Read(context.Background(), bytes.NewReader(data), format, Options{Now: now, BatchSize: 7}, func(b []position.Position) error {
			for i := range b {
				p := &b[i]
				if err := p.Validate(now); err != nil {
					t.Fatalf("position %d is not valid: %v", n+i, err)
				}
				if p.Time.Location() != time.UTC {
					t.Fatalf("position %d: time %v not in UTC", n+i, p.Time)
				}
			}
			n += len(b)
			return nil
		})
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("Read: %v, not an *Error", err)
			}
			if lines := 1 + bytes.Count(data, []byte{'\n'}); e.Line < 1 || e.Line > lines {
				t.Fatalf("Read: %v, in a file of %d lines", err, lines)
			}
			return
		}
		if st.Points != n {
			t.Fatalf("Stats.Points = %d, handed on %d", st.Points, n)
		}
	})
}

func FuzzReadGPX(f *testing.F)     { fuzzRead(f, GPX, gpxReadCases(), gpxErrorCases()) }
func FuzzReadNMEA(f *testing.F)    { fuzzRead(f, NMEA, nmeaReadCases(), nmeaErrorCases()) }
func FuzzReadGeoJSON(f *testing.F) { fuzzRead(f, GeoJSON, geojsonReadCases(), geojsonErrorCases()) }
func FuzzReadCSV(f *testing.F)     { fuzzRead(f, CSV, csvReadCases(), csvErrorCases()) }
