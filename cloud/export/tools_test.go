package export

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"trackgate/internal/position"
)

// The exports are read back here by the tools people open them with:
// GPSBabel for GPX, GDAL's GeoJSON driver for GeoJSON (`make tools` installs
// both).

// lookTool returns the path of a reader, skipping the test without it.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (make tools): %v", name, err)
	}
	return path
}

// run runs a tool and returns its standard output, failing on an error or
// on anything written to standard error.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// writeExport exports ps as f to a file and returns its name.
func writeExport(t *testing.T, f Format, track Track, ps []position.Position) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "track."+f.Extension())
	if err := os.WriteFile(name, encode(t, f, track, ps), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// toolCase is a track given to the external readers.
type toolCase struct {
	name   string
	points []position.Position
}

// toolCases are the tracks given to the external readers: every geometry,
// every field, and many points with fractional seconds.
func toolCases() []toolCase {
	return []toolCase{
		{"no points", nil},
		{"one point", samplePoints()[:1]},
		{"two points", samplePoints()[:2]},
		{"sample points", samplePoints()},
		{"random points", randomPoints(2000, 3)},
	}
}

// TestGPXGPSBabel reads the GPX export with GPSBabel, which writes it again
// as GPX (coordinates to 9 decimals, elevation to 3, times to the
// millisecond): the same track, name and points must come out. (GPSBabel
// leaves out an empty trkseg.)
func TestGPXGPSBabel(t *testing.T) {
	gpsbabel := lookTool(t, "gpsbabel")
	for _, tc := range toolCases() {
		t.Run(tc.name, func(t *testing.T) {
			track := testTrack(tc.points)
			file := writeExport(t, GPX, track, tc.points)
			doc, got := parseGPX(t, run(t, gpsbabel, "-i", "gpx", "-f", file, "-o", "gpx", "-F", "-"))
			trk := doc.Tracks[0]
			if trk.Name == nil || *trk.Name != track.Name || trk.Src == nil || *trk.Src != track.Device {
				t.Errorf("GPSBabel read the name %v and src %v, want %q and %q", trk.Name, trk.Src, track.Name, track.Device)
			}
			if len(got) != len(tc.points) {
				t.Fatalf("GPSBabel read %d points, want %d", len(got), len(tc.points))
			}
			for i, p := range tc.points {
				g := got[i]
				if math.Abs(g.Lat-p.Lat) > 5e-10 || math.Abs(g.Lon-p.Lon) > 5e-10 || !g.Time.Equal(p.Time) ||
					g.Has(position.FieldAlt) != p.Has(position.FieldAlt) || math.Abs(g.Alt-p.Alt) > 5e-4 {
					t.Errorf("point %d: GPSBabel read %v %v %v alt %v (%v), want %v %v %v alt %v (%v)", i,
						g.Lat, g.Lon, g.Time, g.Alt, g.Has(position.FieldAlt), p.Lat, p.Lon, p.Time, p.Alt, p.Has(position.FieldAlt))
				}
				want := gpxView(p)
				if want.Sats == 0 {
					want.Set &^= position.FieldSats // GPSBabel takes 0 satellites for unknown
				}
				if g.Has(position.FieldFix) != want.Has(position.FieldFix) || g.Fix != want.Fix ||
					g.Has(position.FieldSats) != want.Has(position.FieldSats) || g.Sats != want.Sats {
					t.Errorf("point %d: GPSBabel read fix %q sats %d, want %q %d", i, g.Fix, g.Sats, want.Fix, want.Sats)
				}
			}
		})
	}
}

// ogrGeometry is a geometry GDAL wrote.
type ogrGeometry struct {
	Type        string          `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
}

// ogrFeatures is GDAL's GeoJSON output, parsed.
type ogrFeatures struct {
	Features []struct {
		ID         string         `json:"id"`
		Properties map[string]any `json:"properties"`
		Geometry   *ogrGeometry   `json:"geometry"`
	} `json:"features"`
}

// TestGeoJSONGDAL reads the GeoJSON export with GDAL's GeoJSON driver:
// ogrinfo sees one feature of the right geometry, and ogr2ogr, writing it
// again with 17 significant digits, gives back exactly the coordinates
// exported (GDAL makes a LineString 3D when any position has an altitude,
// the others at 0).
func TestGeoJSONGDAL(t *testing.T) {
	ogrinfo, ogr2ogr := lookTool(t, "ogrinfo"), lookTool(t, "ogr2ogr")
	for _, tc := range toolCases() {
		t.Run(tc.name, func(t *testing.T) {
			track := testTrack(tc.points)
			file := writeExport(t, GeoJSON, track, tc.points)
			has3D := false
			for i := range tc.points {
				has3D = has3D || tc.points[i].Has(position.FieldAlt)
			}

			geometry := map[int]string{0: "Unknown (any)", 1: "Point"}[len(tc.points)]
			if geometry == "" {
				geometry = "Line String"
			}
			if has3D {
				geometry = "3D " + geometry
			}
			info := string(run(t, ogrinfo, "-ro", "-al", "-so", file))
			for _, want := range []string{"using driver `GeoJSON' successful", "Geometry: " + geometry + "\n", "Feature Count: 1\n",
				"point_count: Integer", "started: DateTime"} {
				if !strings.Contains(info, want) {
					t.Errorf("ogrinfo does not say %q:\n%s", want, info)
				}
			}

			var fc ogrFeatures
			out := run(t, ogr2ogr, "-f", "GeoJSON", "/vsistdout/", file, "-lco", "SIGNIFICANT_FIGURES=17")
			if err := json.Unmarshal(out, &fc); err != nil || len(fc.Features) != 1 {
				t.Fatalf("ogr2ogr wrote %d features, %v:\n%s", len(fc.Features), err, out)
			}
			f := fc.Features[0]
			if f.ID != track.ID || f.Properties["name"] != track.Name || f.Properties["device"] != track.Device ||
				f.Properties["point_count"] != float64(len(tc.points)) {
				t.Errorf("GDAL read id %q and properties %v", f.ID, f.Properties)
			}
			if started, _ := f.Properties["started"].(string); !strings.HasPrefix(started, track.Started.UTC().Format("2006-01-02T15:04:05")) {
				t.Errorf("GDAL read started %q, want %v", started, track.Started)
			}

			want := make([][]float64, len(tc.points))
			for i := range tc.points {
				p := &tc.points[i]
				want[i] = []float64{p.Lon, p.Lat}
				if has3D {
					want[i] = append(want[i], p.Alt) // 0 when absent, as GDAL has it
				}
			}
			checkOGRGeometry(t, f.Geometry, want)
		})
	}
}

// checkOGRGeometry compares the geometry GDAL wrote with the positions
// exported, exactly: none, a Point, or a LineString.
func checkOGRGeometry(t *testing.T, g *ogrGeometry, want [][]float64) {
	t.Helper()
	if len(want) == 0 {
		if g != nil {
			t.Fatalf("GDAL read a %s geometry, want none", g.Type)
		}
		return
	}
	typ, raw := "LineString", []byte(nil)
	if len(want) == 1 {
		typ = "Point"
	}
	if g == nil || g.Type != typ {
		t.Fatalf("GDAL read geometry %+v, want a %s", g, typ)
	}
	raw = g.Coordinates
	var got [][]float64
	if typ == "Point" {
		got = [][]float64{nil}
		if err := json.Unmarshal(raw, &got[0]); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("GDAL read %d positions, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("position %d: GDAL read %v, want %v", i, got[i], want[i])
		}
	}
}
