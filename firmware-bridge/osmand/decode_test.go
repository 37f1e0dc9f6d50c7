package osmand

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

// now is the server's clock in these tests.
var now = time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)

// cest is the zone of a server in Luxembourg in summer.
var cest = time.FixedZone("CEST", 2*60*60)

// units lists every speed unit.
var units = [...]SpeedUnit{Knots, MPS, KMH, MPH}

// Presence sets of the positions below.
const (
	req  = position.Required
	alt  = position.FieldAlt
	crs  = position.FieldCourse
	acc  = position.FieldAcc
	hdop = position.FieldHDOP
	batt = position.FieldBatt
)

// at parses an RFC 3339 time.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// decodeCase is one request and what Decode must make of it: the reports,
// or an error naming param.
type decodeCase struct {
	name        string
	query       string         // the URL's raw query
	contentType string         // the Content-Type header
	body        string         // the body, or
	file        string         // the file in testdata holding it
	loc         *time.Location // the server's zone
	want        []Report
	param       string // the Param of the error expected, if any
}

// payload returns the body of tc.
func (tc *decodeCase) payload(tb testing.TB) []byte {
	tb.Helper()
	if tc.file == "" {
		return []byte(tc.body)
	}
	b, err := os.ReadFile(filepath.Join("testdata", tc.file))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// traccarClient9 is the report of testdata/traccar-client-9.json.
var traccarClient9 = []Report{{
	ID: "48241179",
	Position: position.Position{
		Time: at("2025-06-15T13:45:12.862Z"), Lat: 37.4219983, Lon: -122.084,
		Acc: 5, Alt: 5, Batt: 100, Set: req | acc | alt | batt,
	},
	Valid: true, Speed: 0, HasSpeed: true, JSON: true, HasCharging: true,
}}

var decodeCases = []decodeCase{
	// Query form.
	{
		// This project's PROTOCOLS.md copy-paste example.
		name:  "trackgate docs example, every parameter",
		query: "id=123456&timestamp=1700000000&lat=52.52&lon=13.405&speed=12.3&bearing=90&altitude=34&accuracy=5&batt=87&charge=true",
		want: []Report{{
			ID: "123456",
			Position: position.Position{
				Time: at("2023-11-14T22:13:20Z"), Lat: 52.52, Lon: 13.405,
				Alt: 34, Course: 90, Acc: 5, Batt: 87, Set: req | alt | crs | acc | batt,
			},
			Valid: true, Speed: 12.3, HasSpeed: true, Charging: true, HasCharging: true,
		}},
	},
	{
		// The legacy Traccar Client Android app: the parameters of its
		// ProtocolFormatter.kt in its order, a mock location with an alarm;
		// the values are ours.
		name:  "legacy Traccar Client Android, mock with alarm",
		query: "id=123456789012345&timestamp=1718000000&lat=48.856614&lon=2.3522219&speed=4.5&bearing=181.3&altitude=35.0&accuracy=12.0&batt=76.0&mock=true&alarm=sos",
		want: []Report{{
			ID: "123456789012345",
			Position: position.Position{
				Time: at("2024-06-10T06:13:20Z"), Lat: 48.856614, Lon: 2.3522219,
				Alt: 35, Course: 181.3, Acc: 12, Batt: 76, Set: req | alt | crs | acc | batt,
			},
			Valid: true, Speed: 4.5, HasSpeed: true,
		}},
	},
	{
		// The OsmAnd app: traccar.org's template for it with bearing and
		// accuracy added, as its LiveSender fills it in ({2} the time in
		// ms, {3} the accuracy in both hdop and accuracy, {5} m/s); the
		// values are ours.
		name:  "OsmAnd app template, ms timestamp",
		query: "id=osmand-7&timestamp=1718000000123&lat=52.52001&lon=13.40495&speed=13.9&bearing=271.0&altitude=34.5&accuracy=12.0&hdop=12.0",
		want: []Report{{
			ID: "osmand-7",
			Position: position.Position{
				Time: at("2024-06-10T06:13:20.123Z"), Lat: 52.52001, Lon: 13.40495,
				Alt: 34.5, Course: 271, Acc: 12, HDOP: 12, Set: req | alt | crs | acc | hdop,
			},
			Valid: true, Speed: 13.9, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "ISO 8601 timestamp with Z",
		query: "id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0&altitude=224.0&speed=0.0",
		want: []Report{{
			ID: "902064",
			Position: position.Position{
				Time: at("2016-01-27T18:55:47Z"), Lat: 42.06288, Lon: -88.23412,
				HDOP: 6, Alt: 224, Set: req | hdop | alt,
			},
			Valid: true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "epoch milliseconds",
		query: "id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0&speed=0.0",
		want: []Report{{
			ID: "902064",
			Position: position.Position{
				Time: at("2015-09-12T14:38:06.579Z"), Lat: 42.06288, Lon: -88.23412,
				HDOP: 6, Alt: 224, Set: req | hdop | alt,
			},
			Valid: true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest, in Luxembourg: the local
		// time of a server there.
		name:  "yyyy-MM-dd HH:mm:ss in the server's zone",
		query: "lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0&id=353861053849681",
		loc:   cest,
		want: []Report{{
			ID: "353861053849681",
			Position: position.Position{
				Time: at("2014-06-04T07:10:11Z"), Lat: 49.60688, Lon: 6.15788,
				Alt: 384.7, Set: req | alt,
			},
			Valid: true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "epoch seconds, bearing and hdop",
		query: "id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0",
		want: []Report{{
			ID: "123456",
			Position: position.Position{
				Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req | crs | alt | hdop,
			},
			Valid: true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "position alone",
		query: "id=123456&timestamp=1377177267&lat=60.0&lon=30.0",
		want: []Report{{
			ID:       "123456",
			Position: position.Position{Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req},
			Valid:    true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest: vacc and hacc are no
		// parameters of ours; no timestamp is now.
		name:  "deviceid, heading, unknown keys, no timestamp",
		query: "lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456",
		want: []Report{{
			ID:       "123456",
			Position: position.Position{Time: now, Lat: 60, Lon: 30, Set: req | crs | alt},
			Valid:    true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "battery",
		query: "id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87",
		want: []Report{{
			ID: "861001000719969",
			Position: position.Position{
				Time: now, Lat: 41.666667, Lon: -0.883333, Alt: 350.059479, Batt: 87, Set: req | alt | batt,
			},
			Valid: true, HasSpeed: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "location=lat,lon",
		query: "id=123456&timestamp=1377177267&location=60.0,30.0",
		want: []Report{{
			ID:       "123456",
			Position: position.Position{Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req},
			Valid:    true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest: a vehicle tracker's own keys.
		name:  "unknown keys ignored",
		query: "id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24",
		want: []Report{{
			ID: "123456789012345",
			Position: position.Position{
				Time: at("2017-09-07T05:56:50Z"), Lat: 40.7232948571, Lon: -74.0061408571,
				Course: 7.19889788244, Set: req | crs,
			},
			Valid: true, Speed: 40, HasSpeed: true,
		}},
	},
	{
		// Ours: the keys traccar documents for other clients
		// (driverUniqueId, cell, wifi, notificationToken), each repeated.
		name:  "other clients' keys ignored",
		query: "id=123456&timestamp=1377177267&lat=60.0&lon=30.0&driverUniqueId=D1&cell=257,02,16,2224&cell=257,02,16,2223,-90&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70&notificationToken=x%20y",
		want: []Report{{
			ID:       "123456",
			Position: position.Position{Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req},
			Valid:    true,
		}},
	},
	{
		// Ours: an offset, its + escaped as it should be.
		name:  "ISO 8601 timestamp with offset",
		query: "id=42&timestamp=2024-03-10T14%3A05%3A09.250%2B01%3A00&lat=47.3769&lon=8.5417",
		want: []Report{{
			ID:       "42",
			Position: position.Position{Time: at("2024-03-10T13:05:09.25Z"), Lat: 47.3769, Lon: 8.5417, Set: req},
			Valid:    true,
		}},
	},
	{
		// Ours: a client that leaves the offset's + unescaped.
		name:  "ISO 8601 timestamp with an unescaped + offset",
		query: "id=42&timestamp=2024-03-10T14:05:09+0100&lat=47.3769&lon=8.5417",
		want: []Report{{
			ID:       "42",
			Position: position.Position{Time: at("2024-03-10T13:05:09Z"), Lat: 47.3769, Lon: 8.5417, Set: req},
			Valid:    true,
		}},
	},
	{
		// Ours: the parameters in a form body, with an invalid fix and
		// the device's key.
		name:        "form body, valid=false, key",
		contentType: "application/x-www-form-urlencoded",
		body:        "id=123456&timestamp=1377177267&lat=60.0&lon=30.0&valid=false&key=s3cr%2Ft",
		want: []Report{{
			ID: "123456", Key: "s3cr/t",
			Position: position.Position{Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req},
		}},
	},
	{
		// Ours: the values apps send for unknowns (-1) or that are out of
		// range (OsmAnd's hdop is its accuracy in metres), Android's
		// bearing of 360, and an empty value.
		name:  "sentinels and out-of-range optional values left out",
		query: "id=7&timestamp=1718000000&lat=1.5&lon=2.5&speed=-1&bearing=360&hdop=150&batt=-1&accuracy=-1&altitude=",
		want: []Report{{
			ID:       "7",
			Position: position.Position{Time: at("2024-06-10T06:13:20Z"), Lat: 1.5, Lon: 2.5, Set: req | crs},
			Valid:    true,
		}},
	},
	{
		// Ours: a GET with a stray JSON Content-Type and no body.
		name:        "JSON content type without a body: the query",
		query:       "id=123456&timestamp=1377177267&lat=60.0&lon=30.0&valid=1",
		contentType: "application/json",
		want: []Report{{
			ID:       "123456",
			Position: position.Position{Time: at("2013-08-22T13:14:27Z"), Lat: 60, Lon: 30, Set: req},
			Valid:    true,
		}},
	},

	// JSON form.
	{
		// traccar's OsmAndProtocolDecoderTest: Traccar Client 9, heading -1.
		name:        "Traccar Client 9",
		contentType: "application/json",
		file:        "traccar-client-9.json",
		want:        traccarClient9,
	},
	{
		name:        "Traccar Client 9, charset in the content type",
		contentType: "application/json; charset=utf-8",
		file:        "traccar-client-9.json",
		want:        traccarClient9,
	},
	{
		name: "Traccar Client 9, no content type",
		file: "traccar-client-9.json",
		want: traccarClient9,
	},
	{
		// traccar's OsmAndProtocolDecoderTest: extras of every type.
		name:        "Traccar Client 9, extras",
		contentType: "application/json",
		file:        "traccar-client-9-extras.json",
		want:        traccarClient9,
	},
	{
		// traccar's OsmAndProtocolDecoderTest: iOS, speed, heading and
		// battery level -1.
		name:        "Traccar Client 9 on iOS, unknowns",
		contentType: "application/json",
		file:        "traccar-client-9-ios-unknowns.json",
		want: []Report{{
			ID: "658765",
			Position: position.Position{
				Time: at("2025-05-09T04:11:30.579Z"), Lat: 37.785834000000001, Lon: -122.406417,
				Acc: 5, Alt: 0, Set: req | acc | alt,
			},
			Valid: true, JSON: true, HasCharging: true,
		}},
	},
	{
		// traccar's OsmAndProtocolDecoderTest: moving.
		name:        "moving, battery 0.79",
		contentType: "application/json",
		file:        "transistorsoft-moving.json",
		want: []Report{{
			ID: "8737767034",
			Position: position.Position{
				Time: at("2021-07-21T08:06:34.444Z"), Lat: -6.1148096, Lon: 106.6837015,
				Acc: 3.8, Course: 63, Alt: 35.7, Batt: 79, Set: req | acc | crs | alt | batt,
			},
			Valid: true, Speed: 18.67, HasSpeed: true, JSON: true, HasCharging: true,
		}},
	},
	{
		// A transistorsoft SDK batch upload (testdata/README.md); the id,
		// not in the body, in the URL as a user may set it.
		name:        "batch upload, id and key in the query",
		query:       "id=7F63E95C&key=k1",
		contentType: "application/json",
		file:        "transistorsoft-batch-sync.json",
		want: []Report{
			batchReport("2019-06-15T03:43:08.792Z", 40.480820434109447, -84.617125412353403, 4.7000000000000002, 2.52, 266.92000000000002, 273.19999999999999, 52),
			batchReport("2019-06-15T03:43:38.617Z", 40.480889422043063, -84.618930949425121, 13.800000000000001, 4.2800000000000002, 269.68000000000001, 271.69999999999999, 51),
			batchReport("2019-06-15T03:43:48Z", 40.481067332053634, -84.619039613866775, 7.7000000000000002, 3.3199999999999998, 359.56, 272.10000000000002, 51),
			batchReport("2019-06-15T03:43:49Z", 40.481302928879117, -84.619058148360509, 20.300000000000001, 5.7999999999999998, 0.94999999999999996, 272.19999999999999, 51),
			batchReport("2019-06-15T03:43:54Z", 40.481514088090087, -84.619053547046278, 7.7000000000000002, 8.7100000000000009, 0.94999999999999996, 274, 51),
		},
	},
	{
		// Ours: a numeric device_id and a key, timestamp and battery
		// left out (now), charging.
		name:        "numeric device_id, key, no timestamp",
		contentType: "application/json",
		body:        `{"device_id":48241179,"key":"k2","location":{"coords":{"latitude":1.25,"longitude":-2.5},"battery":{"is_charging":true}}}`,
		want: []Report{{
			ID: "48241179", Key: "k2",
			Position: position.Position{Time: now, Lat: 1.25, Lon: -2.5, Set: req},
			Valid:    true, JSON: true, Charging: true, HasCharging: true,
		}},
	},

	// Errors.
	{
		// traccar's OsmAndProtocolDecoderTest.
		name:  "missing id",
		query: "timestamp=1377177267&lat=60.0&lon=30.0",
		param: "id",
	},
	{
		// traccar's OsmAndProtocolDecoderTest: cells and Wi-Fi, no position.
		name:  "missing lat",
		query: "id=123456&timestamp=1377177267&cell=257,02,16,2224&cell=257,02,16,2223,-90&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70",
		param: "lat",
	},
	{name: "missing lon", query: "id=1&lat=60", param: "lon"},
	{name: "lat 91", query: "id=1&lat=91&lon=30", param: "lat"},
	{name: "lon 180.5", query: "id=1&lat=60&lon=180.5", param: "lon"},
	{name: "lon abc", query: "id=1&lat=60&lon=abc", param: "lon"},
	{name: "lat NaN", query: "id=1&lat=NaN&lon=30", param: "lat"},
	{name: "lat beyond float64", query: "id=1&lat=1e400&lon=30", param: "lat"},
	{name: "lat badly escaped", query: "id=1&lat=%zz&lon=30", param: "lat"},
	{name: "speed abc", query: "id=1&lat=60&lon=30&speed=abc", param: "speed"},
	{name: "heading abc", query: "id=1&lat=60&lon=30&heading=abc", param: "heading"},
	{name: "valid yes", query: "id=1&lat=60&lon=30&valid=yes", param: "valid"},
	{name: "charge maybe", query: "id=1&lat=60&lon=30&charge=maybe", param: "charge"},
	{name: "location one number", query: "id=1&location=60.0", param: "location"},
	{name: "location lat 91", query: "id=1&location=91,30", param: "location"},
	{name: "timestamp garbage", query: "id=1&lat=60&lon=30&timestamp=garbage", param: "timestamp"},
	{name: "timestamp bad ISO 8601", query: "id=1&lat=60&lon=30&timestamp=2024-13-01T00:00:00Z", param: "timestamp"},
	{name: "timestamp an hour ahead", query: "id=1&lat=60&lon=30&timestamp=1751374800", param: "timestamp"},
	{
		// The legacy Android client's own ProtocolFormatterTest.kt line:
		// a fix at epoch 0.
		name:  "timestamp 0",
		query: "id=123456789012345&timestamp=0&lat=0.0&lon=0.0&speed=0.0&bearing=0.0&altitude=0.0&accuracy=0.0&batt=0.0&alarm=alert%20message",
		param: "timestamp",
	},
	{name: "body over MaxBody", body: "id=1&lat=60&lon=30&x=" + strings.Repeat("a", MaxBody), param: "body"},
	{name: "broken JSON", contentType: "application/json", body: `{"device_id":"1","location":{`, param: "body"},
	{name: "JSON not an object", contentType: "application/json", body: `[1]`, param: "body"},
	{name: "JSON without device_id", contentType: "application/json", body: `{"location":{"coords":{"latitude":1,"longitude":2}}}`, param: "device_id"},
	{name: "JSON device_id an object", contentType: "application/json", body: `{"device_id":{},"location":{"coords":{"latitude":1,"longitude":2}}}`, param: "device_id"},
	{name: "JSON without location", contentType: "application/json", body: `{"device_id":"1"}`, param: "location"},
	{name: "JSON location a string", contentType: "application/json", body: `{"device_id":"1","location":"here"}`, param: "location"},
	{name: "JSON no locations", contentType: "application/json", body: `{"device_id":"1","location":[]}`, param: "location"},
	{name: "JSON without coords", contentType: "application/json", body: `{"device_id":"1","location":{"timestamp":"2025-06-15T13:45:12.862Z"}}`, param: "location.coords"},
	{name: "JSON without longitude", contentType: "application/json", body: `{"device_id":"1","location":{"coords":{"latitude":1}}}`, param: "location.coords.longitude"},
	{name: "JSON latitude a string", contentType: "application/json", body: `{"device_id":"1","location":{"coords":{"latitude":"1","longitude":2}}}`, param: "location.coords.latitude"},
	{name: "JSON latitude beyond float64", contentType: "application/json", body: `{"device_id":"1","location":{"coords":{"latitude":1e400,"longitude":2}}}`, param: "location.coords.latitude"},
	{name: "JSON timestamp garbage", contentType: "application/json", body: `{"device_id":"1","location":{"timestamp":"yesterday","coords":{"latitude":1,"longitude":2}}}`, param: "location.timestamp"},
	{
		name:        "JSON batch, second latitude 91",
		contentType: "application/json",
		body:        `{"device_id":"1","location":[{"coords":{"latitude":1,"longitude":2}},{"coords":{"latitude":91,"longitude":2}}]}`,
		param:       "location[1].coords.latitude",
	},
}

// batchReport is one report of testdata/transistorsoft-batch-sync.json.
func batchReport(t string, lat, lon, accuracy, speed, heading, altitude, battery float64) Report {
	return Report{
		ID: "7F63E95C", Key: "k1",
		Position: position.Position{
			Time: at(t), Lat: lat, Lon: lon, Acc: accuracy, Course: heading, Alt: altitude, Batt: battery,
			Set: req | acc | crs | alt | batt,
		},
		Valid: true, Speed: speed, HasSpeed: true, JSON: true, HasCharging: true,
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.query, tc.contentType, tc.payload(t), now, tc.loc)
			if tc.param != "" {
				var e *Error
				if !errors.As(err, &e) || e.Param != tc.param || e.Msg == "" || got != nil {
					t.Fatalf("Decode = %+v, %v; want an *Error for %q", got, err, tc.param)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decode =\n%+v\nwant\n%+v", got, tc.want)
			}
			for _, r := range got {
				for _, u := range units {
					if p := r.WithSpeed(u); p.Validate(now) != nil {
						t.Errorf("WithSpeed(%s) = %+v: %v", u, p, p.Validate(now))
					}
				}
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	_, err := Decode("id=1&lat=91&lon=30", "", nil, now, nil)
	if got, want := err.Error(), "lat: 91 is not within [-90, 90]"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	_, err = Decode("id=1&lat=60&lon=30&timestamp="+strings.Repeat("\x01", 40), "", nil, now, nil)
	if got, want := err.Error(), `timestamp: not a timestamp: "`+strings.Repeat(`\x01`, 32)+`"...`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestSpeedUnits(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    float64
		want float64 // m/s
	}{
		{"knots", 10, 5.144444444444445},
		{"", 10, 5.144444444444445},
		{"mps", 10, 10},
		{"kmh", 36, 10},
		{"mph", 10, 4.4704},
	} {
		u, err := ParseSpeedUnit(tc.name)
		if err != nil {
			t.Fatalf("ParseSpeedUnit(%q): %v", tc.name, err)
		}
		if got := u.MetresPerSecond(tc.v); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s.MetresPerSecond(%v) = %v, want %v", u, tc.v, got, tc.want)
		}
		r := Report{Speed: tc.v, HasSpeed: true}
		if p := r.WithSpeed(u); !p.Has(position.FieldSpeed) || p.Speed != u.MetresPerSecond(tc.v) {
			t.Errorf("WithSpeed(%s) = %+v", u, p)
		}
		r.JSON = true
		if p := r.WithSpeed(u); p.Speed != tc.v {
			t.Errorf("WithSpeed(%s) of an m/s speed = %v, want %v", u, p.Speed, tc.v)
		}
	}
	if _, err := ParseSpeedUnit("furlongs"); err == nil || !strings.Contains(err.Error(), "knots, mps, kmh, mph") {
		t.Errorf("ParseSpeedUnit(furlongs) = %v", err)
	}
	if p := (&Report{}).WithSpeed(MPS); p.Has(position.FieldSpeed) {
		t.Errorf("WithSpeed of no speed = %+v", p)
	}
}

func BenchmarkDecodeQuery(b *testing.B) {
	q := decodeCases[0].query
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(q, "", nil, now, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeJSON(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "traccar-client-9.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode("", "application/json", body, now, nil); err != nil {
			b.Fatal(err)
		}
	}
}
