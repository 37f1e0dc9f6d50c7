package importer

import (
	"strings"
	"testing"

	"trackgate/internal/position"
)

// geojsonPoints is a phone logger's FeatureCollection of Points, the
// members in any order, with a feature without geometry and a polygon.
const geojsonPoints = `{
  "type": "FeatureCollection",
  "name": "phone log",
  "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
  "features": [
    {
      "type": "Feature",
      "id": 1,
      "geometry": {"type": "Point", "coordinates": [4.895168, 52.370216, 2.5]},
      "properties": {"time": "2024-05-01T08:00:00Z", "speed": 5.5, "course": 123.4, "hdop": 0.9, "sats": 8, "acc": 4, "batt": 87,
        "name": "start \"here\"", "tags": {"a": [1, {"b": null}]}, "visible": true}
    },
    {
      "type": "Feature",
      "properties": {"timestamp": 1714550401500, "elevation": "2.7", "bearing": 360, "accuracy": 3.5, "battery": 86, "satellites": "7"},
      "geometry": {"coordinates": [4.8953, 52.3703], "type": "Point"}
    },
    {
      "properties": {"timestamp": "2024-05-01T08:00:02", "Time": "2024-05-01T10:00:02+02:00", "ele": 3, "fix": "3D", "hdop": null, "speed": "",
        "pdop": 1.5, "vdop": 1.25, "geoid": 46.5},
      "geometry": {"type": "Point", "coordinates": [4.8954, 52.3704, 4, 99]},
      "type": "Feature"
    },
    {"type": "Feature", "properties": {"name": "no place"}, "geometry": null},
    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}
  ]
}
`

// geojsonLine is a GPX track converted to GeoJSON: a LineString and the
// times of its positions in coordTimes.
const geojsonLine = `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"ride","time":"2024-05-01T08:00:00Z","coordTimes":["2024-05-01T08:00:00Z","2024-05-01T08:00:01Z","2024-05-01T08:00:02.500Z"]},"geometry":{"type":"LineString","coordinates":[[7.5,46.5,1500.25],[7.50002,46.50001,1500.5],[7.5001,46.5001]]}}]}`

// geojsonMulti is a two-segment track: a MultiLineString and an array of
// arrays of times, pretty-printed.
const geojsonMulti = `{
  "type": "Feature",
  "geometry": {
    "type": "MultiLineString",
    "coordinates": [
      [
        [7.5, 46.5],
        [7.6, 46.6]
      ],
      [
        [7.7, 46.7, 12]
      ]
    ]
  },
  "properties": {
    "coordTimes": [
      ["2024-05-01T08:00:00Z", "2024-05-01T08:00:01Z"],
      ["2024-05-01T08:10:00Z"]
    ]
  }
}
`

// geojsonReadCases are GeoJSON files that read, with what they hold.
func geojsonReadCases() []readCase {
	line := []position.Position{
		{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Alt: 1500.25, Set: R | position.FieldAlt},
		{Time: ts("2024-05-01T08:00:01Z"), Lat: 46.50001, Lon: 7.50002, Alt: 1500.5, Set: R | position.FieldAlt},
		{Time: ts("2024-05-01T08:00:02.5Z"), Lat: 46.5001, Lon: 7.5001, Set: R},
	}
	return []readCase{
		{name: "Points", in: geojsonPoints, skipped: 2, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 52.370216, Lon: 4.895168, Alt: 2.5, Speed: 5.5, Course: 123.4, HDOP: 0.9, Sats: 8, Acc: 4, Batt: 87,
				Set: R | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldHDOP | position.FieldSats | position.FieldAcc | position.FieldBatt},
			{Time: ts("2024-05-01T08:00:01.5Z"), Lat: 52.3703, Lon: 4.8953, Alt: 2.7, Course: 0, Acc: 3.5, Batt: 86, Sats: 7,
				Set: R | position.FieldAlt | position.FieldCourse | position.FieldAcc | position.FieldBatt | position.FieldSats},
			{Time: ts("2024-05-01T08:00:02Z"), Lat: 52.3704, Lon: 4.8954, Alt: 4, Fix: position.Fix3D, PDOP: 1.5, VDOP: 1.25, Geoid: 46.5,
				Set: R | position.FieldAlt | position.FieldFix | position.FieldPDOP | position.FieldVDOP | position.FieldGeoid},
		}},
		{name: "LineString with coordTimes", in: geojsonLine, want: line},
		{name: "MultiLineString with nested coordTimes", in: geojsonMulti, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Set: R},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: 46.6, Lon: 7.6, Set: R},
			{Time: ts("2024-05-01T08:10:00Z"), Lat: 46.7, Lon: 7.7, Alt: 12, Set: R | position.FieldAlt},
		}},
		{name: "MultiLineString with flat times", in: `{"type":"Feature","properties":{"times":[1714550400,1714550401000]},
			"geometry":{"type":"MultiLineString","coordinates":[[[7.5,46.5]],[[7.6,46.6]]]}}`, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Set: R},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: 46.6, Lon: 7.6, Set: R},
		}},
		{name: "MultiPoint with coordinateProperties.times", in: `{"type":"Feature","geometry":{"type":"MultiPoint","coordinates":[[7.5,46.5,1500.25],[7.50002,46.50001,1500.5],[7.5001,46.5001]]},
			"properties":{"coordinateProperties":{"heart":[1,2,3],"times":["2024-05-01T08:00:00Z","2024-05-01T08:00:01Z","2024-05-01T08:00:02.5Z"]}}}`, want: line},
		{name: "newline-delimited features", in: `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"time":"2024-05-01T08:00:00Z"}}
{"type":"Feature","geometry":{"type":"Point","coordinates":[7.6,46.6]},"properties":{"time":"2024-05-01T08:00:01Z"}}
`, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Set: R},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: 46.6, Lon: 7.6, Set: R},
		}},
		{name: "array of features", in: "\ufeff[" + `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"time":"2024-05-01T08:00:00Z"}}]`,
			want: []position.Position{{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Set: R}}},
		{name: "JSON export", in: `{"track":{"id":"t1","name":"a","summary":{"points":2}},"points":[
{"time":"2024-05-01T08:00:00Z","lat":46.5,"lon":7.5,"alt":1,"fix":"rtk","sats":20},
{"time":"2024-05-01T08:00:01.5Z","lat":46.6,"lon":7.6,"acc":2.5}]}`, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Alt: 1, Fix: position.FixRTK, Sats: 20,
				Set: R | position.FieldAlt | position.FieldFix | position.FieldSats},
			{Time: ts("2024-05-01T08:00:01.5Z"), Lat: 46.6, Lon: 7.6, Acc: 2.5, Set: R | position.FieldAcc},
		}},
		{name: "escaped strings", in: `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"\u0074ime":"2024-05-01T08:00:00\u005A","n\"ame":"\\"}}`,
			want: []position.Position{{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Set: R}}},
		{name: "empty collection", in: `{"type":"FeatureCollection","features":[]}`},
		{name: "geometry collection", in: `{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]}]}`, skipped: 1},
	}
}

