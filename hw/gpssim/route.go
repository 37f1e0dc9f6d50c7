package gpssim

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Point is a point of a route.
type Point struct {
	Lat, Lon float64   // degrees
	Alt      float64   // metres above mean sea level
	Time     time.Time // zero when the route has no times
}

// gpxPoint is a GPX trkpt or rtept.
type gpxPoint struct {
	Lat  float64 `xml:"lat,attr"`
	Lon  float64 `xml:"lon,attr"`
	Ele  float64 `xml:"ele"`
	Time string  `xml:"time"`
}

// LoadGPX reads the track points (trk/trkseg/trkpt) of a GPX document, or
// its route points (rte/rtept) when it has no track, with their elevation
// and time.
func LoadGPX(r io.Reader) ([]Point, error) {
	var doc struct {
		Trk []struct {
			Seg []struct {
				Pts []gpxPoint `xml:"trkpt"`
			} `xml:"trkseg"`
		} `xml:"trk"`
		Rte []struct {
			Pts []gpxPoint `xml:"rtept"`
		} `xml:"rte"`
	}
	if err := xml.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("gpx: %w", err)
	}
	var gpts []gpxPoint
	for _, trk := range doc.Trk {
		for _, seg := range trk.Seg {
			gpts = append(gpts, seg.Pts...)
		}
	}
	if len(gpts) == 0 {
		for _, rte := range doc.Rte {
			gpts = append(gpts, rte.Pts...)
		}
	}
	if len(gpts) == 0 {
		return nil, errors.New("gpx: no trkpt or rtept")
	}
	pts := make([]Point, len(gpts))
	for i, g := range gpts {
		p := Point{Lat: g.Lat, Lon: g.Lon, Alt: g.Ele}
		if g.Time != "" {
			t, err := time.Parse(time.RFC3339Nano, g.Time)
			if err != nil {
				return nil, fmt.Errorf("gpx: point %d: %w", i+1, err)
			}
			p.Time = t.UTC()
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("gpx: point %d: %w", i+1, err)
		}
		pts[i] = p
	}
	return pts, nil
}

func (p Point) validate() error {
	if !(p.Lat >= -90 && p.Lat <= 90) || !(p.Lon >= -180 && p.Lon <= 180) {
		return fmt.Errorf("position %v, %v out of range", p.Lat, p.Lon)
	}
	if math.IsNaN(p.Alt) || math.IsInf(p.Alt, 0) {
		return fmt.Errorf("altitude %v", p.Alt)
	}
	return nil
}

const earthRadius = 6371008.8 // mean Earth radius, metres

// distance returns the great-circle distance from a to b in metres.
func distance(a, b Point) float64 {
	rad := math.Pi / 180
	dlat, dlon := (b.Lat-a.Lat)*rad, (b.Lon-a.Lon)*rad
	h := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * earthRadius * math.Asin(math.Sqrt(min(h, 1)))
}

// bearing returns the initial course from a to b, degrees true.
func bearing(a, b Point) float64 {
	rad := math.Pi / 180
	dlon := (b.Lon - a.Lon) * rad
	y := math.Sin(dlon) * math.Cos(b.Lat*rad)
	x := math.Cos(a.Lat*rad)*math.Sin(b.Lat*rad) - math.Sin(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Cos(dlon)
	return math.Mod(math.Atan2(y, x)/rad+360, 360)
}

// track is a route being driven, looping: along its own timing when every
// point has a time, else at a steady speed.
type track struct {
	pts   []Point
	dist  []float64 // distance from pts[0] to pts[i] along the route, metres
	timed bool
	speed float64 // m/s, when not timed
}

func newTrack(pts []Point, speed float64) (*track, error) {
	if len(pts) == 0 {
		return nil, errors.New("route: no points")
	}
	tr := &track{pts: pts, dist: make([]float64, len(pts)), timed: true, speed: speed}
	untimed := 0
	for i, p := range pts {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("route: point %d: %w", i+1, err)
		}
		if p.Time.IsZero() {
			untimed++
		}
		if i > 0 {
			tr.dist[i] = tr.dist[i-1] + distance(pts[i-1], p)
			if !p.Time.IsZero() && p.Time.Before(pts[i-1].Time) {
				return nil, fmt.Errorf("route: point %d: time %v before the previous point's", i+1, p.Time)
			}
		}
	}
	switch {
	case untimed == len(pts):
		tr.timed = false
	case untimed > 0:
		return nil, fmt.Errorf("route: %d of %d points have no time", untimed, len(pts))
	case !pts[len(pts)-1].Time.After(pts[0].Time):
		return nil, errors.New("route: its times span no time")
	}
	return tr, nil
}

