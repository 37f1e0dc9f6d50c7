package osmand

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"trackgate/internal/position"
)

// MaxBody is the largest request body accepted, in bytes.
const MaxBody = 64 << 10

// SpeedUnit is the unit a device's `speed` parameter is in.
type SpeedUnit string

// The units a device's speed parameter may be in.
const (
	Knots SpeedUnit = "knots" // the Traccar Client app (the default)
	MPS   SpeedUnit = "mps"   // the OsmAnd app
	KMH   SpeedUnit = "kmh"
	MPH   SpeedUnit = "mph"
)

// ParseSpeedUnit parses a unit name ("" is Knots); error names the allowed values.
func ParseSpeedUnit(s string) (SpeedUnit, error) {
	switch u := SpeedUnit(s); u {
	case "":
		return Knots, nil
	case Knots, MPS, KMH, MPH:
		return u, nil
	}
	return "", errors.New("osmand: speed unit " + strconv.Quote(s) + " is not one of knots, mps, kmh, mph")
}

// MetresPerSecond converts v in unit u to m/s. A unit ParseSpeedUnit would
// refuse is taken as Knots, the default.
func (u SpeedUnit) MetresPerSecond(v float64) float64 {
	switch u {
	case MPS:
		return v
	case KMH:
		return v / 3.6
	case MPH:
		return v * 0.44704 // 1609.344 m / 3600 s
	}
	return v * (1852.0 / 3600)
}

// Report is one position report of a request.
type Report struct {
	ID       string            // id, deviceid or device_id
	Key      string            // the key parameter ("" when none)
	Position position.Position // everything but the speed, which depends on the device's unit
	Valid    bool              // the fix is valid (valid parameter; JSON: true)
	Speed    float64           // the speed as sent, with HasSpeed
	HasSpeed bool
	JSON     bool // the JSON form (Traccar Client 9+): its speed is in m/s whatever the device's unit, and an unknown device is answered 404

	Charging, HasCharging bool // the charge parameter (JSON: battery.is_charging)
}

// WithSpeed returns the report's position with its speed converted from unit (or m/s in the JSON form).
func (r *Report) WithSpeed(unit SpeedUnit) position.Position {
	p := r.Position
	if r.HasSpeed {
		p.Speed = r.Speed
		if !r.JSON {
			p.Speed = unit.MetresPerSecond(r.Speed)
		}
		p.Set |= position.FieldSpeed
	}
	return p
}

// Error is a bad request: the parameter (or JSON field) that failed and why; its Error() text is safe to send back to the client in a 400 body.
type Error struct {
	Param string // the query or form parameter, or the JSON field's path (location[2].coords.latitude)
	Msg   string // why, quoting at most a short prefix of the value sent
}

// Error formats e as "param: msg".
func (e *Error) Error() string { return e.Param + ": " + e.Msg }

