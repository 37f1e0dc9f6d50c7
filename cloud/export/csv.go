package export

import (
	"strconv"
	"time"

	"trackgate/internal/position"
)

// csvHeader is the CSV format's header row.
const csvHeader = "time,lat,lon,alt,speed,course,hdop,sats,fix,acc,batt\r\n"

// csvEncoder writes RFC 4180 CSV, rows ending in CRLF as encoding/csv
// writes them with UseCRLF: a header row, then one row per point with an
// empty cell for each field the point lacks. It formats the rows itself, to
// spend no allocation on a point; only an unknown fix kind can need quotes.
type csvEncoder struct{ sink }

func newCSV(s sink) (*csvEncoder, error) {
	e := &csvEncoder{s}
	e.buf = append(e.buf, csvHeader...)
	return e, e.write("header")
}

// Point writes p's row.
func (e *csvEncoder) Point(p *position.Position) error {
	if err := e.begin("point"); err != nil {
		return err
	}
	b := e.buf
	if p.Has(position.FieldTime) {
		b = p.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	}
	b = csvFloat(b, p, position.FieldLat, p.Lat)
	b = csvFloat(b, p, position.FieldLon, p.Lon)
	b = csvFloat(b, p, position.FieldAlt, p.Alt)
	b = csvFloat(b, p, position.FieldSpeed, p.Speed)
	b = csvFloat(b, p, position.FieldCourse, p.Course)
	b = csvFloat(b, p, position.FieldHDOP, p.HDOP)
	b = append(b, ',')
	if p.Has(position.FieldSats) {
		b = strconv.AppendInt(b, int64(p.Sats), 10)
	}
	b = append(b, ',')
	if p.Has(position.FieldFix) {
		if p.Fix.Valid() {
			b = append(b, p.Fix...)
		} else {
			b = appendQuoted(b, string(p.Fix))
		}
	}
	b = csvFloat(b, p, position.FieldAcc, p.Acc)
	b = csvFloat(b, p, position.FieldBatt, p.Batt)
	e.buf = append(b, '\r', '\n')
	if err := e.write("point"); err != nil {
		return err
	}
	e.points++
	return nil
}

// csvFloat appends a comma and, if p has field f, v.
func csvFloat(dst []byte, p *position.Position, f position.Fields, v float64) []byte {
	dst = append(dst, ',')
	if p.Has(f) {
		dst = position.AppendFloat(dst, v)
	}
	return dst
}

// appendQuoted appends s as a quoted CSV field, its quotes doubled.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// Close writes nothing more: CSV has no trailer.
func (e *csvEncoder) Close() error {
	if err := e.begin("Close"); err != nil {
		return err
	}
	e.closed = true
	return nil
}