func TestReadGeoJSON(t *testing.T) { runReadCases(t, GeoJSON, geojsonReadCases()) }

// geojsonErrorCases are GeoJSON files that fail, with where and why.
func geojsonErrorCases() []errorCase {
	fc := func(features ...string) string {
		return "{\n\"type\": \"FeatureCollection\",\n\"features\": [\n" + strings.Join(features, ",\n") + "\n]\n}\n"
	}
	pt := `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"time":"2024-05-01T08:00:00Z"}}`
	return []errorCase{
		{"Point without time", fc(pt, pt, `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"name":"x"}}`),
			6, "Point without properties.time or properties.timestamp: trackgate stores positions by their time"},
		{"LineString without times", fc(`{"type":"Feature","geometry":{"type":"LineString","coordinates":[[7.5,46.5],[7.6,46.6]]},"properties":{}}`),
			4, "LineString without properties.coordTimes"},
		{"bare geometry", "\n" + `{"type":"LineString","coordinates":[[7.5,46.5],[7.6,46.6]]}`, 2, "LineString without properties.coordTimes"},
		{"syntax error", fc(pt, `{"type":"Feature" "geometry":null}`), 5, "JSON syntax error: invalid character '\"' after object key:value pair"},
		{"syntax error in a value", fc(pt, pt, `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"time":tru}}`),
			6, "JSON syntax error: invalid character '}' in literal true"},
		{"syntax error in a pretty value", "{\"type\":\"Feature\",\"properties\":\n{\n\"a\": 1,\n\"b\": 2 3\n}}", 4, "JSON syntax error"},
		{"bad number", "[\n{\"a\":1.2.3}]", 2, "JSON syntax error"},
		{"truncated", fc(pt, pt)[:150], 4, "unexpected end of file"},
		{"truncated after a feature", fc(pt, pt)[:167], 5, "unexpected end of file"},
		{"truncated value", "{\"type\":\"Feature\",\"properties\":\n{\"a\":[1,\n2", 3, "unexpected end of file"},
		{"bad property", fc(pt, `{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{
"time":"2024-05-01T08:00:00Z",
"speed":"fast"}}`), 7, `properties.speed: "fast" is not a number`},
		{"property of the wrong type", fc(`{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"time":["2024-05-01T08:00:00Z"]}}`),
			4, `properties.time: ["2024-05-01T08:00:00Z"] is not a string or a number`},
		{"bad time", fc(`{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,46.5]},"properties":{"timestamp":"01/05/2024"}}`),
			4, `properties.timestamp: "01/05/2024" is not an RFC 3339 time`},
		{"bad coordTimes entry", `{"type":"Feature","geometry":{"type":"LineString","coordinates":[[7.5,46.5],[7.6,46.6]]},"properties":{"coordTimes":[
"2024-05-01T08:00:00Z",
"soon"]}}`, 3, `properties.coordTimes[1]: "soon" is not an RFC 3339 time`},
		{"null time", `{"type":"Feature","geometry":{"type":"LineString","coordinates":[
[7.5,46.5],
[7.6,46.6]]},"properties":{"coordTimes":["2024-05-01T08:00:00Z",null]}}`, 3, "LineString position 1 has no time in properties.coordTimes"},
		{"fewer times", `{"type":"Feature","geometry":{"type":"LineString","coordinates":[
[7.5,46.5],
[7.6,46.6]]},"properties":{"times":["2024-05-01T08:00:00Z"]}}`, 3, "LineString has more positions than properties.times has times (1)"},
		{"more times", "\n" + `{"type":"Feature","geometry":{"type":"LineString","coordinates":[[7.5,46.5]]},"properties":{"coordTimes":["2024-05-01T08:00:00Z","2024-05-01T08:00:01Z"]}}`,
			2, "LineString has 1 positions but properties.coordTimes has 2 times"},
		{"line lengths differ", `{"type":"Feature","geometry":{"type":"MultiLineString","coordinates":[[[7.5,46.5],[7.6,46.6]],
[[7.7,46.7]]]},"properties":{"coordTimes":[["2024-05-01T08:00:00Z"],["2024-05-01T08:00:01Z","2024-05-01T08:00:02Z"]]}}`,
			1, "MultiLineString: line 0 has 2 positions but properties.coordTimes has not as many times for it"},
		{"mixed times", `{"type":"Feature","geometry":{"type":"LineString","coordinates":[[7.5,46.5]]},"properties":{"coordTimes":["2024-05-01T08:00:00Z",["2024-05-01T08:00:00Z"]]}}`,
			1, "mixes times and arrays of times"},
		{"position out of range", `{"type":"Feature","geometry":{"type":"LineString","coordinates":[
[7.5,46.5],
[7.6,96.6]]},"properties":{"coordTimes":["2024-05-01T08:00:00Z","2024-05-01T08:00:01Z"]}}`, 3, "LineString: lat: range: 96.6 is not within [-90, 90]"},
		{"short position", fc(`{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5]},"properties":{"time":"2024-05-01T08:00:00Z"}}`),
			4, "Point: a position has fewer than two numbers"},
		{"position of strings", fc(`{"type":"Feature","geometry":{"type":"Point","coordinates":["7.5","46.5"]},"properties":{"time":"2024-05-01T08:00:00Z"}}`),
			4, "Point: a position holds something other than numbers"},
		{"huge number", fc(`{"type":"Feature","geometry":{"type":"Point","coordinates":[7.5,1e999]},"properties":{"time":"2024-05-01T08:00:00Z"}}`),
			4, "1e999 is out of range"},
		{"unknown geometry", fc(pt, `{"type":"Feature","geometry":{"type":"Circle","coordinates":[7.5,46.5]}}`), 5, `unknown geometry type "Circle"`},
		{"geometry without type", fc(`{"type":"Feature","geometry":{"coordinates":[7.5,46.5]}}`), 4, "geometry without a type"},
		{"geometry without coordinates", fc(`{"type":"Feature","geometry":{"type":"Point"}}`), 4, "Point without coordinates"},
		{"feature without geometry", fc(`{"type":"Feature","properties":{}}`), 4, "neither a FeatureCollection, a Feature nor a geometry"},
		{"features not an array", "{\n\"features\": {}}", 2, `"features" is an object, not an array`},
		{"feature not an object", fc("1"), 4, "a feature is a number, not an object"},
		{"geometry not an object", fc(`{"geometry":[]}`), 4, "geometry is an array, not an object"},
		{"type not a string", fc(`{"type":1}`), 4, `"type" is a number, not a string`},
		{"properties not an object", fc(`{"properties":[]}`), 4, "properties is not an object"},
		{"string document", "\n\"hello\"", 2, "not GeoJSON: the document is a string"},
		{"empty", " \n", 1, "empty file"},
		{"export point without time", "{\"points\":[\n{\"lat\":1,\"lon\":2}]}", 2, "point without time"},
		{"export point of the wrong type", "{\"points\":[\n{\"time\":\"2024-05-01T08:00:00Z\",\"lat\":\"1\",\"lon\":2}]}", 2, "point: [0].lat: type: want a number"},
		{"export point in the future", "{\"points\":[{\"time\":\"2024-05-01T08:00:00Z\",\"lat\":1,\"lon\":2},\n{\"time\":\"2027-05-01T08:00:00Z\",\"lat\":1,\"lon\":2}]}", 2, "point: time: future"},
		{"binary", "\x00\x01", 1, "JSON syntax error"},
		{"deep", "{\"properties\":\n" + strings.Repeat("[", 20000), 2, "JSON syntax error: invalid character '[' exceeded max depth"},
	}
}

func TestGeoJSONErrors(t *testing.T) { runErrorCases(t, GeoJSON, geojsonErrorCases()) }
