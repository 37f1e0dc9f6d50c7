package position

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// acceptCases are real payloads and the positions or errors they must yield.
// They also seed FuzzAccept.
var acceptCases = []struct {
	name    string
	payload string
	want    []Position
	errs    []string // Error() of each rejection, in order
}{
	{
		name:    "full object from the wire contract",
		payload: `{"time":"2026-11-21T10:00:00.1Z","lat":52.37,"lon":4.89,"alt":12.3,"speed":1.2,"course":270,"hdop":0.9,"sats":9,"fix":"3d","acc":4.5,"batt":87}`,
		want: []Position{{Time: ts("2026-11-21T10:00:00.1Z"), Lat: 52.37, Lon: 4.89, Alt: 12.3, Speed: 1.2, Course: 270,
			HDOP: 0.9, Sats: 9, Fix: Fix3D, Acc: 4.5, Batt: 87,
			Set: FieldTime | FieldLat | FieldLon | FieldAlt | FieldSpeed | FieldCourse | FieldHDOP | FieldSats | FieldFix | FieldAcc | FieldBatt}},
	},
	{
		name:    "required fields only, zero speed is kept, offset time in UTC",
		payload: " {\"lat\":0,\"lon\":-0.5,\"speed\":0,\"time\":\"2026-11-21T11:00:00+01:00\"}\r\n",
		want:    []Position{{Time: ts("2026-11-21T10:00:00Z"), Lon: -0.5, Set: FieldTime | FieldLat | FieldLon | FieldSpeed}},
	},
	{
		name:    "unknown fields of any shape are skipped, null is absent",
		payload: `{"_type":"x","tid":"JD","extra":{"a":[1,2,{"b":null}],"c":"\u00e9\"\\"},"ok":true,"alt":null,"time":"2026-11-21T09:59:59Z","lat":1e1,"lon":-2.5E-1}`,
		want:    []Position{{Time: ts("2026-11-21T09:59:59Z"), Lat: 10, Lon: -0.25, Set: FieldTime | FieldLat | FieldLon}},
	},
	{
		name:    "batch keeps good elements around bad ones",
		payload: `[{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2},{"time":"2026-11-21T09:00:01Z","lat":91,"lon":2},7,{"time":"2026-11-21T09:00:02Z","lat":"1","lon":2},{"time":"2026-11-21T09:00:03Z","lat":3,"lon":4,"sats":4}]`,
		want: []Position{
			{Time: ts("2026-11-21T09:00:00Z"), Lat: 1, Lon: 2, Set: Required},
			{Time: ts("2026-11-21T09:00:03Z"), Lat: 3, Lon: 4, Sats: 4, Set: Required | FieldSats},
		},
		errs: []string{"[1].lat: range: 91 is not within [-90, 90]", "[2]: type: element is not an object", "[3].lat: type: want a number"},
	},
	{name: "empty batch", payload: `[ ]`},
	{name: "not JSON", payload: `lat=1,lon=2`, errs: []string{"syntax: offset 0: want an object or an array of objects"}},
	{name: "truncated", payload: `{"time":"2026-11-21T09:00:00Z","lat":1`, errs: []string{"syntax: offset 38: want ',' or '}' in object"}},
	{name: "trailing data", payload: `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2}x`, errs: []string{"syntax: offset 47: data after the value"}},
	{name: "scalar", payload: `42`, errs: []string{"syntax: offset 0: want an object or an array of objects"}},
	{name: "empty", payload: ``, errs: []string{"syntax: offset 0: want an object or an array of objects"}},
	{name: "bad number", payload: `{"lat":01}`, errs: []string{"syntax: offset 8: want ',' or '}' in object"}},
	{name: "missing lon", payload: `{"time":"2026-11-21T09:00:00Z","lat":1}`, errs: []string{"lon: missing: required"}},
	{name: "missing time", payload: `{"lat":1,"lon":2}`, errs: []string{"time: missing: required"}},
	{name: "lat out of range", payload: `{"time":"2026-11-21T09:00:00Z","lat":91,"lon":2}`, errs: []string{"lat: range: 91 is not within [-90, 90]"}},
	{name: "lon out of range", payload: `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":-180.5}`, errs: []string{"lon: range: -180.5 is not within [-180, 180]"}},
	{name: "course 360", payload: `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2,"course":360}`, errs: []string{"course: range: 360 is not within [0, 360)"}},
	{name: "time far in the future", payload: `{"time":"2090-01-01T00:00:00Z","lat":1,"lon":2}`,
		errs: []string{"time: future: 2090-01-01T00:00:00Z is more than 5m0s ahead of 2026-11-21T10:00:00Z"}},
	{name: "time before 2000", payload: `{"time":"1999-12-31T23:59:59Z","lat":1,"lon":2}`,
		errs: []string{"time: past: 1999-12-31T23:59:59Z is before 2000-01-01T00:00:00Z"}},
	{name: "time as number", payload: `{"time":1700000000,"lat":1,"lon":2}`, errs: []string{"time: type: want an RFC 3339 string"}},
	{name: "time not RFC 3339", payload: `{"time":"21/11/2026","lat":1,"lon":2}`, errs: []string{`time: type: not an RFC 3339 time: "21/11/2026"`}},
	{name: "lat as string", payload: `{"time":"2026-11-21T09:00:00Z","lat":"52.1","lon":2}`, errs: []string{"lat: type: want a number"}},
	{name: "fractional sats", payload: `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2,"sats":9.5}`, errs: []string{"sats: type: not a whole number: 9.5"}},
	{name: "unknown fix", payload: `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2,"fix":"4d"}`, errs: []string{`fix: range: "4d" is not one of none, 2d, 3d, dgps, rtk, float, dr`}},
	{name: "huge number", payload: `{"time":"2026-11-21T09:00:00Z","lat":1e999,"lon":2}`, errs: []string{"lat: range: number out of range: 1e999"}},
	{name: "control character", payload: "{\"time\":\"2026\x01\",\"lat\":1,\"lon\":2}", errs: []string{"syntax: offset 13: control character in string"}},
	{name: "deep nesting", payload: `{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, errs: []string{"syntax: offset 36: nested too deeply"}},
}

func TestAccept(t *testing.T) {
	for _, tc := range acceptCases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := Accept([]byte(tc.payload), now, nil)
			if (len(got) != 0 || len(tc.want) != 0) && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("positions:\n got %+v\nwant %+v", got, tc.want)
			}
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !reflect.DeepEqual(msgs, tc.errs) {
				t.Errorf("errors:\n got %q\nwant %q", msgs, tc.errs)
			}
		})
	}
}

func TestAcceptTooLarge(t *testing.T) {
	big := `{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2,"pad":"` + strings.Repeat("x", MaxPayload) + `"}`
	got, errs := Accept([]byte(big), now, nil)
	if len(got) != 0 || len(errs) != 1 || errs[0].Reason != ReasonTooLarge {
		t.Fatalf("got %v, %v; want one too_large error", got, errs)
	}
}

func TestAcceptAppendsToDst(t *testing.T) {
	dst := []Position{{Lat: 5}}
	got, errs := Accept([]byte(`{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2}`), now, dst)
	if len(errs) != 0 || len(got) != 2 || got[0].Lat != 5 || got[1].Lat != 1 {
		t.Fatalf("got %+v, %v", got, errs)
	}
	got, _ = Accept([]byte(`[{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2}`), now, dst)
	if len(got) != 1 {
		t.Fatalf("a syntax error must not leave partial positions: %+v", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, tc := range acceptCases {
		for _, p := range tc.want {
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var back Position
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(back, p) {
				t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, back, p)
			}
		}
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	var p Position
	if err := json.Unmarshal([]byte(`{"lat":"x"}`), &p); err == nil || !strings.Contains(err.Error(), "lat: type") {
		t.Errorf("got %v, want a type error on lat", err)
	}
	if err := json.Unmarshal([]byte(`[{"lat":1}]`), &p); err == nil {
		t.Error("an array must not decode into one Position")
	}
}

func TestLineProtocol(t *testing.T) {
	p := acceptCases[0].want[0]
	got := string(p.AppendLineProtocol(nil, "van 1,a=b"))
	want := `position,device=van\ 1\,a\=b lat=52.37,lon=4.89,alt=12.3,speed=1.2,course=270,hdop=0.9,acc=4.5,batt=87,sats=9i,fix="3d" 1795255200100000000` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	min := Position{Time: ts("2026-11-21T09:00:00Z"), Lat: 1e-7, Lon: -2, Set: Required}
	if got, want := string(min.AppendLineProtocol(nil, "d")), "position,device=d lat=1e-07,lon=-2 1795251600000000000\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestFloatFieldIndex: the switch names every field of floatFields at its
// index.
func TestFloatFieldIndex(t *testing.T) {
	for i, f := range floatFields {
		if got := floatFieldIndex([]byte(f.name)); got != i {
			t.Errorf("floatFieldIndex(%q) = %d, want %d", f.name, got, i)
		}
	}
	if got := floatFieldIndex([]byte("latitude")); got != -1 {
		t.Errorf("an unknown key gives %d", got)
	}
}

// TestExactFloat: the fast path gives what strconv.ParseFloat gives, and
// leaves the numbers it cannot convert exactly to it.
func TestExactFloat(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"0", true}, {"-0", true}, {"52.3702157", true}, {"-4.8951679", true}, {"1234567.25", true},
		{"0.1", true}, {"9007199254740991", true}, {"9007199254740992", false},
		{"0.0000000000000000000001", true}, {"0.00000000000000000000001", false},
		{"1e5", false}, {"1E-3", false}, {"12345678901234567890", false}, {"-", false}, {".", false}, {"", false},
	}
	for _, tt := range tests {
		v, ok := exactFloat([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("exactFloat(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			continue
		}
		want, _ := strconv.ParseFloat(tt.in, 64)
		if ok && (v != want || math.Signbit(v) != math.Signbit(want)) {
			t.Errorf("exactFloat(%q) = %v, ParseFloat %v", tt.in, v, want)
		}
	}
}

// FuzzExactFloat: wherever the fast path answers, it agrees with
// strconv.ParseFloat bit for bit.
func FuzzExactFloat(f *testing.F) {
	for _, s := range []string{"52.3702157", "-0.5", "1e5", "9007199254740991.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := exactFloat([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(v) != math.Float64bits(want) {
			t.Fatalf("exactFloat(%q) = %v, ParseFloat %v, %v", s, v, want, err)
		}
	})
}