// Decode decodes one request: rawQuery is the URL's raw query, contentType the request's Content-Type, body the body (at most MaxBody bytes; longer is an error). now stands in for a missing timestamp; loc is the zone of `yyyy-MM-dd HH:mm:ss` timestamps (nil: UTC). It returns one Report per location (one for the query/form form), or an *Error. A missing id, a missing or unparsable lat/lon, an unparsable number or timestamp are errors. Out-of-range times and coordinates (lat 91) are errors too.
//
// The body is JSON when contentType is application/json, or when there is
// no contentType and the body starts with '{'; otherwise the parameters are
// those of rawQuery, or of the body (a form) when rawQuery is empty.
//
// Query and form parameters read: id or deviceid, key, timestamp, lat and
// lon (or location=lat,lon when neither is given), valid, speed, bearing or
// heading, altitude, accuracy, hdop, batt and charge. Any other key (mock,
// alarm, driverUniqueId, cell, wifi, …) is ignored, and so is an empty
// value. When a parameter is repeated, the last one counts.
//
// JSON fields read: device_id (a string or a number; else the query's id
// or deviceid), key (else the query's), and in location, an object or,
// from a client syncing in batches, an array of them: timestamp,
// coords.{latitude,longitude,accuracy,speed,heading,altitude} and
// battery.{level,is_charging}. Everything else (is_moving, odometer, event,
// activity, extras, the "_" copy of the parameters) is ignored.
//
// An optional value out of its range is left out, as
// position.DropOutOfRange does, rather than costing the report: the apps
// send -1 for an unknown speed, heading, accuracy or battery level, the
// OsmAnd app's hdop is its accuracy in metres, which can exceed 100, and a
// refused report is sent again and again. A course of 360 (Android's
// bearings are in (0, 360]) is 0. The speed is kept when it is within range
// taken as m/s, so that it is in any unit.
func Decode(rawQuery, contentType string, body []byte, now time.Time, loc *time.Location) ([]Report, error) {
	if len(body) > MaxBody {
		return nil, &Error{Param: "body", Msg: "larger than " + strconv.Itoa(MaxBody) + " bytes"}
	}
	if loc == nil {
		loc = time.UTC
	}
	// The decoders' *Error is returned only when set: a nil one is no error.
	if isJSON(contentType, body) {
		reports, err := decodeJSON(rawQuery, body, now, loc)
		if err != nil {
			return nil, err
		}
		return reports, nil
	}
	params := rawQuery
	if params == "" {
		params = string(body)
	}
	r, err := decodeParams(params, now, loc)
	if err != nil {
		return nil, err
	}
	return []Report{r}, nil
}

// isJSON reports whether a request's body is to be read as JSON.
func isJSON(contentType string, body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 {
		return false
	}
	mt, _, _ := strings.Cut(contentType, ";")
	if mt = strings.TrimSpace(mt); mt == "" {
		return b[0] == '{'
	}
	return strings.EqualFold(mt, "application/json")
}

// params holds the parameters Decode reads, still escaped.
type params struct {
	id, idName, key, timestamp, lat, lon, location, valid             string
	speed, course, courseName, altitude, accuracy, hdop, batt, charge string
}

