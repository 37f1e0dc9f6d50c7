package export

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"time"

	"trackgate/internal/position"
)

// gpxHeader opens the document: GPX 1.1, with Garmin's TrackPointExtension
// v2 for speed and course.
const gpxHeader = `<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="trackgate" xmlns="http://www.topografix.com/GPX/1/1"` +
	` xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2"` +
	` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"` +
	` xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd` +
	` http://www.garmin.com/xmlschemas/TrackPointExtension/v2 https://www8.garmin.com/xmlschemas/TrackPointExtensionv2.xsd">
`

// gpxEncoder writes a GPX 1.1 document of one track of one segment. The
// track's name is the metadata's and the track's name, its start the
// metadata's time, its device the track's src.
type gpxEncoder struct{ sink }

func newGPX(s sink, t *Track) (*gpxEncoder, error) {
	h := bytes.NewBuffer(s.buf)
	h.WriteString(gpxHeader)
	h.WriteString("<metadata>")
	writeText(h, "name", t.Name)
	if !t.Started.IsZero() {
		h.WriteString("<time>")
		h.Write(appendGPXTime(h.AvailableBuffer(), t.Started))
		h.WriteString("</time>")
	}
	h.WriteString("</metadata>\n<trk>")
	writeText(h, "name", t.Name)
	writeText(h, "src", t.Device)
	h.WriteString("<trkseg>\n")
	e := &gpxEncoder{s}
	e.buf = h.Bytes()
	return e, e.write("header")
}

// writeText writes <name>text</name>, text escaped, unless text is empty.
// Characters XML cannot carry become U+FFFD.
func writeText(h *bytes.Buffer, name, text string) {
	if text == "" {
		return
	}
	h.WriteString("<" + name + ">")
	xml.EscapeText(h, []byte(text)) // writing to a bytes.Buffer does not fail
	h.WriteString("</" + name + ">")
}

// appendGPXTime appends t in UTC as xsd:dateTime, with a fraction of a
// second only when t has one.
func appendGPXTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, time.RFC3339Nano)
}

// appendDecimal appends v as an xsd:decimal: the shortest digits that read
// back as v, never in exponent notation (which xsd:decimal does not allow).
func appendDecimal(dst []byte, v float64) []byte {
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// gpxFix returns the GPX fix type of f: GPX knows none, 2d, 3d, dgps (and
// pps); RTK solutions are differential; dead reckoning has no GPX kind.
func gpxFix(f position.Fix) (string, bool) {
	switch f {
	case position.FixNone, position.Fix2D, position.Fix3D, position.FixDGPS:
		return string(f), true
	case position.FixRTK, position.FixFloat:
		return string(position.FixDGPS), true
	}
	return "", false
}

// element appends <name>value</name> for a decimal value.
func element(dst []byte, name string, v float64) []byte {
	dst = append(dst, '<')
	dst = append(dst, name...)
	dst = append(dst, '>')
	dst = appendDecimal(dst, v)
	dst = append(dst, "</"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

// Point writes p as a trkpt, its children in the order of the GPX schema.
func (e *gpxEncoder) Point(p *position.Position) error {
	if err := e.begin("point"); err != nil {
		return err
	}
	b := append(e.buf, `<trkpt lat="`...)
	b = appendDecimal(b, p.Lat)
	b = append(b, `" lon="`...)
	b = appendDecimal(b, p.Lon)
	b = append(b, `">`...)
	if p.Has(position.FieldAlt) {
		b = element(b, "ele", p.Alt)
	}
	if p.Has(position.FieldTime) {
		b = append(b, "<time>"...)
		b = appendGPXTime(b, p.Time)
		b = append(b, "</time>"...)
	}
	if p.Has(position.FieldGeoid) {
		b = element(b, "geoidheight", p.Geoid)
	}
	if fix, ok := gpxFix(p.Fix); ok && p.Has(position.FieldFix) {
		b = append(b, "<fix>"...)
		b = append(b, fix...)
		b = append(b, "</fix>"...)
	}
	if p.Has(position.FieldSats) {
		b = append(b, "<sat>"...)
		b = strconv.AppendInt(b, int64(p.Sats), 10)
		b = append(b, "</sat>"...)
	}
	if p.Has(position.FieldHDOP) {
		b = element(b, "hdop", p.HDOP)
	}
	if p.Has(position.FieldVDOP) {
		b = element(b, "vdop", p.VDOP)
	}
	if p.Has(position.FieldPDOP) {
		b = element(b, "pdop", p.PDOP)
	}
	if p.Set&(position.FieldSpeed|position.FieldCourse) != 0 {
		b = append(b, "<extensions><gpxtpx:TrackPointExtension>"...)
		if p.Has(position.FieldSpeed) {
			b = element(b, "gpxtpx:speed", p.Speed)
		}
		if p.Has(position.FieldCourse) {
			b = element(b, "gpxtpx:course", p.Course)
		}
		b = append(b, "</gpxtpx:TrackPointExtension></extensions>"...)
	}
	e.buf = append(b, "</trkpt>\n"...)
	if err := e.write("point"); err != nil {
		return err
	}
	e.points++
	return nil
}

// Close ends the segment, the track and the document.
func (e *gpxEncoder) Close() error {
	if err := e.begin("Close"); err != nil {
		return err
	}
	e.closed = true
	e.buf = append(e.buf, "</trkseg></trk></gpx>\n"...)
	return e.write("trailer")
}
