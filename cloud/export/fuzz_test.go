package export

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"trackgate/cloud/geo"
	"trackgate/internal/position"
)

// FuzzParseFormat checks that ParseFormat takes exactly the format names in
// any case, or the empty string, and that what it takes has a content type
// and an extension.
func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"", "json", "GeoJSON", "gpx", "CSV", "kml", "jsonx", "geo+json", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFormat(s)
		if err != nil {
			if got != "" || !strings.Contains(err.Error(), "want json, geojson, gpx or csv") {
				t.Fatalf("ParseFormat(%q) = %q, %v", s, got, err)
			}
			for _, f := range []Format{JSON, GeoJSON, GPX, CSV} {
				if strings.EqualFold(s, string(f)) {
					t.Fatalf("ParseFormat(%q) refused %s", s, f)
				}
			}
			return
		}
		if s != "" && !strings.EqualFold(s, string(got)) || s == "" && got != JSON {
			t.Fatalf("ParseFormat(%q) = %q", s, got)
		}
		if again, err := ParseFormat(string(got)); err != nil || again != got || got.ContentType() == "" || got.Extension() == "" {
			t.Fatalf("format %q: %q, %v, %q, %q", got, again, err, got.ContentType(), got.Extension())
		}
	})
}

// xmlSafe reports whether XML can carry s as it is: valid UTF-8 of XML
// characters only (EscapeText turns the others into U+FFFD).
func xmlSafe(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return false
		}
	}
	return true
}

// FuzzExport exports two valid points made of the fuzzer's values, with any
// names, in every format, and reads them back with the standard library's
// readers: the values must come back exactly, the names too when the format
// can carry them.
func FuzzExport(f *testing.F) {
	f.Add("Ams <&\"'> → 東京", "van]]>", 52.37, 4.89, 12.3, 1.2, uint16(0xffff), uint8(9), uint8(2), uint32(100))
	f.Add("", "", 1e-7, -1e-300, math.Copysign(0, -1), 0.0, uint16(0), uint8(0), uint8(7), uint32(0))
	f.Add("\x00\xff\r\n", "\t", -90.0, 180.0, 99999.5, 359.999, uint16(1), uint8(255), uint8(0), uint32(999999999))
	fixes := []position.Fix{position.FixNone, position.Fix2D, position.Fix3D, position.FixDGPS, position.FixRTK, position.FixFloat, position.FixDR}
	f.Fuzz(func(t *testing.T, name, device string, lat, lon, alt, v float64, fields uint16, sats, fix uint8, ns uint32) {
		p := position.Position{Time: t0.Add(time.Duration(ns)), Lat: lat, Lon: lon, Set: position.Required}
		for i, f := range []struct {
			bit Fields
			v   *float64
			is  float64
		}{
			{position.FieldAlt, &p.Alt, alt}, {position.FieldSpeed, &p.Speed, v}, {position.FieldCourse, &p.Course, v},
			{position.FieldHDOP, &p.HDOP, v}, {position.FieldAcc, &p.Acc, v}, {position.FieldBatt, &p.Batt, v},
			{position.FieldPDOP, &p.PDOP, v}, {position.FieldVDOP, &p.VDOP, v}, {position.FieldGeoid, &p.Geoid, v},
		} {
			if fields&(1<<i) != 0 {
				*f.v, p.Set = f.is, p.Set|f.bit
			}
		}
		if fields&(1<<9) != 0 {
			p.Sats, p.Set = int(sats), p.Set|position.FieldSats
		}
		if int(fix) < len(fixes) {
			p.Fix, p.Set = fixes[fix], p.Set|position.FieldFix
		}
		q := p // another point, without an altitude
		q.Time, q.Lat, q.Lon, q.Alt, q.Set = p.Time.Add(1500*time.Millisecond), lon/2, lat*2, 0, p.Set&^position.FieldAlt
		now := t0.Add(time.Hour)
		if p.Validate(now) != nil || q.Validate(now) != nil {
			return
		}
		ps := []position.Position{p, q}
		var a geo.Accumulator
		for i := range ps {
			a.Add(&ps[i])
		}
		track := Track{ID: name, Name: name, Device: device, Started: t0, Stopped: &now, Summary: a.Summary()}
		if utf8.ValidString(name) && utf8.ValidString(device) && xmlSafe(name) && xmlSafe(device) {
			checkRoundTrip(t, track, ps)
			return
		}
		// Names that JSON or XML cannot carry as they are: the exports must
		// still be well-formed, with the points intact.
		if _, got := parseJSON(t, encode(t, JSON, track, ps)); len(got) != 2 || got[0] != p || got[1] != q {
			t.Fatalf("JSON points %+v", got)
		}
		if _, got := parseGeoJSON(t, encode(t, GeoJSON, track, ps)); len(got) != 2 {
			t.Fatalf("GeoJSON positions %v", got)
		}
		if _, got := parseGPX(t, encode(t, GPX, track, ps)); len(got) != 2 || got[0] != gpxView(p) || got[1] != gpxView(q) {
			t.Fatalf("GPX points %+v", got)
		}
	})
}
