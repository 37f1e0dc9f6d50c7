package export

import (
	"strconv"
	"time"

	"trackgate/internal/position"
)

// geoJSONEncoder writes one RFC 7946 Feature: the track's geometry, then its
// properties, which end with the fix time of each position (coordTimes, the
// common convention for a LineString's times; time for a single Point) and
// the number of points. A LineString needs two positions, so the first
// point's coordinates wait for the second: with one point only, the
// geometry is a Point, with none, null. The times are held until the
// properties are written (about 30 bytes a point).
type geoJSONEncoder struct {
	sink
	first []byte // the first point's coordinates, until the second comes
	props []byte // the properties object without its closing brace
	times []byte // the points' times, quoted, each followed by a comma
}

func newGeoJSON(s sink, t *Track) (*geoJSONEncoder, error) {
	props, err := marshalTrack(GeoJSON, t)
	if err != nil {
		return nil, err
	}
	e := &geoJSONEncoder{sink: s, first: make([]byte, 0, 80), props: props[:len(props)-1]}
	e.buf = append(e.buf, `{"type":"Feature"`...)
	if t.ID != "" {
		id, _ := marshal(t.ID) // a string always encodes
		e.buf = append(e.buf, `,"id":`...)
		e.buf = append(e.buf, id...)
	}
	if b := t.Summary.Bounds; b != nil {
		bbox, _ := b.MarshalJSON() // never fails, and marshalTrack has checked its output
		e.buf = append(e.buf, `,"bbox":`...)
		e.buf = append(e.buf, bbox...)
	}
	e.buf = append(e.buf, `,"geometry":`...)
	return e, e.write("header")
}

// appendPosition appends p's GeoJSON position, [lon,lat] or [lon,lat,alt],
// each number in the shortest form that reads back exactly.
func appendPosition(dst []byte, p *position.Position) []byte {
	dst = append(dst, '[')
	dst = position.AppendFloat(dst, p.Lon)
	dst = append(dst, ',')
	dst = position.AppendFloat(dst, p.Lat)
	if p.Has(position.FieldAlt) {
		dst = append(dst, ',')
		dst = position.AppendFloat(dst, p.Alt)
	}
	return append(dst, ']')
}

// Point writes p as the next position of the LineString; the first one
// waits for the second.
func (e *geoJSONEncoder) Point(p *position.Position) error {
	if err := e.begin("point"); err != nil {
		return err
	}
	e.times = append(e.times, '"')
	e.times = p.Time.UTC().AppendFormat(e.times, time.RFC3339Nano)
	e.times = append(e.times, '"', ',')
	switch e.points {
	case 0:
		e.first = appendPosition(e.first[:0], p)
		e.points++
		return nil
	case 1:
		e.buf = append(e.buf, `{"type":"LineString","coordinates":[`...)
		e.buf = append(e.buf, e.first...)
	}
	e.buf = append(e.buf, ',')
	e.buf = appendPosition(e.buf, p)
	if err := e.write("point"); err != nil {
		return err
	}
	e.points++
	return nil
}

// Close ends the geometry (or writes the one point's, or null) and writes
// the properties.
func (e *geoJSONEncoder) Close() error {
	if err := e.begin("Close"); err != nil {
		return err
	}
	e.closed = true
	switch e.points {
	case 0:
		e.buf = append(e.buf, "null"...)
	case 1:
		e.buf = append(e.buf, `{"type":"Point","coordinates":`...)
		e.buf = append(e.buf, e.first...)
		e.buf = append(e.buf, '}')
	default:
		e.buf = append(e.buf, "]}"...)
	}
	e.buf = append(e.buf, `,"properties":`...)
	e.buf = append(e.buf, e.props...)
	switch {
	case e.points == 1:
		e.buf = append(e.buf, `,"time":`...)
		e.buf = append(e.buf, e.times[:len(e.times)-1]...)
	case e.points > 1:
		e.buf = append(e.buf, `,"coordTimes":[`...)
		e.buf = append(e.buf, e.times[:len(e.times)-1]...)
		e.buf = append(e.buf, ']')
	}
	e.buf = append(e.buf, `,"point_count":`...)
	e.buf = strconv.AppendInt(e.buf, int64(e.points), 10)
	e.buf = append(e.buf, "}}\n"...)
	return e.write("trailer")
}