// at returns where the route is after driving it for elapsed, with the
// speed (m/s) and course there.
func (tr *track) at(elapsed time.Duration) (p Point, speed, course float64) {
	last := len(tr.pts) - 1
	if tr.timed {
		span := tr.pts[last].Time.Sub(tr.pts[0].Time)
		t := tr.pts[0].Time.Add(elapsed % span)
		i := sort.Search(last, func(i int) bool { return tr.pts[i+1].Time.After(t) })
		a, b := tr.pts[i], tr.pts[i+1]
		frac := float64(t.Sub(a.Time)) / float64(b.Time.Sub(a.Time))
		return lerp(a, b, frac), (tr.dist[i+1] - tr.dist[i]) / b.Time.Sub(a.Time).Seconds(), bearing(a, b)
	}
	if tr.dist[last] == 0 {
		return tr.pts[0], 0, 0
	}
	d := math.Mod(tr.speed*elapsed.Seconds(), tr.dist[last])
	// The first segment that ends beyond d starts at or before it, and so
	// has a length.
	i := sort.Search(last, func(i int) bool { return tr.dist[i+1] > d })
	a, b := tr.pts[i], tr.pts[i+1]
	frac := (d - tr.dist[i]) / (tr.dist[i+1] - tr.dist[i])
	return lerp(a, b, frac), tr.speed, bearing(a, b)
}

func lerp(a, b Point, frac float64) Point {
	return Point{
		Lat: a.Lat + (b.Lat-a.Lat)*frac,
		Lon: a.Lon + (b.Lon-a.Lon)*frac,
		Alt: a.Alt + (b.Alt-a.Alt)*frac,
	}
}

// generatedLoop returns a closed loop that starts and ends at lat, lon and
// takes about five minutes to drive at speed: a circle whose radius swells
// and shrinks, for gentle turns, with the altitude rolling by a few metres.
// rng chooses its shape and direction.
func generatedLoop(lat, lon, speed float64, rng *rand.Rand) []Point {
	const n = 360
	radius := max(speed*300/(2*math.Pi), 200)
	a2, a3 := 0.1+0.1*rng.Float64(), 0.05*rng.Float64()
	p2, p3, pAlt := 2*math.Pi*rng.Float64(), 2*math.Pi*rng.Float64(), 2*math.Pi*rng.Float64()
	dir := 1.0
	if rng.IntN(2) == 0 {
		dir = -1
	}
	offset := func(th float64) (east, north float64) {
		r := radius * (1 + a2*math.Sin(2*th+p2) + a3*math.Sin(3*th+p3))
		return r * math.Cos(dir*th), r * math.Sin(dir*th)
	}
	e0, n0 := offset(0)
	pts := make([]Point, n+1)
	for i := range pts {
		th := 2 * math.Pi * float64(i%n) / n
		e, no := offset(th)
		pts[i] = Point{
			Lat: lat + (no-n0)/earthRadius*180/math.Pi,
			Lon: lon + (e-e0)/(earthRadius*math.Cos(lat*math.Pi/180))*180/math.Pi,
			Alt: 12 + 6*math.Sin(th+pAlt) - 6*math.Sin(pAlt),
		}
	}
	return pts
}