// parseParams collects the parameters of a query string. A pair whose key
// does not unescape is no parameter of ours.
func parseParams(s string) params {
	var p params
	for s != "" {
		var pair, k, v string
		pair, s, _ = strings.Cut(s, "&")
		k, v, _ = strings.Cut(pair, "=")
		if v == "" {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		switch name {
		case "id", "deviceid":
			p.id, p.idName = v, name
		case "key":
			p.key = v
		case "timestamp":
			p.timestamp = v
		case "lat":
			p.lat = v
		case "lon":
			p.lon = v
		case "location":
			p.location = v
		case "valid":
			p.valid = v
		case "speed":
			p.speed = v
		case "bearing", "heading":
			p.course, p.courseName = v, name
		case "altitude":
			p.altitude = v
		case "accuracy":
			p.accuracy = v
		case "hdop":
			p.hdop = v
		case "batt":
			p.batt = v
		case "charge":
			p.charge = v
		}
	}
	return p
}

// unescape unescapes the value of parameter name.
func unescape(name, v string) (string, *Error) {
	s, err := url.QueryUnescape(v)
	if err != nil {
		return "", &Error{Param: name, Msg: "bad percent-encoding"}
	}
	return s, nil
}

// decodeParams decodes the query or form form: one report.
func decodeParams(s string, now time.Time, loc *time.Location) (Report, *Error) {
	p := parseParams(s)
	r := Report{Valid: true}
	var err *Error
	if p.id == "" {
		return r, &Error{Param: "id", Msg: "missing"}
	}
	if r.ID, err = unescape(p.idName, p.id); err != nil {
		return r, err
	}
	if p.key != "" {
		if r.Key, err = unescape("key", p.key); err != nil {
			return r, err
		}
	}
	pos := &r.Position
	if pos.Time, err = paramTime(p.timestamp, now, loc); err != nil {
		return r, err
	}
	latName, lonName := "lat", "lon"
	if p.lat == "" && p.lon == "" && p.location != "" {
		latName, lonName = "location", "location"
		if pos.Lat, pos.Lon, err = paramLocation(p.location); err != nil {
			return r, err
		}
	} else {
		if pos.Lat, err = paramNumber("lat", p.lat); err != nil {
			return r, err
		}
		if pos.Lon, err = paramNumber("lon", p.lon); err != nil {
			return r, err
		}
	}
	pos.Set = position.Required
	if p.valid != "" {
		if r.Valid, err = paramBool("valid", p.valid); err != nil {
			return r, err
		}
	}
	if p.charge != "" {
		if r.Charging, err = paramBool("charge", p.charge); err != nil {
			return r, err
		}
		r.HasCharging = true
	}
	if p.speed != "" {
		if r.Speed, err = paramNumber("speed", p.speed); err != nil {
			return r, err
		}
		r.HasSpeed = true
	}
	for _, o := range [...]struct {
		name, v string
		dst     *float64
		bit     position.Fields
	}{
		{p.courseName, p.course, &pos.Course, position.FieldCourse},
		{"altitude", p.altitude, &pos.Alt, position.FieldAlt},
		{"accuracy", p.accuracy, &pos.Acc, position.FieldAcc},
		{"hdop", p.hdop, &pos.HDOP, position.FieldHDOP},
		{"batt", p.batt, &pos.Batt, position.FieldBatt},
	} {
		if o.v == "" {
			continue
		}
		if *o.dst, err = paramNumber(o.name, o.v); err != nil {
			return r, err
		}
		pos.Set |= o.bit
	}
	if field, msg := settle(&r, now); field != "" {
		name := "timestamp"
		switch field {
		case "lat":
			name = latName
		case "lon":
			name = lonName
		}
		return r, &Error{Param: name, Msg: msg}
	}
	return r, nil
}

// paramNumber parses the number of parameter name, which must be there.
func paramNumber(name, v string) (float64, *Error) {
	if v == "" {
		return 0, &Error{Param: name, Msg: "missing"}
	}
	s, err := unescape(name, v)
	if err != nil {
		return 0, err
	}
	return number(name, s)
}

// number parses a finite number.
func number(name, s string) (float64, *Error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, &Error{Param: name, Msg: "not a number: " + quote(s)}
	}
	return f, nil
}

// paramLocation parses location=lat,lon.
func paramLocation(v string) (lat, lon float64, err *Error) {
	s, err := unescape("location", v)
	if err != nil {
		return 0, 0, err
	}
	a, b, ok := strings.Cut(s, ",")
	if !ok || strings.Contains(b, ",") {
		return 0, 0, &Error{Param: "location", Msg: "not lat,lon: " + quote(s)}
	}
	if lat, err = number("location", a); err != nil {
		return 0, 0, err
	}
	if lon, err = number("location", b); err != nil {
		return 0, 0, err
	}
	return lat, lon, nil
}

// paramBool parses true, false, 1 or 0, in any case.
func paramBool(name, v string) (bool, *Error) {
	s, err := unescape(name, v)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, &Error{Param: name, Msg: "not true, false, 1 or 0: " + quote(s)}
}

// paramTime parses the timestamp parameter; a missing one is now.
func paramTime(v string, now time.Time, loc *time.Location) (time.Time, *Error) {
	if v == "" {
		return now.UTC(), nil
	}
	s, err := unescape("timestamp", v)
	if err != nil {
		return time.Time{}, err
	}
	t, ok := parseTime(s, loc)
	if !ok {
		return time.Time{}, &Error{Param: "timestamp", Msg: "not a timestamp: " + quote(s)}
	}
	return t, nil
}

// isoLayouts are the ISO 8601 forms a timestamp with a T may take; one
// without a zone is in the server's.
var isoLayouts = [...]string{
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07",
	"2006-01-02T15:04:05",
}

