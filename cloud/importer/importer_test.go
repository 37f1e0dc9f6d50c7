package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

// now is the clock of the tests.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// R is the required fields.
const R = position.Required

// ts parses an RFC 3339 time for a test.
func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// readAll reads in as f and returns every position handed on.
func readAll(t testing.TB, f Format, in string) ([]position.Position, Stats, error) {
	t.Helper()
	var got []position.Position
	st, err := Read(context.Background(), strings.NewReader(in), f, Options{Now: now, BatchSize: 3}, func(b []position.Position) error {
		if len(b) == 0 || len(b) > 3 {
			t.Errorf("batch of %d positions", len(b))
		}
		got = append(got, b...)
		return nil
	})
	if err == nil && st.Points != len(got) {
		t.Errorf("Stats.Points = %d, handed on %d", st.Points, len(got))
	}
	return got, st, err
}

// diff describes how got differs from want, "" if not at all. Floats
// compare within tol.
func diff(got, want *position.Position, tol float64) string {
	var d []string
	if got.Set != want.Set {
		d = append(d, fmt.Sprintf("Set %b, want %b", got.Set, want.Set))
	}
	if !got.Time.Equal(want.Time) || got.Time.Location() != time.UTC {
		d = append(d, fmt.Sprintf("Time %v, want %v", got.Time, want.Time))
	}
	for _, f := range []struct {
		name      string
		bit       position.Fields
		got, want float64
	}{
		{"Lat", position.FieldLat, got.Lat, want.Lat}, {"Lon", position.FieldLon, got.Lon, want.Lon},
		{"Alt", position.FieldAlt, got.Alt, want.Alt}, {"Speed", position.FieldSpeed, got.Speed, want.Speed},
		{"Course", position.FieldCourse, got.Course, want.Course}, {"HDOP", position.FieldHDOP, got.HDOP, want.HDOP},
		{"Acc", position.FieldAcc, got.Acc, want.Acc}, {"Batt", position.FieldBatt, got.Batt, want.Batt},
		{"PDOP", position.FieldPDOP, got.PDOP, want.PDOP}, {"VDOP", position.FieldVDOP, got.VDOP, want.VDOP},
		{"Geoid", position.FieldGeoid, got.Geoid, want.Geoid},
	} {
		if want.Has(f.bit) && math.Abs(f.got-f.want) > tol {
			d = append(d, fmt.Sprintf("%s %v, want %v", f.name, f.got, f.want))
		}
	}
	if want.Has(position.FieldSats) && got.Sats != want.Sats {
		d = append(d, fmt.Sprintf("Sats %d, want %d", got.Sats, want.Sats))
	}
	if want.Has(position.FieldFix) && got.Fix != want.Fix {
		d = append(d, fmt.Sprintf("Fix %q, want %q", got.Fix, want.Fix))
	}
	return strings.Join(d, "; ")
}

// readCase is a file that reads without error.
type readCase struct {
	name    string
	in      string
	want    []position.Position
	skipped int
}

// runReadCases reads each case as f and compares.
func runReadCases(t *testing.T, f Format, cases []readCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, st, err := readAll(t, f, c.in)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if st.Skipped != c.skipped {
				t.Errorf("Skipped = %d, want %d", st.Skipped, c.skipped)
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d positions, want %d: %+v", len(got), len(c.want), got)
			}
			for i := range got {
				if d := diff(&got[i], &c.want[i], 1e-9); d != "" {
					t.Errorf("position %d: %s", i, d)
				}
			}
		})
	}
}

// errorCase is a file that fails with an *Error at line, its message
// containing msg.
type errorCase struct {
	name string
	in   string
	line int
	msg  string
}

