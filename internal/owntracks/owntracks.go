// Package owntracks decodes the JSON messages the OwnTracks apps publish
// (booklet "JSON format", _type location, lwt, transition, waypoint, card,
// status, …) and translates a location into trackgate's position, in SI units.
//
// Identity never comes from a message: tid, topic and the other names in it
// are the app's labels, and the caller attributes a message to the device
// that authenticated.
package owntracks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"trackgate/internal/position"
)

// Message types.
const (
	TypeLocation  = "location"
	TypeLWT       = "lwt"
	TypeEncrypted = "encrypted"
)

// ErrEncrypted is returned for a message encrypted with the app's secret
// key: the broker cannot read it, and a position it cannot validate is never
// stored.
var ErrEncrypted = errors.New(`owntracks: _type "encrypted" refused: turn off payload encryption in the app (Settings → Encryption key: empty); the connection is already protected by TLS and the device token`)

// Message is a decoded OwnTracks message.
type Message struct {
	// Type is the message's _type.
	Type string
	// Position is set for a location: its fields in SI units, validated.
	Position *position.Position
	// Time is the message's tst, for an lwt (when the app connected).
	Time time.Time
}

// location holds the fields of a location message trackgate keeps. Numbers
// are decoded as float64 whatever the app sent (integers on iOS, sometimes
// decimals on Android).
type location struct {
	Lat  *float64 `json:"lat"`
	Lon  *float64 `json:"lon"`
	Tst  *float64 `json:"tst"`  // epoch seconds of the fix
	Acc  *float64 `json:"acc"`  // metres
	Alt  *float64 `json:"alt"`  // metres above sea level
	Vel  *float64 `json:"vel"`  // km/h
	Cog  *float64 `json:"cog"`  // degrees
	Batt *float64 `json:"batt"` // percent
}

// Decode parses payload and, for a location, converts and validates its
// position against now. Types other than location, lwt and encrypted are
// returned with their Type alone; a payload that is not a JSON object with a
// string _type is an error, as is a location without lat, lon and tst or with
// a value out of range.
func Decode(payload []byte, now time.Time) (*Message, error) {
	if len(payload) > position.MaxPayload {
		return nil, fmt.Errorf("owntracks: payload of %d bytes, more than %d", len(payload), position.MaxPayload)
	}
	// The type first: other types (a waypoint's tst is a string) are not
	// read further.
	var head struct {
		Type string `json:"_type"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		return nil, fmt.Errorf("owntracks: %w", err)
	}
	m := &Message{Type: head.Type}
	switch head.Type {
	case "":
		return nil, errors.New("owntracks: no _type")
	case TypeEncrypted:
		return nil, ErrEncrypted
	case TypeLWT:
		var l struct {
			Tst any `json:"tst"`
		}
		_ = json.Unmarshal(payload, &l)
		if tst, ok := l.Tst.(float64); ok && validEpoch(tst) {
			m.Time = epoch(tst)
		}
	case TypeLocation:
		var l location
		if err := json.Unmarshal(payload, &l); err != nil {
			return nil, fmt.Errorf("owntracks: location: %w", err)
		}
		p, err := l.position(now)
		if err != nil {
			return nil, err
		}
		m.Position = p
	}
	return m, nil
}

// position converts a location to a validated position.
func (l *location) position(now time.Time) (*position.Position, error) {
	if l.Lat == nil || l.Lon == nil || l.Tst == nil {
		return nil, errors.New("owntracks: location without lat, lon and tst")
	}
	if !validEpoch(*l.Tst) {
		return nil, fmt.Errorf("owntracks: tst %v is not a time in epoch seconds", *l.Tst)
	}
	p := &position.Position{
		Time: epoch(*l.Tst), Lat: *l.Lat, Lon: *l.Lon,
		Set: position.Required,
	}
	opt := []struct {
		v     *float64
		dst   *float64
		bit   position.Fields
		scale float64
	}{
		{l.Acc, &p.Acc, position.FieldAcc, 1},
		{l.Alt, &p.Alt, position.FieldAlt, 1},
		{l.Vel, &p.Speed, position.FieldSpeed, 1 / 3.6}, // km/h → m/s
		{l.Cog, &p.Course, position.FieldCourse, 1},
		{l.Batt, &p.Batt, position.FieldBatt, 1},
	}
	for _, f := range opt {
		if f.v != nil {
			*f.dst = *f.v * f.scale
			p.Set |= f.bit
		}
	}
	// The apps send -1 for an unknown speed, course or accuracy and a
	// course of 360 for north: unknown is left out, 360 is 0.
	if p.Has(position.FieldCourse) && p.Course == 360 {
		p.Course = 0
	}
	p.DropOutOfRange()
	if err := p.Validate(now); err != nil {
		return nil, fmt.Errorf("owntracks: %w", err)
	}
	return p, nil
}

// validEpoch reports whether v is a whole number of seconds a time.Time can
// hold.
func validEpoch(v float64) bool {
	return v == math.Trunc(v) && v >= 0 && v < 1<<40
}

func epoch(v float64) time.Time { return time.Unix(int64(v), 0).UTC() }
