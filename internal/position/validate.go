package position

import (
	"strconv"
	"time"
)

// Reason classifies why a position was rejected. Its values are stable: they
// label the rejection counters.
type Reason string

// The reasons a payload or a position is rejected.
const (
	ReasonSyntax   Reason = "syntax"    // the payload is not JSON
	ReasonTooLarge Reason = "too_large" // the payload exceeds MaxPayload
	ReasonType     Reason = "type"      // a field has the wrong JSON type or form
	ReasonMissing  Reason = "missing"   // a required field is absent
	ReasonRange    Reason = "range"     // a value is outside its range
	ReasonFuture   Reason = "future"    // the fix time is too far ahead of now
	ReasonPast     Reason = "past"      // the fix time is before MinTime
)

// Reasons lists every Reason, for metrics that want all labels up front.
var Reasons = []Reason{ReasonSyntax, ReasonTooLarge, ReasonType, ReasonMissing, ReasonRange, ReasonFuture, ReasonPast}

// Error says why a payload or one position in it was rejected.
type Error struct {
	Index  int    // index of the element in an array payload, -1 for the whole payload or a single object
	Field  string // wire name of the field at fault, empty for the whole payload
	Reason Reason
	Detail string // what was wrong, for people
}

// Error formats e as "[index].field: reason: detail".
func (e *Error) Error() string {
	b := make([]byte, 0, 64)
	if e.Index >= 0 {
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(e.Index), 10)
		b = append(b, ']')
		if e.Field != "" {
			b = append(b, '.')
		}
	}
	b = append(b, e.Field...)
	if len(b) > 0 {
		b = append(b, ": "...)
	}
	b = append(b, e.Reason...)
	if e.Detail != "" {
		b = append(b, ": "...)
		b = append(b, e.Detail...)
	}
	return string(b)
}

// Limits of a valid position.
var (
	// MinTime is the earliest fix time accepted.
	MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxFuture is how far ahead of the receiver's clock a fix time may be.
const MaxFuture = 5 * time.Minute

// Validate checks that p carries the required fields and that every value is
// in its range, with the fix time no later than now+MaxFuture and no earlier
// than MinTime. It returns an *Error or nil.
func (p *Position) Validate(now time.Time) error {
	if err := p.validate(now); err != nil {
		return err
	}
	return nil
}

func (p *Position) validate(now time.Time) *Error {
	for _, f := range [...]struct {
		bit  Fields
		name string
	}{{FieldTime, "time"}, {FieldLat, "lat"}, {FieldLon, "lon"}} {
		if !p.Has(f.bit) {
			return &Error{Index: -1, Field: f.name, Reason: ReasonMissing, Detail: "required"}
		}
	}
	if p.Time.Before(MinTime) {
		return &Error{Index: -1, Field: "time", Reason: ReasonPast,
			Detail: p.Time.Format(time.RFC3339Nano) + " is before " + MinTime.Format(time.RFC3339)}
	}
	if p.Time.After(now.Add(MaxFuture)) {
		return &Error{Index: -1, Field: "time", Reason: ReasonFuture,
			Detail: p.Time.Format(time.RFC3339Nano) + " is more than " + MaxFuture.String() + " ahead of " + now.UTC().Format(time.RFC3339)}
	}
	for _, b := range floatFields {
		if p.Has(b.bit) && !b.inRange(*b.ptr(p)) {
			return &Error{Index: -1, Field: b.name, Reason: ReasonRange, Detail: rangeDetail(*b.ptr(p), b)}
		}
	}
	if p.Has(FieldSats) && !satsInRange(p.Sats) {
		return &Error{Index: -1, Field: "sats", Reason: ReasonRange, Detail: strconv.Itoa(p.Sats) + " is not within [0, 255]"}
	}
	if p.Has(FieldFix) && !p.Fix.Valid() {
		return &Error{Index: -1, Field: "fix", Reason: ReasonRange,
			Detail: strconv.Quote(string(p.Fix)) + " is not one of none, 2d, 3d, dgps, rtk, float, dr"}
	}
	return nil
}

// inRange reports whether v is a valid value of the field (NaN is not).
func (b *floatField) inRange(v float64) bool {
	return v >= b.min && v <= b.max && !(b.bit == FieldCourse && v == 360)
}

func satsInRange(n int) bool { return n >= 0 && n <= 255 }

// DropOutOfRange removes from p the optional fields whose values are out of
// range (a receiver's garbled HDOP, say), so that one bad reading does not
// cost the whole fix, and returns the fields it removed. The required
// fields are left for Validate to judge.
func (p *Position) DropOutOfRange() Fields {
	var dropped Fields
	for _, b := range floatFields {
		if p.Has(b.bit) && b.bit&Required == 0 && !b.inRange(*b.ptr(p)) {
			dropped |= b.bit
		}
	}
	if p.Has(FieldSats) && !satsInRange(p.Sats) {
		dropped |= FieldSats
	}
	p.Set &^= dropped
	return dropped
}

func rangeDetail(v float64, b floatField) string {
	hi := "]"
	if b.bit == FieldCourse {
		hi = ")"
	}
	return string(appendFloat(nil, v)) + " is not within [" + string(appendFloat(nil, b.min)) + ", " + string(appendFloat(nil, b.max)) + hi
}
