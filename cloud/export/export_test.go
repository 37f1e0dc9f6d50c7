package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"trackgate/cloud/geo"
	"trackgate/internal/position"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// allFields is every field of a Position.
const allFields = position.FieldGeoid<<1 - 1

// testTrack is a track whose texts need escaping in every format.
func testTrack(ps []position.Position) Track {
	var a geo.Accumulator
	for i := range ps {
		a.Add(&ps[i])
	}
	stopped := t0.Add(2 * time.Hour).In(time.FixedZone("CET", 3600))
	return Track{
		ID:      `trk-1 <&"'>`,
		Name:    "Ams <&\"'> → Zürich 東京 🚲\ttab & new\nline, \"quoted\" ]]> --",
		Device:  "van-1 <b>&amp;</b>",
		Started: t0.In(time.FixedZone("CET", 3600)),
		Stopped: &stopped,
		Summary: a.Summary(),
	}
}

// samplePoints covers every field, every fix kind, values needing every
// digit of a float64, tiny and negative values, and points with the
// required fields only.
func samplePoints() []position.Position {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	return []position.Position{
		{Time: ms(100), Lat: 52.37, Lon: 4.89, Alt: 12.3, Speed: 1.2, Course: 270, HDOP: 0.9, Sats: 9, Fix: position.Fix3D,
			Acc: 4.5, Batt: 87, PDOP: 1.5, VDOP: 1.1, Geoid: 47.2, Set: allFields},
		{Time: ms(2000), Lat: 1e-7, Lon: -1.2345678901234567, Set: position.Required},
		{Time: ms(3100), Lat: 89.99999999999999, Lon: 179.99999999999997, Alt: -12.5, Fix: position.FixRTK,
			Set: position.Required | position.FieldAlt | position.FieldFix},
		{Time: ms(4000), Lat: -33.8688, Lon: 151.2093, Alt: 0, Speed: 0, Course: 0, Sats: 0, Fix: position.FixDR,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldSats | position.FieldFix},
		{Time: ms(5001), Lat: -90, Lon: -180, Fix: position.FixNone, HDOP: 99.9, Set: position.Required | position.FieldFix | position.FieldHDOP},
		{Time: ms(6999), Lat: 0, Lon: 0, Fix: position.FixFloat, Geoid: -32.25, Course: 359.999, Acc: 0.01, Batt: 0,
			Set: position.Required | position.FieldFix | position.FieldGeoid | position.FieldCourse | position.FieldAcc | position.FieldBatt},
		{Time: ms(8000), Lat: 45.000000000000014, Lon: 7.1, Fix: position.FixDGPS, Sats: 255, VDOP: 2, PDOP: 3.3333333333333335,
			Set: position.Required | position.FieldFix | position.FieldSats | position.FieldVDOP | position.FieldPDOP},
		{Time: ms(9000), Lat: 10, Lon: 20, Alt: 99999.99, Fix: position.Fix2D, Speed: 1999.9999999999998,
			Set: position.Required | position.FieldAlt | position.FieldFix | position.FieldSpeed},
	}
}

// randomPoints returns n valid points 1.234 s apart at random places, with
// random fields, every coordinate needing all its digits.
func randomPoints(n int, seed uint64) []position.Position {
	r := rand.New(rand.NewPCG(seed, 2))
	fixes := []position.Fix{position.FixNone, position.Fix2D, position.Fix3D, position.FixDGPS, position.FixRTK, position.FixFloat, position.FixDR}
	ps := make([]position.Position, n)
	for i := range ps {
		p := position.Position{Time: t0.Add(time.Duration(i) * 1234 * time.Millisecond),
			Lat: r.Float64()*180 - 90, Lon: r.Float64()*360 - 180, Set: position.Required}
		for _, f := range []struct {
			bit Fields
			v   *float64
			max float64
		}{
			{position.FieldAlt, &p.Alt, 9000}, {position.FieldSpeed, &p.Speed, 80}, {position.FieldCourse, &p.Course, 359},
			{position.FieldHDOP, &p.HDOP, 20}, {position.FieldVDOP, &p.VDOP, 20}, {position.FieldPDOP, &p.PDOP, 20},
			{position.FieldAcc, &p.Acc, 100}, {position.FieldBatt, &p.Batt, 100}, {position.FieldGeoid, &p.Geoid, 100},
		} {
			if r.IntN(4) != 0 {
				*f.v = r.Float64() * f.max
				p.Set |= f.bit
			}
		}
		if r.IntN(4) != 0 {
			p.Sats, p.Set = r.IntN(30), p.Set|position.FieldSats
		}
		if r.IntN(4) != 0 {
			p.Fix, p.Set = fixes[r.IntN(len(fixes))], p.Set|position.FieldFix
		}
		ps[i] = p
	}
	return ps
}

