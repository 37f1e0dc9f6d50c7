package owntracks

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// kmh is one km/h in m/s, as a variable so that the product is rounded as at run time.
var kmh = 1 / 3.6

const fields = position.FieldTime | position.FieldLat | position.FieldLon

// decodeCases are request bodies as the apps send them in HTTP mode.
var decodeCases = []struct {
	name string
	body string
	want []position.Position
	err  string
}{
	{
		// iOS app 17, HTTP mode: it adds the topic field.
		name: "iOS location",
		body: `{"_type":"location","acc":5,"alt":34,"batt":87,"bs":1,"conn":"m","lat":52.52,"lon":13.405,"m":1,"t":"u","tid":"JD","topic":"owntracks/jane/phone","tst":1763726400,"vac":3,"vel":44,"cog":90}`,
		want: []position.Position{{Time: time.Unix(1763726400, 0).UTC(), Lat: 52.52, Lon: 13.405, Alt: 34, Acc: 5, Batt: 87, Speed: 44 * kmh, Course: 90,
			Set: fields | position.FieldAlt | position.FieldAcc | position.FieldBatt | position.FieldSpeed | position.FieldCourse}},
	},
	{
		// Android app 2.5: decimals, created_at and _id.
		name: "Android location",
		body: `{"_type":"location","_id":"b2f3c9a1","acc":12,"alt":0,"batt":55,"bs":2,"conn":"w","created_at":1763726405,"lat":-33.8688,"lon":151.2093,"t":"p","tid":"a1","tst":1763726401,"vac":0,"vel":0}`,
		want: []position.Position{{Time: time.Unix(1763726401, 0).UTC(), Lat: -33.8688, Lon: 151.2093, Acc: 12, Batt: 55, Alt: 0, Speed: 0,
			Set: fields | position.FieldAcc | position.FieldBatt | position.FieldAlt | position.FieldSpeed}},
	},
	{name: "empty body of a deleted friend", body: "", want: nil},
	{name: "lwt is taken and ignored", body: `{"_type":"lwt","tst":1763726400}`, want: nil},
	{name: "transition is taken and ignored", body: `{"_type":"transition","event":"enter","desc":"Home","wtst":1763720000,"tst":1763726400,"lat":52.52,"lon":13.405,"acc":10,"t":"c","tid":"JD"}`, want: nil},
	{
		name: "an array of queued messages",
		body: `[{"_type":"location","lat":1,"lon":2,"tst":1763726400,"tid":"JD"},{"_type":"waypoint","desc":"Home","lat":1,"lon":2,"rad":50,"tst":1763720000}]`,
		want: []position.Position{{Time: time.Unix(1763726400, 0).UTC(), Lat: 1, Lon: 2, Set: fields}},
	},
	{name: "encrypted", body: `{"_type":"encrypted","data":"c2VjcmV0"}`, err: "encrypted"},
	{name: "not JSON", body: `lat=1&lon=2`, err: "owntracks"},
	{name: "no _type", body: `{"lat":1,"lon":2,"tst":1763726400}`, err: "no _type"},
	{name: "latitude out of range", body: `{"_type":"location","lat":91,"lon":2,"tst":1763726400}`, err: "lat"},
	{name: "no tst", body: `{"_type":"location","lat":1,"lon":2}`, err: "tst"},
	{name: "a bad message in an array", body: `[{"_type":"location","lat":1,"lon":2,"tst":1763726400},{"_type":"location"}]`, err: "message 1"},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.body), now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Decode = %+v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decode =\n%+v\nwant\n%+v", got, tc.want)
			}
			for _, p := range got {
				if err := p.Validate(now); err != nil {
					t.Errorf("position %+v: %v", p, err)
				}
			}
		})
	}
}
