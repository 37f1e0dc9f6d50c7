// Package position is trackgate's one position model: the Position type every
// source is converted into at its edge, its JSON codec (the wire contract of
// positions published on devices/{device}/positions), validation with errors
// that name the field and the reason, and its InfluxDB line-protocol form.
//
// The package imports only the standard library, so that every component can
// depend on it.
package position

import (
	"math"
	"strconv"
	"time"
)

// Fields is a set of Position fields, used to record which ones a position
// carries: a zero speed and an unknown speed are different things.
type Fields uint16

// The fields of a Position. Time, Lat and Lon are required; the rest are optional.
const (
	FieldTime Fields = 1 << iota
	FieldLat
	FieldLon
	FieldAlt
	FieldSpeed
	FieldCourse
	FieldHDOP
	FieldSats
	FieldFix
	FieldAcc
	FieldBatt
	FieldPDOP
	FieldVDOP
	FieldGeoid
)

// Required is the set of fields every position must carry.
const Required = FieldTime | FieldLat | FieldLon

// Fix is the kind of solution a receiver reports.
type Fix string

// The fix kinds a position may carry.
const (
	FixNone  Fix = "none"  // no solution
	Fix2D    Fix = "2d"    // horizontal only
	Fix3D    Fix = "3d"    // horizontal and altitude
	FixDGPS  Fix = "dgps"  // differential correction applied
	FixRTK   Fix = "rtk"   // real-time kinematic, integer ambiguities fixed
	FixFloat Fix = "float" // real-time kinematic, float solution
	FixDR    Fix = "dr"    // dead reckoning
)

// fixes lists the known fix kinds.
var fixes = [...]Fix{FixNone, Fix2D, Fix3D, FixDGPS, FixRTK, FixFloat, FixDR}

// Valid reports whether f is one of the known fix kinds.
func (f Fix) Valid() bool {
	for _, k := range fixes {
		if f == k {
			return true
		}
	}
	return false
}

// Position is one fix of one device, in SI units. Which of the fields are
// present is recorded in Set; a field not in Set is unknown, whatever its value.
type Position struct {
	Time   time.Time // the fix's own time (GPS time, not arrival time), UTC
	Lat    float64   // latitude, degrees, WGS 84, north positive
	Lon    float64   // longitude, degrees, WGS 84, east positive
	Alt    float64   // altitude above mean sea level, metres
	Speed  float64   // speed over ground, metres per second
	Course float64   // course over ground, degrees clockwise from true north, [0, 360)
	HDOP   float64   // horizontal dilution of precision
	Sats   int       // satellites used in the solution
	Fix    Fix       // kind of solution
	Acc    float64   // estimated horizontal accuracy, metres
	Batt   float64   // battery level, percent
	PDOP   float64   // position (3D) dilution of precision
	VDOP   float64   // vertical dilution of precision
	Geoid  float64   // geoid separation: height of the geoid above the WGS 84 ellipsoid, metres (ellipsoidal height = Alt + Geoid)
	Set    Fields    // the fields present
}

// Has reports whether all fields in f are present.
func (p *Position) Has(f Fields) bool { return p.Set&f == f }

// AppendJSON appends the JSON object of p, with only the fields present, to dst.
func (p *Position) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	first := true
	key := func(k string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	if p.Has(FieldTime) {
		key("time")
		dst = append(dst, '"')
		dst = p.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	for _, f := range floatFields {
		if p.Has(f.bit) {
			key(f.name)
			dst = appendFloat(dst, *f.ptr(p))
		}
	}
	if p.Has(FieldSats) {
		key("sats")
		dst = strconv.AppendInt(dst, int64(p.Sats), 10)
	}
	if p.Has(FieldFix) {
		key("fix")
		dst = strconv.AppendQuote(dst, string(p.Fix))
	}
	return append(dst, '}')
}

// MarshalJSON encodes p as the wire contract's position object.
func (p Position) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, 160)), nil
}

// UnmarshalJSON decodes one position object. It checks types, not ranges:
// call Validate for that.
func (p *Position) UnmarshalJSON(data []byte) error {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		return d.syntax("want an object")
	}
	perr, err := d.object(p, 0)
	if err != nil {
		return err
	}
	if d.skipSpace(); d.pos != len(d.data) {
		return d.syntax("data after the object")
	}
	if perr != nil {
		return perr
	}
	return nil
}

// floatField describes one float64 field of Position for the codecs and
// validation: its wire name and its valid closed range.
type floatField struct {
	name     string
	bit      Fields
	min, max float64
	ptr      func(*Position) *float64
}

