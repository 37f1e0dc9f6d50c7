package owntracks

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

// now is the receiver's clock in these tests.
var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func epochTime(s int64) time.Time { return time.Unix(s, 0).UTC() }

// decodeCase is a payload and what Decode must make of it. The payloads are
// the OwnTracks booklet's JSON documentation (owntracks.org/booklet/tech/json,
// .../features/waypoints) and messages real apps and trackers published, as
// quoted in their projects' tests and logs.
type decodeCase struct {
	name    string
	payload string
	typ     string             // the message's Type, when there is no error
	pos     *position.Position // the position of a location
	lwt     time.Time          // the Time of an lwt
	err     string             // a substring of the error, if one is expected
	is      error              // the error Decode must wrap, if any
}

var decodeCases = []decodeCase{
	{
		// The booklet's location example (acc 75, alt 13, cog 270, tst
		// 1376715317, vac 10), its placeholders filled in, with vel 44 km/h.
		name: "booklet location, every field",
		payload: `{
    "_type" : "location",
    "acc"   : 75,
    "alt"   : 13,
    "batt"  : 87,
    "cog"   : 270,
    "desc"  : "My favorite coffee shop (Delaville)",
    "event" : "enter",
    "lat"   : 48.87069,
    "lon"   : 2.34916,
    "rad"   : 50,
    "t"     : "u",
    "tid"   : "j1",
    "tst"   : 1376715317,
    "vac"   : 10,
    "vel"   : 44,
    "p"     : 101.2,
    "conn"  : "w"
}`,
		typ: TypeLocation,
		pos: &position.Position{Time: epochTime(1376715317), Lat: 48.87069, Lon: 2.34916, Alt: 13,
			Speed: 44 / 3.6, Course: 270, Acc: 75, Batt: 87,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt},
	},
	{
		// The OwnTracks Android app's own test fixture.
		name:    "Android app location",
		payload: `{"_type":"location","acc":20,"al":0,"batt":100,"bs":0,"conn":"w","created_at":1610748273,"lat":51.2,"lon":-4,"tid":"aa","tst":1610799026,"vac":40,"vel":7}`,
		typ:     TypeLocation,
		pos: &position.Position{Time: epochTime(1610799026), Lat: 51.2, Lon: -4, Speed: 7 / 3.6, Acc: 20, Batt: 100,
			Set: position.Required | position.FieldSpeed | position.FieldAcc | position.FieldBatt},
	},
	{
		// A GSM tracker speaking OwnTracks: cog 360 is north, batt is in
		// millivolts (out of range: dropped, not fatal).
		name:    "tracker location, cog 360 and a battery in mV",
		payload: `{"_type":"location","acc":300,"batt":4150,"cog":360,"lat":52.3450164,"lon":21.0437335,"tid":"ts","vel":999,"tst":1498993069}`,
		typ:     TypeLocation,
		pos: &position.Position{Time: epochTime(1498993069), Lat: 52.3450164, Lon: 21.0437335, Speed: 999 / 3.6, Course: 0, Acc: 300,
			Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldAcc},
	},
	{
		name:    "minimal location: lat, lon, tst",
		payload: `{"lat":51.5,"lon":-0.1,"tst":1700000000,"_type":"location"}`,
		typ:     TypeLocation,
		pos:     &position.Position{Time: epochTime(1700000000), Lat: 51.5, Lon: -0.1, Set: position.Required},
	},
	{
		// Android sends decimals where the booklet says integer (acc 77.6
		// and 14.907 in its transition messages).
		name:    "Android decimal numbers",
		payload: `{"_type":"location","acc":14.907,"alt":41.5,"batt":86,"conn":"w","inregions":["Casa"],"lat":44.2789083,"lon":11.9022358,"tid":"ic","tst":1546871328.0,"vac":0,"vel":3.6,"cog":12.5}`,
		typ:     TypeLocation,
		pos: &position.Position{Time: epochTime(1546871328), Lat: 44.2789083, Lon: 11.9022358, Alt: 41.5, Speed: 1, Course: 12.5, Acc: 14.907, Batt: 86,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt},
	},
	{
		name:    "zeros are kept (Android's alt 0, vel 0)",
		payload: `{"_type":"location","acc":78,"alt":0,"batt":86,"conn":"w","inregions":["Casa"],"lat":44.2792575,"lon":11.9055914,"tid":"ic","tst":1546871086,"vac":0,"vel":0}`,
		typ:     TypeLocation,
		pos: &position.Position{Time: epochTime(1546871086), Lat: 44.2792575, Lon: 11.9055914, Acc: 78, Batt: 86,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldAcc | position.FieldBatt},
	},
	{
		name:    "-1 for unknown speed, course and accuracy is left out",
		payload: `{"_type":"location","lat":1,"lon":2,"tst":1700000000,"vel":-1,"cog":-1,"acc":-1,"batt":-1}`,
		typ:     TypeLocation,
		pos:     &position.Position{Time: epochTime(1700000000), Lat: 1, Lon: 2, Set: position.Required},
	},
	{
		name:    "tid and topic are not identity",
		payload: `{"_type":"location","lat":1,"lon":2,"tst":1700000000,"tid":"XX","topic":"owntracks/mallory/other-device"}`,
		typ:     TypeLocation,
		pos:     &position.Position{Time: epochTime(1700000000), Lat: 1, Lon: 2, Set: position.Required},
	},
	{name: "location without tst", payload: `{"_type":"location","acc":17,"batt":80,"lat":-22.9836,"lon":-43.21782}`, err: "without lat, lon and tst"},
	{name: "location without lat", payload: `{"_type":"location","lon":-43.21782,"tst":1532102000}`, err: "without lat, lon and tst"},
	{name: "location without lon", payload: `{"_type":"location","lat":-22.9836,"tst":1532102000}`, err: "without lat, lon and tst"},
	{name: "location with null tst", payload: `{"_type":"location","lat":1,"lon":2,"tst":null}`, err: "without lat, lon and tst"},
	{name: "tst as a string", payload: `{"_type":"location","lat":48.85833,"lon":2.29513,"tst":"1385997757"}`, err: "tst"},
	{name: "lat as a string", payload: `{"_type":"location","lat":"48.858330","lon":2.29513,"tst":1385997757}`, err: "lat"},
	{name: "fractional tst", payload: `{"_type":"location","lat":1,"lon":2,"tst":1700000000.5}`, err: "epoch seconds"},
	{name: "negative tst", payload: `{"_type":"location","lat":1,"lon":2,"tst":-5}`, err: "epoch seconds"},
	{name: "tst in milliseconds", payload: `{"_type":"location","lat":1,"lon":2,"tst":1700000000000}`, err: "time"},
	{name: "tst before 2000", payload: `{"_type":"location","lat":1,"lon":2,"tst":915148800}`, err: "past"},
	{name: "lat out of range", payload: `{"_type":"location","lat":91,"lon":2,"tst":1700000000}`, err: "lat: range"},
	{name: "lon out of range", payload: `{"_type":"location","lat":1,"lon":-180.5,"tst":1700000000}`, err: "lon: range"},
	{name: "future tst", payload: `{"_type":"location","lat":1,"lon":2,"tst":` + itoa(now.Add(time.Hour).Unix()) + `}`, err: "future"},
	{
		name:    "tst a little ahead is accepted",
		payload: `{"_type":"location","lat":1,"lon":2,"tst":` + itoa(now.Add(4*time.Minute).Unix()) + `}`,
		typ:     TypeLocation,
		pos:     &position.Position{Time: now.Add(4 * time.Minute), Lat: 1, Lon: 2, Set: position.Required},
	},
	{name: "lwt", payload: `{"_type":"lwt","tst":1498932340}`, typ: TypeLWT, lwt: epochTime(1498932340)},
	{name: "lwt without tst", payload: `{"_type":"lwt"}`, typ: TypeLWT},
	{
		// The booklet's transition example (features/waypoints).
		name: "booklet transition",
		payload: `{
"_type": "transition",
"desc": "My favorite coffee shop (Delaville)",
"event": "enter",
"lat": 48.87069,
"lon": 2.34916,
"rid": "f7676c",
"tid": "j1",
"tst": 1707057574,
"wtst": 1610104395
}`,
		typ: "transition",
	},
	{name: "Android transition", payload: `{"_type":"transition","acc":77.6,"desc":"Casa","event":"enter","lat":44.2792575,"lon":11.9055914,"t":"l","tid":"ic","tst":1546871106,"wtst":1546866906}`, typ: "transition"},
	{name: "waypoint", payload: `{"_type":"waypoint","tst":1,"desc":"Home"}`, typ: "waypoint"},
	{name: "waypoints", payload: `{"_type":"waypoints","waypoints":[{"_type":"waypoint","tst":1,"desc":"Home"}]}`, typ: "waypoints"},
	{name: "card", payload: `{"_type":"card","name":"Alice","tid":"ab","face":"aGVsbG8="}`, typ: "card"},
	{name: "status", payload: `{"_type":"status","android":{}}`, typ: "status"},
	{name: "cmd", payload: `{"_type":"cmd","action":"reportLocation"}`, typ: "cmd"},
	{name: "steps", payload: `{"_type":"steps","tst":1700000000,"steps":-1,"from":1699990000,"to":1700000000}`, typ: "steps"},
	{name: "encrypted", payload: `{"_type":"encrypted","data":"NmFkYmM2ZjMtZTNhYS00YzgyLWE5YjktMGVmMzFiNTg5ZTk2"}`, is: ErrEncrypted, err: "encryption"},
	{name: "not JSON", payload: `lat=1,lon=2`, err: "owntracks"},
	{name: "empty payload", payload: ``, err: "owntracks"},
	{name: "JSON array", payload: `[{"_type":"location","lat":1,"lon":2,"tst":1700000000}]`, err: "owntracks"},
	{name: "JSON string", payload: `"location"`, err: "owntracks"},
	{name: "empty _type", payload: `{"_type":"","lat":1,"lon":2,"tst":1700000000}`, err: "no _type"},
	{name: "no _type", payload: `{"lat":1,"lon":2,"tst":1700000000}`, err: "no _type"},
	{name: "_type not a string", payload: `{"_type":5,"lat":1,"lon":2,"tst":1700000000}`, err: "owntracks"},
	{name: "truncated", payload: `{"_type":"location","lat":1,"lon":2,"tst":17000`, err: "owntracks"},
	{name: "oversize", payload: `{"_type":"location","lat":1,"lon":2,"tst":1700000000,"pad":"` + strings.Repeat("x", position.MaxPayload) + `"}`, err: "more than 65536"},
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.payload), now)
			if tc.err != "" || tc.is != nil {
				if err == nil {
					t.Fatalf("Decode = %+v, want an error containing %q", m, tc.err)
				}
				if m != nil {
					t.Errorf("Decode returned a message %+v with its error", m)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %q, want it to contain %q", err, tc.err)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("error %v is not %v", err, tc.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Type != tc.typ {
				t.Errorf("Type = %q, want %q", m.Type, tc.typ)
			}
			if !m.Time.Equal(tc.lwt) {
				t.Errorf("Time = %v, want %v", m.Time, tc.lwt)
			}
			if tc.pos == nil {
				if m.Position != nil {
					t.Errorf("Position = %+v, want none", m.Position)
				}
				return
			}
			if m.Position == nil {
				t.Fatal("no Position")
			}
			checkPosition(t, *m.Position, *tc.pos)
		})
	}
}