// parseTime parses a timestamp: epoch seconds, or milliseconds when above
// 2^31-1; ISO 8601 when it holds a T; else yyyy-MM-dd HH:mm:ss in loc.
// Fractional seconds are accepted after the seconds of the last two.
func parseTime(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt32 {
			return time.UnixMilli(n).UTC(), true
		}
		return time.Unix(n, 0).UTC(), true
	}
	if strings.Contains(s, "T") {
		// A + left unescaped in a query (…T10:00:00+02:00) arrives as a space.
		s = strings.ReplaceAll(s, " ", "+")
		for _, layout := range isoLayouts {
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t.UTC(), true
			}
		}
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(time.DateTime, s, loc)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// settle puts r's position in shape: a course of 360 becomes 0, optional
// values out of range are dropped (the speed judged as m/s, the largest
// value any unit gives it), and the time, latitude and longitude are
// checked against now. It returns the position field at fault ("time",
// "lat" or "lon") and why, or "".
func settle(r *Report, now time.Time) (field, msg string) {
	p := &r.Position
	if p.Has(position.FieldCourse) && p.Course == 360 {
		p.Course = 0
	}
	if r.HasSpeed {
		p.Speed, p.Set = r.Speed, p.Set|position.FieldSpeed
	}
	dropped := p.DropOutOfRange()
	for b := position.Fields(1); b != 0 && b <= dropped; b <<= 1 {
		if f, ok := position.FloatFieldFor(b); ok && dropped&b != 0 {
			f.Set(p, 0) // a field left out holds zero, like one never sent
		}
	}
	if dropped&position.FieldSpeed != 0 {
		r.Speed, r.HasSpeed = 0, false
	}
	p.Speed, p.Set = 0, p.Set&^(dropped|position.FieldSpeed)
	err := p.Validate(now)
	if err == nil {
		return "", ""
	}
	var perr *position.Error
	if errors.As(err, &perr) {
		return perr.Field, perr.Detail
	}
	return "time", err.Error()
}

// quote quotes a value sent, at most its first 32 bytes, in ASCII.
func quote(s string) string {
	const limit = 32
	if len(s) > limit {
		return strconv.QuoteToASCII(s[:limit]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// jsonBody is the JSON body's top level.
type jsonBody struct {
	DeviceID json.RawMessage `json:"device_id"`
	Key      string          `json:"key"`
	Location json.RawMessage `json:"location"`
}

// jsonLocation is one location of a JSON body: the fields read.
type jsonLocation struct {
	Timestamp *string `json:"timestamp"`
	Coords    *struct {
		Latitude  *float64 `json:"latitude"`
		Longitude *float64 `json:"longitude"`
		Accuracy  *float64 `json:"accuracy"`
		Speed     *float64 `json:"speed"` // m/s
		Heading   *float64 `json:"heading"`
		Altitude  *float64 `json:"altitude"`
	} `json:"coords"`
	Battery *struct {
		Level      *float64 `json:"level"` // 0 to 1
		IsCharging *bool    `json:"is_charging"`
	} `json:"battery"`
}

// decodeJSON decodes the JSON form: one report per location.
func decodeJSON(rawQuery string, body []byte, now time.Time, loc *time.Location) ([]Report, *Error) {
	var root jsonBody
	if err := json.Unmarshal(body, &root); err != nil {
		return nil, jsonError("", err)
	}
	id, err := jsonString(root.DeviceID)
	if err != nil {
		return nil, err
	}
	key := root.Key
	if id == "" || key == "" {
		q := parseParams(rawQuery)
		if id == "" && q.id != "" {
			if id, err = unescape(q.idName, q.id); err != nil {
				return nil, err
			}
		}
		if key == "" && q.key != "" {
			if key, err = unescape("key", q.key); err != nil {
				return nil, err
			}
		}
	}
	if id == "" {
		return nil, &Error{Param: "device_id", Msg: "missing"}
	}
	raw := bytes.TrimSpace(root.Location)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, &Error{Param: "location", Msg: "missing"}
	}
	if raw[0] != '[' {
		r, err := decodeLocation("location", raw, now, loc)
		if err != nil {
			return nil, err
		}
		r.ID, r.Key = id, key
		return []Report{r}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, jsonError("location", err)
	}
	if len(items) == 0 {
		return nil, &Error{Param: "location", Msg: "no locations"}
	}
	reports := make([]Report, len(items))
	for i, item := range items {
		r, err := decodeLocation("location["+strconv.Itoa(i)+"]", item, now, loc)
		if err != nil {
			return nil, err
		}
		r.ID, r.Key = id, key
		reports[i] = r
	}
	return reports, nil
}

// jsonString reads device_id: a string, or a number as written.
func jsonString(raw json.RawMessage) (string, *Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), nil
	}
	return "", &Error{Param: "device_id", Msg: "want a string"}
}