// Fields is position.Fields, shorter.
type Fields = position.Fields

// encode exports ps as f.
func encode(t testing.TB, f Format, track Track, ps []position.Position) []byte {
	t.Helper()
	var b bytes.Buffer
	e, err := New(f, &b, track)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if err := e.Point(&ps[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// exportedJSON is the JSON format, parsed.
type exportedJSON struct {
	Track struct {
		ID      string      `json:"id"`
		Name    string      `json:"name"`
		Device  string      `json:"device"`
		Started time.Time   `json:"started"`
		Stopped *time.Time  `json:"stopped"`
		Summary geo.Summary `json:"summary"`
	} `json:"track"`
	Points []json.RawMessage `json:"points"`
}

// parseJSON reads the JSON format with encoding/json and the points with the
// wire contract's decoder.
func parseJSON(t testing.TB, data []byte) (exportedJSON, []position.Position) {
	t.Helper()
	var v exportedJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	if dec.More() {
		t.Fatalf("data after the object: %s", data)
	}
	var ps []position.Position
	for _, raw := range v.Points {
		var errs []*position.Error
		if ps, errs = position.Decode(raw, ps); len(errs) != 0 {
			t.Fatalf("point %s: %v", raw, errs[0])
		}
	}
	return v, ps
}

// feature is a GeoJSON Feature, parsed.
type feature struct {
	Type     string    `json:"type"`
	ID       *string   `json:"id"`
	BBox     []float64 `json:"bbox"`
	Geometry *struct {
		Type        string          `json:"type"`
		Coordinates json.RawMessage `json:"coordinates"`
	} `json:"geometry"`
	Properties struct {
		ID         string      `json:"id"`
		Name       string      `json:"name"`
		Device     string      `json:"device"`
		Started    time.Time   `json:"started"`
		Stopped    *time.Time  `json:"stopped"`
		Summary    geo.Summary `json:"summary"`
		Time       *time.Time  `json:"time"`       // of a Point's position
		CoordTimes []time.Time `json:"coordTimes"` // of a LineString's
		PointCount int         `json:"point_count"`
	} `json:"properties"`
}

// parseGeoJSON reads the GeoJSON format with encoding/json and returns the
// feature and its positions (one for a Point geometry, none for null).
func parseGeoJSON(t testing.TB, data []byte) (feature, [][]float64) {
	t.Helper()
	var v feature
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	if dec.More() {
		t.Fatalf("data after the object: %s", data)
	}
	if v.Geometry == nil {
		return v, nil
	}
	var coords [][]float64
	switch v.Geometry.Type {
	case "LineString":
		if err := json.Unmarshal(v.Geometry.Coordinates, &coords); err != nil {
			t.Fatal(err)
		}
		if len(coords) < 2 {
			t.Fatalf("a LineString of %d positions", len(coords))
		}
	case "Point":
		var c []float64
		if err := json.Unmarshal(v.Geometry.Coordinates, &c); err != nil {
			t.Fatal(err)
		}
		coords = [][]float64{c}
	default:
		t.Fatalf("geometry %q", v.Geometry.Type)
	}
	return v, coords
}

// geoJSONPosition is the GeoJSON position of p.
func geoJSONPosition(p *position.Position) []float64 {
	if p.Has(position.FieldAlt) {
		return []float64{p.Lon, p.Lat, p.Alt}
	}
	return []float64{p.Lon, p.Lat}
}

// gpxDoc is a GPX document, parsed.
type gpxDoc struct {
	XMLName  xml.Name `xml:"http://www.topografix.com/GPX/1/1 gpx"`
	Version  string   `xml:"version,attr"`
	Creator  string   `xml:"creator,attr"`
	Metadata struct {
		Name *string `xml:"name"`
		Time *string `xml:"time"`
	} `xml:"metadata"`
	Tracks []struct {
		Name     *string `xml:"name"`
		Src      *string `xml:"src"`
		Segments []struct {
			Points []gpxPoint `xml:"trkpt"`
		} `xml:"trkseg"`
	} `xml:"trk"`
}

// gpxPoint is a trkpt, parsed.
type gpxPoint struct {
	Lat    string  `xml:"lat,attr"`
	Lon    string  `xml:"lon,attr"`
	Ele    *string `xml:"ele"`
	Time   *string `xml:"time"`
	Geoid  *string `xml:"geoidheight"`
	Fix    *string `xml:"fix"`
	Sat    *string `xml:"sat"`
	HDOP   *string `xml:"hdop"`
	VDOP   *string `xml:"vdop"`
	PDOP   *string `xml:"pdop"`
	Speed  *string `xml:"extensions>TrackPointExtension>speed"`
	Course *string `xml:"extensions>TrackPointExtension>course"`
}

// parseGPX reads a GPX document with encoding/xml and returns it and the
// points of its one track segment as positions.
func parseGPX(t testing.TB, data []byte) (gpxDoc, []position.Position) {
	t.Helper()
	var doc gpxDoc
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	if len(doc.Tracks) != 1 || len(doc.Tracks[0].Segments) > 1 {
		t.Fatalf("%d tracks, want one of one segment at most", len(doc.Tracks))
	}
	var trkpts []gpxPoint
	if len(doc.Tracks[0].Segments) == 1 {
		trkpts = doc.Tracks[0].Segments[0].Points
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var ps []position.Position
	for _, x := range trkpts {
		p := position.Position{Lat: num(x.Lat), Lon: num(x.Lon), Set: position.FieldLat | position.FieldLon}
		for _, f := range []struct {
			s   *string
			bit Fields
			v   *float64
		}{
			{x.Ele, position.FieldAlt, &p.Alt}, {x.Geoid, position.FieldGeoid, &p.Geoid}, {x.HDOP, position.FieldHDOP, &p.HDOP},
			{x.VDOP, position.FieldVDOP, &p.VDOP}, {x.PDOP, position.FieldPDOP, &p.PDOP},
			{x.Speed, position.FieldSpeed, &p.Speed}, {x.Course, position.FieldCourse, &p.Course},
		} {
			if f.s != nil {
				*f.v, p.Set = num(*f.s), p.Set|f.bit
			}
		}
		if x.Time != nil {
			tm, err := time.Parse(time.RFC3339Nano, *x.Time)
			if err != nil {
				t.Fatal(err)
			}
			p.Time, p.Set = tm, p.Set|position.FieldTime
		}
		if x.Fix != nil {
			p.Fix, p.Set = position.Fix(*x.Fix), p.Set|position.FieldFix
		}
		if x.Sat != nil {
			n, err := strconv.Atoi(*x.Sat)
			if err != nil {
				t.Fatal(err)
			}
			p.Sats, p.Set = n, p.Set|position.FieldSats
		}
		ps = append(ps, p)
	}
	return doc, ps
}

// gpxView is what GPX keeps of p: no accuracy or battery, the fix as GPX
// knows it.
func gpxView(p position.Position) position.Position {
	p.Set &^= position.FieldAcc | position.FieldBatt
	p.Acc, p.Batt = 0, 0
	switch p.Fix {
	case position.FixRTK, position.FixFloat:
		p.Fix = position.FixDGPS
	case position.FixDR:
		p.Fix, p.Set = "", p.Set&^position.FieldFix
	}
	return p
}

// csvHeaderRow is the CSV format's header, as fields.
var csvHeaderRow = []string{"time", "lat", "lon", "alt", "speed", "course", "hdop", "sats", "fix", "acc", "batt"}

// csvRecord is p's CSV row as fields, formatted independently of the encoder.
func csvRecord(p *position.Position) []string {
	f := func(bit Fields, v float64) string {
		if !p.Has(bit) {
			return ""
		}
		return string(position.AppendFloat(nil, v))
	}
	r := []string{"", f(position.FieldLat, p.Lat), f(position.FieldLon, p.Lon), f(position.FieldAlt, p.Alt),
		f(position.FieldSpeed, p.Speed), f(position.FieldCourse, p.Course), f(position.FieldHDOP, p.HDOP), "", "",
		f(position.FieldAcc, p.Acc), f(position.FieldBatt, p.Batt)}
	if p.Has(position.FieldTime) {
		r[0] = p.Time.UTC().Format(time.RFC3339Nano)
	}
	if p.Has(position.FieldSats) {
		r[7] = strconv.Itoa(p.Sats)
	}
	if p.Has(position.FieldFix) {
		r[8] = string(p.Fix)
	}
	return r
}

// parseCSV reads the CSV format with encoding/csv, checking its header.
func parseCSV(t testing.TB, data []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	if len(rows) == 0 || !reflect.DeepEqual(rows[0], csvHeaderRow) {
		t.Fatalf("header %q", rows)
	}
	return rows[1:]
}

// optional reports whether an optional element or member is there with the
// value want, or missing when want is empty.
func optional(got *string, want string) bool {
	if got == nil {
		return want == ""
	}
	return want != "" && *got == want
}

// checkRoundTrip exports ps in every format and reads each export back with
// the standard library's readers, comparing everything the format carries.
func checkRoundTrip(t *testing.T, track Track, ps []position.Position) {
	t.Run("json", func(t *testing.T) {
		v, got := parseJSON(t, encode(t, JSON, track, ps))
		if v.Track.ID != track.ID || v.Track.Name != track.Name || v.Track.Device != track.Device ||
			!v.Track.Started.Equal(track.Started) || (v.Track.Stopped == nil) != (track.Stopped == nil) ||
			v.Track.Stopped != nil && !v.Track.Stopped.Equal(*track.Stopped) {
			t.Errorf("track %+v, want %+v", v.Track, track)
		}
		if !reflect.DeepEqual(v.Track.Summary, track.Summary) {
			t.Errorf("summary %+v, want %+v", v.Track.Summary, track.Summary)
		}
		if len(got) != len(ps) {
			t.Fatalf("%d points, want %d", len(got), len(ps))
		}
		for i := range ps {
			if !reflect.DeepEqual(got[i], ps[i]) {
				t.Errorf("point %d: %+v, want %+v", i, got[i], ps[i])
			}
		}
	})
	t.Run("geojson", func(t *testing.T) {
		v, got := parseGeoJSON(t, encode(t, GeoJSON, track, ps))
		if v.Type != "Feature" || !optional(v.ID, track.ID) {
			t.Errorf("type %q, id %v", v.Type, v.ID)
		}
		pr := v.Properties
		if pr.ID != track.ID || pr.Name != track.Name || pr.Device != track.Device || !pr.Started.Equal(track.Started) ||
			pr.Stopped == nil || !pr.Stopped.Equal(*track.Stopped) || pr.PointCount != len(ps) {
			t.Errorf("properties %+v, want %+v and %d points", pr, track, len(ps))
		}
		if !reflect.DeepEqual(pr.Summary, track.Summary) {
			t.Errorf("summary %+v, want %+v", pr.Summary, track.Summary)
		}
		if b := track.Summary.Bounds; b != nil && !reflect.DeepEqual(v.BBox, []float64{b.MinLon, b.MinLat, b.MaxLon, b.MaxLat}) {
			t.Errorf("bbox %v, want %+v", v.BBox, *b)
		}
		if len(got) != len(ps) {
			t.Fatalf("%d positions, want %d", len(got), len(ps))
		}
		times := pr.CoordTimes
		if len(ps) == 1 && pr.Time != nil {
			times = []time.Time{*pr.Time}
		}
		if len(times) != len(ps) {
			t.Fatalf("%d times, want %d", len(times), len(ps))
		}
		for i := range ps {
			if want := geoJSONPosition(&ps[i]); !reflect.DeepEqual(got[i], want) {
				t.Errorf("position %d: %v, want %v", i, got[i], want)
			}
			if !times[i].Equal(ps[i].Time) {
				t.Errorf("position %d: time %v, want %v", i, times[i], ps[i].Time)
			}
		}
	})
	t.Run("gpx", func(t *testing.T) {
		data := encode(t, GPX, track, ps)
		doc, got := parseGPX(t, data)
		if doc.Version != "1.1" || doc.Creator != "trackgate" {
			t.Errorf("version %q, creator %q", doc.Version, doc.Creator)
		}
		trk := doc.Tracks[0]
		if len(trk.Segments) != 1 {
			t.Errorf("%d track segments, want 1", len(trk.Segments))
		}
		if !optional(doc.Metadata.Name, track.Name) || !optional(trk.Name, track.Name) || !optional(trk.Src, track.Device) {
			t.Errorf("names %v, %v, src %v, want %q, %q", doc.Metadata.Name, trk.Name, trk.Src, track.Name, track.Device)
		}
		if doc.Metadata.Time == nil || *doc.Metadata.Time != track.Started.UTC().Format(time.RFC3339Nano) {
			t.Errorf("metadata time %v, want %v", doc.Metadata.Time, track.Started)
		}
		if len(got) != len(ps) {
			t.Fatalf("%d points, want %d", len(got), len(ps))
		}
		for i := range ps {
			if want := gpxView(ps[i]); !reflect.DeepEqual(got[i], want) {
				t.Errorf("point %d: %+v, want %+v", i, got[i], want)
			}
		}
		checkGPXOrder(t, data)
	})
	t.Run("csv", func(t *testing.T) {
		data := encode(t, CSV, track, ps)
		rows := parseCSV(t, data)
		if len(rows) != len(ps) {
			t.Fatalf("%d rows, want %d", len(rows), len(ps))
		}
		var want bytes.Buffer
		w := csv.NewWriter(&want)
		w.UseCRLF = true
		if err := w.Write(csvHeaderRow); err != nil {
			t.Fatal(err)
		}
		for i := range ps {
			rec := csvRecord(&ps[i])
			if !reflect.DeepEqual(rows[i], rec) {
				t.Errorf("row %d: %q, want %q", i, rows[i], rec)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		if w.Flush(); !bytes.Equal(data, want.Bytes()) {
			t.Errorf("not what encoding/csv writes:\n%s\nwant\n%s", data, want.Bytes())
		}
	})
}

// gpxOrder is the order of a GPX 1.1 wptType's children, and of the
// TrackPointExtension v2's.
var gpxOrder = map[string]int{
	"ele": 1, "time": 2, "magvar": 3, "geoidheight": 4, "name": 5, "cmt": 6, "desc": 7, "src": 8, "link": 9,
	"sym": 10, "type": 11, "fix": 12, "sat": 13, "hdop": 14, "vdop": 15, "pdop": 16, "ageofdgpsdata": 17,
	"dgpsid": 18, "extensions": 19,
	"atemp": 1, "wtemp": 2, "depth": 3, "hr": 4, "cad": 5, "speed": 6, "course": 7, "bearing": 8,
}

// checkGPXOrder checks that every trkpt's children, and its extension's,
// come in schema order.
func checkGPXOrder(t *testing.T, data []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []int // per open element, the order of its last child
	var path []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if n := len(path); n > 0 && (path[n-1] == "trkpt" || path[n-1] == "TrackPointExtension") {
				o, ok := gpxOrder[e.Name.Local]
				if !ok || o <= stack[n-1] {
					t.Fatalf("<%s> out of schema order in <%s>", e.Name.Local, path[n-1])
				}
				stack[n-1] = o
			}
			path, stack = append(path, e.Name.Local), append(stack, 0)
		case xml.EndElement:
			path, stack = path[:len(path)-1], stack[:len(stack)-1]
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		points []position.Position
	}{
		{"no points", nil},
		{"one point", samplePoints()[:1]},
		{"two points", samplePoints()[:2]},
		{"sample points", samplePoints()},
		{"random points", randomPoints(500, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRoundTrip(t, testTrack(tc.points), tc.points)
		})
	}
}

func TestGeoJSONGeometry(t *testing.T) {
	ps := samplePoints()
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, `"geometry":null,`},
		{1, `"geometry":{"type":"Point","coordinates":[4.89,52.37,12.3]},`},
		{2, `"geometry":{"type":"LineString","coordinates":[[4.89,52.37,12.3],[-1.2345678901234567,1e-07]]},`},
		{3, `"geometry":{"type":"LineString","coordinates":[[4.89,52.37,12.3],[-1.2345678901234567,1e-07],[179.99999999999997,89.99999999999999,-12.5]]},`},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			out := string(encode(t, GeoJSON, Track{ID: "t1"}, ps[:tc.n]))
			if !strings.Contains(out, tc.want) || !strings.HasSuffix(out, fmt.Sprintf(`,"point_count":%d}}`+"\n", tc.n)) {
				t.Fatalf("got %s, want it to hold %s", out, tc.want)
			}
			if strings.Contains(out, `"bbox"`) {
				t.Fatalf("a bbox without Summary.Bounds: %s", out)
			}
		})
	}
}

func TestEmptyTrack(t *testing.T) {
	want := map[Format]string{
		JSON: `{"track":{"id":"","name":"","device":"","started":"0001-01-01T00:00:00Z","stopped":null,"summary":` +
			`{"points":0,"distance_m":0,"duration_s":0,"moving_s":0,"max_speed_mps":0,"avg_speed_mps":0,"elevation_gain_m":0,"elevation_loss_m":0}},` +
			`"points":[]}` + "\n",
		GeoJSON: `{"type":"Feature","geometry":null,"properties":{"id":"","name":"","device":"","started":"0001-01-01T00:00:00Z","stopped":null,"summary":` +
			`{"points":0,"distance_m":0,"duration_s":0,"moving_s":0,"max_speed_mps":0,"avg_speed_mps":0,"elevation_gain_m":0,"elevation_loss_m":0},` +
			`"point_count":0}}` + "\n",
		GPX: gpxHeader + "<metadata></metadata>\n<trk><trkseg>\n</trkseg></trk></gpx>\n",
		CSV: "time,lat,lon,alt,speed,course,hdop,sats,fix,acc,batt\r\n",
	}
	for _, f := range []Format{JSON, GeoJSON, GPX, CSV} {
		if got := string(encode(t, f, Track{}, nil)); got != want[f] {
			t.Errorf("%s:\n got %s\nwant %s", f, got, want[f])
		}
	}
	doc, ps := parseGPX(t, encode(t, GPX, Track{}, nil))
	if doc.Metadata.Name != nil || doc.Tracks[0].Name != nil || len(ps) != 0 {
		t.Errorf("empty GPX: %+v", doc)
	}
}

func TestCSVUnknownFix(t *testing.T) {
	p := position.Position{Time: t0, Lat: 1, Lon: 2, Fix: `4d, "odd"`, Set: position.Required | position.FieldFix}
	data := encode(t, CSV, Track{}, []position.Position{p})
	if rows := parseCSV(t, data); len(rows) != 1 || rows[0][8] != string(p.Fix) {
		t.Fatalf("rows %q from %s", rows, data)
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		in          string
		want        Format
		contentType string
		ext         string
	}{
		{"", JSON, "application/json", "json"},
		{"json", JSON, "application/json", "json"},
		{"JSON", JSON, "application/json", "json"},
		{"geojson", GeoJSON, "application/geo+json", "geojson"},
		{"GeoJSON", GeoJSON, "application/geo+json", "geojson"},
		{"gpx", GPX, "application/gpx+xml", "gpx"},
		{"csv", CSV, "text/csv; charset=utf-8", "csv"},
		{"kml", "", "", ""},
		{" json", "", "", ""},
		{"geo+json", "", "", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			f, err := ParseFormat(tc.in)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), strconv.Quote(tc.in)) || !strings.Contains(err.Error(), "json, geojson, gpx or csv") {
					t.Fatalf("ParseFormat = %q, %v; want an error naming it and the formats", f, err)
				}
				if _, err := New(Format(tc.in), io.Discard, Track{}); err == nil {
					t.Fatalf("New took format %q", tc.in)
				}
				if ct, ext := Format(tc.in).ContentType(), Format(tc.in).Extension(); ct != "" || ext != "" {
					t.Fatalf("unknown format's content type %q, extension %q", ct, ext)
				}
				return
			}
			if err != nil || f != tc.want {
				t.Fatalf("ParseFormat = %q, %v, want %q", f, err, tc.want)
			}
			if ct := f.ContentType(); ct != tc.contentType {
				t.Errorf("ContentType = %q, want %q", ct, tc.contentType)
			}
			if ext := f.Extension(); ext != tc.ext {
				t.Errorf("Extension = %q, want %q", ext, tc.ext)
			}
		})
	}
}