// checkPosition compares positions, the floats derived by a unit conversion
// to within 1e-9.
func checkPosition(t *testing.T, got, want position.Position) {
	t.Helper()
	if !got.Time.Equal(want.Time) || got.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", got.Time, want.Time)
	}
	if got.Set != want.Set {
		t.Errorf("Set = %014b, want %014b", got.Set, want.Set)
	}
	for _, f := range []struct {
		name      string
		bit       position.Fields
		got, want float64
	}{
		{"lat", position.FieldLat, got.Lat, want.Lat}, {"lon", position.FieldLon, got.Lon, want.Lon},
		{"alt", position.FieldAlt, got.Alt, want.Alt}, {"speed", position.FieldSpeed, got.Speed, want.Speed},
		{"course", position.FieldCourse, got.Course, want.Course}, {"acc", position.FieldAcc, got.Acc, want.Acc},
		{"batt", position.FieldBatt, got.Batt, want.Batt},
	} {
		if want.Has(f.bit) && math.Abs(f.got-f.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if err := got.Validate(now); err != nil {
		t.Errorf("position does not validate: %v", err)
	}
}

// TestDecodeSpeedUnits pins the unit conversion the booklet implies: vel is
// km/h, trackgate's speed m/s.
func TestDecodeSpeedUnits(t *testing.T) {
	for _, tc := range []struct {
		vel  string
		want float64
	}{
		{"0", 0}, {"3.6", 1}, {"36", 10}, {"44", 12.222222222222221}, {"54", 15}, {"120", 33.333333333333336},
	} {
		m, err := Decode([]byte(`{"_type":"location","lat":1,"lon":2,"tst":1700000000,"vel":`+tc.vel+`}`), now)
		if err != nil {
			t.Fatalf("vel %s: %v", tc.vel, err)
		}
		if !m.Position.Has(position.FieldSpeed) || math.Abs(m.Position.Speed-tc.want) > 1e-12 {
			t.Errorf("vel %s km/h: speed %v m/s, want %v", tc.vel, m.Position.Speed, tc.want)
		}
	}
}

// TestDecodeOtherTypesAnyFieldTypes: Decode's contract is that types other
// than location, lwt and encrypted come back with their Type alone. The
// booklet's own waypoint example (features/waypoints) quotes its numbers as
// strings; a waypoint must not be an error for the fields trackgate reads
// only from a location.
func TestDecodeOtherTypesAnyFieldTypes(t *testing.T) {
	for _, payload := range []string{
		`{
"_type": "waypoint",
"desc": "Paris is lovely",
"lat": "48.858330",
"lon": "2.295130",
"rad": "50",
"tst": "1385997757",
"rid": "f7676c"
}`,
		`{"_type":"card","name":"Alice","tid":"ab","lat":"none"}`,
	} {
		m, err := Decode([]byte(payload), now)
		if err != nil {
			t.Errorf("Decode(%s) error: %v; want the message with its Type alone", payload, err)
			continue
		}
		if m.Position != nil {
			t.Errorf("Decode(%s) has a position", payload)
		}
	}
}