// floatFields lists the float fields in wire order.
var floatFields = [...]floatField{
	{"lat", FieldLat, -90, 90, func(p *Position) *float64 { return &p.Lat }},
	{"lon", FieldLon, -180, 180, func(p *Position) *float64 { return &p.Lon }},
	{"alt", FieldAlt, -12000, 100000, func(p *Position) *float64 { return &p.Alt }},
	{"geoid", FieldGeoid, -200, 200, func(p *Position) *float64 { return &p.Geoid }},
	{"speed", FieldSpeed, 0, 2000, func(p *Position) *float64 { return &p.Speed }},
	{"course", FieldCourse, 0, 360, func(p *Position) *float64 { return &p.Course }}, // 360 itself excluded
	{"hdop", FieldHDOP, 0, 100, func(p *Position) *float64 { return &p.HDOP }},
	{"pdop", FieldPDOP, 0, 100, func(p *Position) *float64 { return &p.PDOP }},
	{"vdop", FieldVDOP, 0, 100, func(p *Position) *float64 { return &p.VDOP }},
	{"acc", FieldAcc, 0, 1e6, func(p *Position) *float64 { return &p.Acc }},
	{"batt", FieldBatt, 0, 100, func(p *Position) *float64 { return &p.Batt }},
}

// AppendFloat appends v to dst in the shortest form that reads back as the
// same float64, as the JSON codec and line protocol write it: plain notation,
// except exponent notation for magnitudes from 1e21 and non-zero ones below 1e-6.
func AppendFloat(dst []byte, v float64) []byte { return appendFloat(dst, v) }

// FloatField is one of the float64 fields of Position, for codecs that
// meet fields by name.
type FloatField uint8

// FloatFieldNamed returns the float field whose wire name is name.
func FloatFieldNamed(name []byte) (FloatField, bool) {
	for i := range floatFields {
		if floatFields[i].name == string(name) {
			return FloatField(i), true
		}
	}
	return 0, false
}

// FloatFieldFor returns the float field whose presence bit is bit.
func FloatFieldFor(bit Fields) (FloatField, bool) {
	for i := range floatFields {
		if floatFields[i].bit == bit {
			return FloatField(i), true
		}
	}
	return 0, false
}

// Name is the field's wire name.
func (f FloatField) Name() string { return floatFields[f].name }

// Set sets field f of p to v and marks it present.
func (f FloatField) Set(p *Position, v float64) {
	*floatFields[f].ptr(p) = v
	p.Set |= floatFields[f].bit
}

// appendFloat appends v in the shortest form that reads back as the same
// float64, in plain notation unless the exponent makes that unwieldy (the
// same rule encoding/json uses). Both JSON and line protocol accept it.
func appendFloat(dst []byte, v float64) []byte {
	abs := v
	if abs < 0 {
		abs = -abs
	}
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(dst, v, 'e', -1, 64)
	}
	if out, ok := appendDecimal(dst, v, abs); ok {
		return out
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// appendDecimal is appendFloat's fast path for the values positions mostly
// hold, decimals of a few digits (52.3702157): the fewest digits k after
// the point for which m = round(|v|·10^k) is below 2^53 and m/10^k gives
// back |v| exactly. m and 10^k are exact float64s, so that division is
// the correctly rounded value of the decimal m/10^k, as reading it back
// is: it is v's shortest form, the one strconv finds in general. ok is
// false for a value with no such k up to 9 (then strconv answers).
func appendDecimal(dst []byte, v, abs float64) (out []byte, ok bool) {
	if abs == 0 || abs != abs {
		return dst, false // 0 and -0, NaN
	}
	for k := 0; k <= 9; k++ {
		scaled := abs * pow10[k]
		if scaled >= 1<<53 {
			return dst, false
		}
		m := math.Round(scaled)
		if m/pow10[k] != abs {
			continue
		}
		if v < 0 {
			dst = append(dst, '-')
		}
		n := uint64(m)
		unit := uint64(pow10[k])
		dst = strconv.AppendUint(dst, n/unit, 10)
		if k == 0 {
			return dst, true
		}
		dst = append(dst, '.')
		frac := n % unit
		for unit /= 10; unit > frac && unit > 1; unit /= 10 {
			dst = append(dst, '0') // the fraction's leading zeros
		}
		return strconv.AppendUint(dst, frac, 10), true
	}
	return dst, false
}
