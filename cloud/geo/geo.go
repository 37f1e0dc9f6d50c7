// Package geo is track geometry: great-circle distances, bounding boxes, a
// track's statistics computed incrementally (Accumulator), and streaming
// Douglas–Peucker simplification with bounded memory (Simplifier).
//
// Coordinates are WGS 84 degrees on a sphere of the mean earth radius, which
// is within 0.5% of the ellipsoidal distance everywhere: plenty for track
// statistics.
package geo

import (
	"encoding/json"
	"fmt"
	"math"

	"trackgate/internal/position"
)

// EarthRadius is the mean earth radius (IUGG), in metres.
const EarthRadius = 6371008.8

// rad converts degrees to radians.
const rad = math.Pi / 180

// Haversine returns the great-circle distance in metres between two WGS 84
// points (mean earth radius 6371008.8 m).
func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	sinLat := math.Sin((lat2 - lat1) * rad / 2)
	sinLon := math.Sin((lon2 - lon1) * rad / 2)
	h := sinLat*sinLat + math.Cos(lat1*rad)*math.Cos(lat2*rad)*sinLon*sinLon
	return 2 * EarthRadius * math.Asin(math.Sqrt(min(h, 1)))
}

// Bounds is a bounding box in degrees. It does not wrap: a box across the
// antimeridian spans the whole longitude range between its extremes.
type Bounds struct {
	MinLat, MinLon, MaxLat, MaxLon float64
}

// extend grows b to include the point lat, lon.
func (b *Bounds) extend(lat, lon float64) {
	b.MinLat = min(b.MinLat, lat)
	b.MaxLat = max(b.MaxLat, lat)
	b.MinLon = min(b.MinLon, lon)
	b.MaxLon = max(b.MaxLon, lon)
}

// MarshalJSON encodes b as a GeoJSON bbox (RFC 7946 section 5):
// [minLon,minLat,maxLon,maxLat], each number in its shortest exact form.
func (b Bounds) MarshalJSON() ([]byte, error) {
	dst := make([]byte, 0, 96)
	dst = append(dst, '[')
	dst = position.AppendFloat(dst, b.MinLon)
	dst = append(dst, ',')
	dst = position.AppendFloat(dst, b.MinLat)
	dst = append(dst, ',')
	dst = position.AppendFloat(dst, b.MaxLon)
	dst = append(dst, ',')
	dst = position.AppendFloat(dst, b.MaxLat)
	return append(dst, ']'), nil
}

// UnmarshalJSON decodes a GeoJSON bbox of exactly four numbers,
// [minLon,minLat,maxLon,maxLat]. JSON null leaves b unchanged.
func (b *Bounds) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var v []float64
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("geo: bbox: %w", err)
	}
	if len(v) != 4 {
		return fmt.Errorf("geo: bbox: %d numbers, want 4 ([minLon,minLat,maxLon,maxLat])", len(v))
	}
	*b = Bounds{MinLon: v[0], MinLat: v[1], MaxLon: v[2], MaxLat: v[3]}
	return nil
}
