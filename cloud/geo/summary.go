package geo

import (
	"time"

	"trackgate/internal/position"
)

// MovingSpeed is the speed, in metres per second, from which a segment
// between two valid points counts as moving.
const MovingSpeed = 0.5

// ElevationHysteresis is the smallest change of altitude, in metres, that
// counts as gain or loss: smaller ups and downs are receiver noise.
const ElevationHysteresis = 2.0

// Summary is a track's statistics.
//
// A point is valid unless it carries a fix of kind position.FixNone. Every
// point counts in Points, Duration, First and Last; only valid points count
// in the distance, speeds, elevation and bounds.
type Summary struct {
	Points   int       `json:"points"`           // every point in the span, valid or not
	Distance float64   `json:"distance_m"`       // great-circle distance over consecutive valid points, metres
	Duration float64   `json:"duration_s"`       // last point's time − first point's time, seconds
	Moving   float64   `json:"moving_s"`         // time spent on segments between consecutive valid points at MovingSpeed or faster, seconds
	MaxSpeed float64   `json:"max_speed_mps"`    // fastest valid point: its reported speed, else the speed of the segment ending at it (over 1 s or more), m/s
	AvgSpeed float64   `json:"avg_speed_mps"`    // Distance / Moving, 0 when Moving is 0, m/s
	Gain     float64   `json:"elevation_gain_m"` // total climb, filtered by ElevationHysteresis, metres
	Loss     float64   `json:"elevation_loss_m"` // total descent, filtered by ElevationHysteresis, metres
	Bounds   *Bounds   `json:"bbox,omitempty"`   // of the valid points; nil when there is none
	First    time.Time `json:"first,omitzero"`   // first point's time
	Last     time.Time `json:"last,omitzero"`    // last point's time
}

// Accumulator computes a Summary incrementally from points in time order. Its
// exported fields are its whole state, so that it can be saved (encoding/json)
// between batches and resumed; the zero value is empty.
type Accumulator struct {
	Points int       `json:"points"`         // points added, valid or not
	First  time.Time `json:"first,omitzero"` // first point's time
	Last   time.Time `json:"last,omitzero"`  // last point's time

	Valid    int       `json:"valid"`              // valid points added
	Bounds   Bounds    `json:"bbox"`               // of the valid points, when Valid > 0
	PrevTime time.Time `json:"prev_time,omitzero"` // the last valid point's time,
	PrevLat  float64   `json:"prev_lat"`           // latitude
	PrevLon  float64   `json:"prev_lon"`           // and longitude
	Distance float64   `json:"distance_m"`         // as in Summary
	Moving   float64   `json:"moving_s"`           // as in Summary
	MaxSpeed float64   `json:"max_speed_mps"`      // as in Summary

	HasAlt  bool    `json:"has_alt"`          // a valid point with an altitude was added
	RefAlt  float64 `json:"ref_alt_m"`        // the altitude the next change is measured from
	LastAlt float64 `json:"last_alt_m"`       // the last valid point's altitude
	Gain    float64 `json:"elevation_gain_m"` // climb committed so far (the residual above RefAlt is not)
	Loss    float64 `json:"elevation_loss_m"` // descent committed so far
}

// valid reports whether p counts in the geometry: it does unless its receiver
// reported no fix.
func valid(p *position.Position) bool {
	return !p.Has(position.FieldFix) || p.Fix != position.FixNone
}

// Add adds p. Points must come in increasing time order: a point with the
// same time as the last one is a duplicate (ignored, returns true); a point
// older than the last one cannot be added incrementally: Add returns false
// and changes nothing (the caller recomputes from all points).
func (a *Accumulator) Add(p *position.Position) bool {
	t := p.Time.UTC()
	if a.Points > 0 {
		if t.Before(a.Last) {
			return false
		}
		if t.Equal(a.Last) {
			return true
		}
	} else {
		a.First = t
	}
	a.Points++
	a.Last = t
	if !valid(p) {
		return true
	}

	if a.Valid == 0 {
		a.Bounds = Bounds{MinLat: p.Lat, MinLon: p.Lon, MaxLat: p.Lat, MaxLon: p.Lon}
	} else {
		a.Bounds.extend(p.Lat, p.Lon)
		d := Haversine(a.PrevLat, a.PrevLon, p.Lat, p.Lon)
		dt := t.Sub(a.PrevTime).Seconds()
		a.Distance += d
		if d/dt >= MovingSpeed {
			a.Moving += dt
		}
		if !p.Has(position.FieldSpeed) && dt >= 1 {
			a.MaxSpeed = max(a.MaxSpeed, d/dt)
		}
	}
	if p.Has(position.FieldSpeed) {
		a.MaxSpeed = max(a.MaxSpeed, p.Speed)
	}
	a.Valid++
	a.PrevTime, a.PrevLat, a.PrevLon = t, p.Lat, p.Lon

	if p.Has(position.FieldAlt) {
		a.addAlt(p.Alt)
	}
	return true
}

// addAlt follows the altitude of a valid point with hysteresis: a change
// from the reference counts once it reaches ElevationHysteresis, and then
// becomes the new reference.
func (a *Accumulator) addAlt(alt float64) {
	a.LastAlt = alt
	if !a.HasAlt {
		a.HasAlt, a.RefAlt = true, alt
		return
	}
	switch d := alt - a.RefAlt; {
	case d >= ElevationHysteresis:
		a.Gain += d
		a.RefAlt = alt
	case d <= -ElevationHysteresis:
		a.Loss -= d
		a.RefAlt = alt
	}
}

// Summary returns the statistics of the points added so far. The elevation
// includes the pending change from the reference to the last altitude, so
// that a climb ending below ElevationHysteresis above the last reference
// still counts whole.
func (a *Accumulator) Summary() Summary {
	s := Summary{
		Points:   a.Points,
		Distance: a.Distance,
		Moving:   a.Moving,
		MaxSpeed: a.MaxSpeed,
		Gain:     a.Gain,
		Loss:     a.Loss,
	}
	if a.Points > 0 {
		s.First, s.Last = a.First, a.Last
		s.Duration = a.Last.Sub(a.First).Seconds()
	}
	if a.Moving > 0 {
		s.AvgSpeed = a.Distance / a.Moving
	}
	if a.Valid > 0 {
		b := a.Bounds
		s.Bounds = &b
	}
	if a.HasAlt {
		s.Gain += max(0, a.LastAlt-a.RefAlt)
		s.Loss += max(0, a.RefAlt-a.LastAlt)
	}
	return s
}