// decodeLocation decodes one location; at is its path, for errors.
func decodeLocation(at string, raw []byte, now time.Time, loc *time.Location) (Report, *Error) {
	var l jsonLocation
	r := Report{Valid: true, JSON: true}
	if err := json.Unmarshal(raw, &l); err != nil {
		return r, jsonError(at, err)
	}
	p := &r.Position
	p.Time = now.UTC()
	if l.Timestamp != nil && *l.Timestamp != "" {
		t, ok := parseTime(*l.Timestamp, loc)
		if !ok {
			return r, &Error{Param: at + ".timestamp", Msg: "not a timestamp: " + quote(*l.Timestamp)}
		}
		p.Time = t
	}
	c := l.Coords
	switch {
	case c == nil:
		return r, &Error{Param: at + ".coords", Msg: "missing"}
	case c.Latitude == nil:
		return r, &Error{Param: at + ".coords.latitude", Msg: "missing"}
	case c.Longitude == nil:
		return r, &Error{Param: at + ".coords.longitude", Msg: "missing"}
	}
	p.Lat, p.Lon, p.Set = *c.Latitude, *c.Longitude, position.Required
	for _, o := range [...]struct {
		v   *float64
		dst *float64
		bit position.Fields
	}{
		{c.Accuracy, &p.Acc, position.FieldAcc},
		{c.Heading, &p.Course, position.FieldCourse},
		{c.Altitude, &p.Alt, position.FieldAlt},
	} {
		if o.v != nil {
			*o.dst = *o.v
			p.Set |= o.bit
		}
	}
	if c.Speed != nil {
		r.Speed, r.HasSpeed = *c.Speed, true
	}
	if b := l.Battery; b != nil {
		if b.Level != nil {
			// A fraction, often a float32 (0.51999998): percent to 0.01.
			p.Batt = math.Round(*b.Level*1e4) / 100
			p.Set |= position.FieldBatt
		}
		if b.IsCharging != nil {
			r.Charging, r.HasCharging = *b.IsCharging, true
		}
	}
	if field, msg := settle(&r, now); field != "" {
		name := ".timestamp"
		switch field {
		case "lat":
			name = ".coords.latitude"
		case "lon":
			name = ".coords.longitude"
		}
		return r, &Error{Param: at + name, Msg: msg}
	}
	return r, nil
}

// jsonError turns an encoding/json error met decoding the value at path at
// ("" for the body) into an *Error.
func jsonError(at string, err error) *Error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return &Error{Param: "body", Msg: "not JSON: " + err.Error()}
	}
	param := at
	if te.Field != "" {
		if param != "" {
			param += "."
		}
		param += te.Field
	}
	if param == "" {
		param = "body"
	}
	msg := "wrong type"
	switch te.Type.Kind() {
	case reflect.Float64:
		msg = "want a number"
		if strings.HasPrefix(te.Value, "number") {
			msg = "number out of range"
		}
	case reflect.String:
		msg = "want a string"
	case reflect.Bool:
		msg = "want true or false"
	case reflect.Struct:
		msg = "want an object"
	}
	return &Error{Param: param, Msg: msg}
}