// runErrorCases reads each case as f and checks the error.
func runErrorCases(t *testing.T, f Format, cases []errorCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readAll(t, f, c.in)
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("Read: %v, want an *Error", err)
			}
			if e.Line != c.line || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("Read: %v, want line %d: …%s…", err, c.line, c.msg)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{
		"gpx": GPX, "GPX": GPX, "nmea": NMEA, "txt": NMEA, "LOG": NMEA, "geojson": GeoJSON, "json": GeoJSON,
		"GeoJSON": GeoJSON, "csv": CSV, "Csv": CSV,
	} {
		if got, err := ParseFormat(in); got != want || err != nil {
			t.Errorf("ParseFormat(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "kml", "gpx ", ".gpx"} {
		if got, err := ParseFormat(in); err == nil {
			t.Errorf("ParseFormat(%q) = %q, want an error", in, got)
		}
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		head string
		want Format
	}{
		{`<?xml version="1.0"?><gpx version="1.1">`, GPX},
		{"\ufeff\r\n  <gpx>", GPX},
		{`{"type":"FeatureCollection"`, GeoJSON},
		{"\n [ {", GeoJSON},
		{"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n", NMEA},
		{"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26\n", NMEA},
		{"# log of 2024-05-01\n$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\n", NMEA},
		{"2024-05-01 10:00:00.123 $GNRMC,100000.00,A,5222.2,N,00453.4,E,0.0,,010524,,,A*00\n", NMEA},
		{"time,lat,lon\n2024-05-01T10:00:00Z,52,4\n", CSV},
		{"time;lat;lon\n", CSV},
		{"time\tlat\tlon", CSV},
	} {
		if got, err := Detect([]byte(c.head)); got != c.want || err != nil {
			t.Errorf("Detect(%q) = %q, %v, want %q", c.head, got, err, c.want)
		}
	}
	for _, head := range []string{"", " \n", "<kml></kml>", "hello world\n", "\x00\x01\x02"} {
		if got, err := Detect([]byte(head)); err == nil {
			t.Errorf("Detect(%q) = %q, want an error", head, got)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Line: 812, Msg: "trkpt without <time>"}
	if got := e.Error(); got != "line 812: trkpt without <time>" {
		t.Errorf("Error() = %q", got)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2024-05-01T08:00:00Z":             "2024-05-01T08:00:00Z",
		"2024-05-01t08:00:00z":             "2024-05-01T08:00:00Z",
		"2024-05-01T08:00:00":              "2024-05-01T08:00:00Z",
		"2024-05-01 08:00:00.5":            "2024-05-01T08:00:00.5Z",
		"2024-05-01T08:00:00,25Z":          "2024-05-01T08:00:00.25Z",
		"2024-05-01T08:00:00.123456789Z":   "2024-05-01T08:00:00.123456789Z",
		"2024-05-01T08:00:00.1234567891Z":  "2024-05-01T08:00:00.123456789Z",
		"2024-05-01T10:30:00+02:30":        "2024-05-01T08:00:00Z",
		"2024-05-01T06:00:00-0200":         "2024-05-01T08:00:00Z",
		"2024-05-01T09:00:00+01":           "2024-05-01T08:00:00Z",
		"2024-02-29T00:00:00Z":             "2024-02-29T00:00:00Z",
		"2016-12-31T23:59:60Z":             "2017-01-01T00:00:00Z",
		"2024-05-01T01:00:00.000000000+03": "2024-04-30T22:00:00Z",
	} {
		got, ok := parseTime(in)
		if !ok || !got.Equal(ts(want)) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "2024-05-01", "2024-05-01T08:00", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
		"2024-05-01T24:00:00Z", "2024-05-01T08:00:00.Z", "2024-05-01T08:00:00+2", "2024-05-01T08:00:00 Z",
		"2024-05-01T08:00:00+24:00", "2024/05/01 08:00:00", "2024-05-01T08:60:00Z", "２０24-05-01T08:00:00Z"} {
		if got, ok := parseTime(in); ok {
			t.Errorf("parseTime(%q) = %v, want failure", in, got)
		}
	}
}

func TestParseEpoch(t *testing.T) {
	for in, want := range map[string]string{
		"1714550400":     "2024-05-01T08:00:00Z",
		"1714550400.25":  "2024-05-01T08:00:00.25Z",
		"1714550400000":  "2024-05-01T08:00:00Z",
		"1714550400123":  "2024-05-01T08:00:00.123Z",
		"99999999999":    "5138-11-16T09:46:39Z",
		"100000000000":   "1973-03-03T09:46:40Z",
		"1.7145504e+09":  "2024-05-01T08:00:00Z",
		"-1":             "1969-12-31T23:59:59Z",
		"1714550400.5e3": "2024-05-01T08:00:00.5Z",
	} {
		got, ok := parseEpoch(in)
		if !ok || !got.Equal(ts(want)) {
			t.Errorf("parseEpoch(%q) = %v, %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "abc", "NaN", "Inf", "0x10", "1e300", "1_000"} {
		if got, ok := parseEpoch(in); ok {
			t.Errorf("parseEpoch(%q) = %v, want failure", in, got)
		}
	}
}

// csvOf returns a CSV file of n points, one a second.
func csvOf(n int) string {
	var b strings.Builder
	b.WriteString("time,lat,lon\n")
	for i := range n {
		fmt.Fprintf(&b, "%s,%g,%g\n", ts("2024-05-01T08:00:00Z").Add(time.Duration(i)*time.Second).Format(time.RFC3339), 52+float64(i)*1e-5, 4.0)
	}
	return b.String()
}

func TestBatches(t *testing.T) {
	in := csvOf(12)
	for _, size := range []int{0, 1, 5, 12, 100} {
		var sizes []int
		var got []position.Position
		st, err := Read(context.Background(), strings.NewReader(in), CSV, Options{BatchSize: size}, func(b []position.Position) error {
			sizes = append(sizes, len(b))
			got = append(got, b...)
			return nil
		})
		if err != nil || st.Points != 12 || len(got) != 12 {
			t.Fatalf("size %d: Read = %+v, %v; %d points", size, st, err, len(got))
		}
		full := size
		if full <= 0 {
			full = defaultBatchSize
		}
		for i, n := range sizes {
			if n > full || i < len(sizes)-1 && n != full {
				t.Errorf("size %d: batch %d of %d", size, i, n)
			}
		}
		for i := range got {
			if want := ts("2024-05-01T08:00:00Z").Add(time.Duration(i) * time.Second); !got[i].Time.Equal(want) {
				t.Fatalf("size %d: point %d at %v, want %v", size, i, got[i].Time, want)
			}
		}
	}
}

func TestBatchError(t *testing.T) {
	boom := errors.New("influx is down")
	calls := 0
	st, err := Read(context.Background(), strings.NewReader(csvOf(10)), CSV, Options{Now: now, BatchSize: 4}, func([]position.Position) error {
		if calls++; calls == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 2 || st.Points != 4 {
		t.Errorf("Read = %+v, %v after %d calls, want %v after 2 calls and 4 points", st, err, calls, boom)
	}
	if _, ok := errors.AsType[*Error](err); ok {
		t.Errorf("a batch error is an *Error: %v", err)
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	for f, data := range map[Format]string{
		GPX:     gpx11Handheld[:600],
		NMEA:    "$GPGGA,164400.00,5222.21405,N,00453.40771,E,1,09,1.05,2.4,M,46.1,M,,*51\n",
		GeoJSON: geojsonPoints[:200],
		CSV:     "time,lat,lon\n2024-05-01T08:00:00Z,52,4\n",
	} {
		_, err := Read(context.Background(), &failingReader{data: data, err: boom}, f, Options{Now: now}, func([]position.Position) error { return nil })
		if !errors.Is(err, boom) {
			t.Errorf("%s: Read = %v, want %v", f, err, boom)
		}
		if _, ok := errors.AsType[*Error](err); ok {
			t.Errorf("%s: a read error is an *Error: %v", f, err)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := Read(ctx, strings.NewReader(csvOf(100)), CSV, Options{Now: now, BatchSize: 10}, func([]position.Position) error {
		if calls++; calls == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Errorf("Read = %v after %d calls, want %v after 2", err, calls, context.Canceled)
	}

	// Cancelled before: nothing is read.
	r := &countingReader{r: strings.NewReader(csvOf(10))}
	_, err = Read(ctx, r, CSV, Options{Now: now}, func([]position.Position) error { return nil })
	if !errors.Is(err, context.Canceled) || r.n != 0 {
		t.Errorf("Read with a cancelled context = %v after reading %d bytes", err, r.n)
	}

	// A log with no fix at all still stops: ctx is checked every few
	// thousand lines, not only between batches.
	ctx, cancel = context.WithCancel(context.Background())
	void := strings.Repeat("$GPGGA,164400.00,,,,,0,00,,,M,,M,,*4F\n", 3*tickEvery)
	cr := &countingReader{r: strings.NewReader(void), after: 1000, cancel: cancel}
	_, err = Read(ctx, cr, NMEA, Options{Now: now}, func([]position.Position) error { return nil })
	if !errors.Is(err, context.Canceled) || cr.n == int64(len(void)) {
		t.Errorf("Read of a void log = %v after %d of %d bytes", err, cr.n, len(void))
	}
}

// countingReader counts the bytes read, and calls cancel once after bytes.
type countingReader struct {
	r      io.Reader
	n      int64
	after  int64
	cancel func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 512)])
	c.n += int64(n)
	if c.cancel != nil && c.n >= c.after {
		c.cancel()
		c.cancel = nil
	}
	return n, err
}

func TestReadMisuse(t *testing.T) {
	if _, err := Read(context.Background(), strings.NewReader(""), "kml", Options{}, func([]position.Position) error { return nil }); err == nil {
		t.Error("Read of an unknown format succeeded")
	}
	if _, err := Read(context.Background(), strings.NewReader(""), CSV, Options{}, nil); err == nil {
		t.Error("Read without a batch function succeeded")
	}
}