// failingWriter fails every write after the first ok ones.
type failingWriter struct{ ok int }

var errDisk = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.ok == 0 {
		return 0, errDisk
	}
	w.ok--
	return len(p), nil
}

func TestErrors(t *testing.T) {
	ps := samplePoints()
	for _, f := range []Format{JSON, GeoJSON, GPX, CSV} {
		t.Run(string(f), func(t *testing.T) {
			if _, err := New(f, &failingWriter{}, Track{}); !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "export "+string(f)+": write header") {
				t.Fatalf("New on a failing writer: %v", err)
			}

			e, err := New(f, &failingWriter{ok: 2}, Track{})
			if err != nil {
				t.Fatal(err)
			}
			var first error
			for i := range ps {
				if first = e.Point(&ps[i]); first != nil {
					break
				}
			}
			if !errors.Is(first, errDisk) || !strings.Contains(first.Error(), "export "+string(f)+": write point after ") {
				t.Fatalf("Point on a failing writer: %v", first)
			}
			if err := e.Point(&ps[0]); err != first {
				t.Fatalf("Point after the error: %v, want %v", err, first)
			}
			if err := e.Close(); err != first {
				t.Fatalf("Close after the error: %v, want %v", err, first)
			}

			e, err = New(f, io.Discard, Track{})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if err := e.Point(&ps[0]); err == nil || err.Error() != "export "+string(f)+": point after Close" {
				t.Fatalf("Point after Close: %v", err)
			}
			if err := e.Close(); err == nil || err.Error() != "export "+string(f)+": Close after Close" {
				t.Fatalf("Close after Close: %v", err)
			}

			if f == JSON || f == GeoJSON {
				var unsupported *json.UnsupportedValueError
				if _, err := New(f, io.Discard, Track{Summary: geo.Summary{Distance: math.NaN()}}); !errors.As(err, &unsupported) {
					t.Fatalf("New with a NaN distance: %v", err)
				}
			}
		})
	}
}

// TestPointAllocs checks that a point costs no allocation once the encoder's
// buffer has grown.
func TestPointAllocs(t *testing.T) {
	ps := samplePoints()
	for _, f := range []Format{JSON, GeoJSON, GPX, CSV} {
		e, err := New(f, io.Discard, testTrack(ps))
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		if allocs := testing.AllocsPerRun(1000, func() {
			if err := e.Point(&ps[i%len(ps)]); err != nil {
				t.Fatal(err)
			}
			i++
		}); allocs != 0 {
			t.Errorf("%s: %v allocations per point", f, allocs)
		}
	}
}
