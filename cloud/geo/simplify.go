package geo

import (
	"math"

	"trackgate/internal/position"
)

// DefaultWindow is the window of a Simplifier made with a window of 2 or less.
const DefaultWindow = 10000

// Simplifier thins a stream of points with the Douglas–Peucker algorithm at
// a tolerance in metres (perpendicular distance measured in a local
// equirectangular projection around the segment), working on windows of at
// most Window points so memory stays bounded on any track length: each
// window's last kept point starts the next window. The first and last
// points are always kept. It copies the points it holds.
//
// The distance of a point from a segment is its distance from the nearest
// point of the segment: the perpendicular distance when the foot of the
// perpendicular falls within the segment, else the distance to the nearer
// end, so that a track going out and back is not mistaken for a line.
type Simplifier struct {
	tol2   float64 // tolerance squared, m²
	window int
	emit   func(*position.Position) error
	buf    []position.Position // the window: points held, in order
	keep   []bool              // per point of buf, kept by the last run
	stack  []span              // ranges of buf still to examine
	err    error               // emit's first error, returned ever after
}

// collinear is the distance, in metres, within which a point counts as on a
// segment at tolerance 0: well above the rounding noise of the projection
// (nanometres), well below what a receiver can tell apart.
const collinear = 1e-6

// span is a range of the window whose end points are kept.
type span struct{ first, last int }

// NewSimplifier returns a Simplifier at tolerance metres over windows of
// window points (DefaultWindow when window ≤ 2), handing each kept point in
// order to emit. The point emit gets is the Simplifier's own, valid during
// the call. At tolerance 0 (or less) it drops only the points collinear with
// their neighbours, to within a micrometre.
func NewSimplifier(tolerance float64, window int, emit func(*position.Position) error) *Simplifier {
	if !(tolerance > collinear) {
		tolerance = collinear
	}
	if window <= 2 {
		window = DefaultWindow
	}
	return &Simplifier{tol2: tolerance * tolerance, window: window, emit: emit}
}

// Add adds a copy of p to the stream. When the window is full it simplifies
// it and emits the points kept, except its last, which starts the next
// window. It returns emit's error; after one, the Simplifier emits nothing
// more and returns that error from every call.
func (s *Simplifier) Add(p *position.Position) error {
	if s.err != nil {
		return s.err
	}
	if s.buf == nil {
		s.buf = make([]position.Position, 0, s.window)
	}
	s.buf = append(s.buf, *p)
	if len(s.buf) < s.window {
		return nil
	}
	last := len(s.buf) - 1
	if err := s.run(last); err != nil {
		return err
	}
	s.buf[0] = s.buf[last]
	s.buf = s.buf[:1]
	return nil
}

// Flush simplifies and emits what is held, ending the stream: the next
// point added starts a new one. It returns emit's error, as Add does.
func (s *Simplifier) Flush() error {
	if s.err != nil {
		return s.err
	}
	err := s.run(len(s.buf))
	s.buf = s.buf[:0]
	return err
}

// run simplifies the window and emits its kept points before index end.
func (s *Simplifier) run(end int) error {
	s.simplify()
	for i := range end {
		if !s.keep[i] {
			continue
		}
		if err := s.emit(&s.buf[i]); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

// simplify marks in keep the points of buf that Douglas–Peucker keeps, with
// an explicit stack of ranges instead of recursion.
func (s *Simplifier) simplify() {
	n := len(s.buf)
	s.keep = append(s.keep[:0], make([]bool, n)...)
	if n == 0 {
		return
	}
	s.keep[0], s.keep[n-1] = true, true
	s.stack = append(s.stack[:0], span{0, n - 1})
	for len(s.stack) > 0 {
		r := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if r.last-r.first < 2 {
			continue
		}
		seg := newSegment(&s.buf[r.first], &s.buf[r.last])
		far, farD2 := -1, s.tol2
		for i := r.first + 1; i < r.last; i++ {
			if d2 := seg.dist2(&s.buf[i]); d2 > farD2 {
				far, farD2 = i, d2
			}
		}
		if far < 0 {
			continue
		}
		s.keep[far] = true
		s.stack = append(s.stack, span{r.first, far}, span{far, r.last})
	}
}

// segment is a segment from a to b in an equirectangular projection centred
// on a, scaled to metres at the segment's mean latitude.
type segment struct {
	lat, lon float64 // a, degrees
	kx, ky   float64 // metres per degree of longitude and latitude
	bx, by   float64 // b, metres from a
	len2     float64 // length squared, m²
}

func newSegment(a, b *position.Position) segment {
	s := segment{lat: a.Lat, lon: a.Lon, ky: EarthRadius * rad}
	s.kx = s.ky * math.Cos((a.Lat+b.Lat)/2*rad)
	s.bx, s.by = s.project(b)
	s.len2 = s.bx*s.bx + s.by*s.by
	return s
}

// project returns p's coordinates in metres east and north of a, taking the
// shorter way round in longitude.
func (s *segment) project(p *position.Position) (x, y float64) {
	dlon := p.Lon - s.lon
	if dlon > 180 {
		dlon -= 360
	} else if dlon < -180 {
		dlon += 360
	}
	return dlon * s.kx, (p.Lat - s.lat) * s.ky
}

// dist2 returns the square of p's distance from the segment, m².
func (s *segment) dist2(p *position.Position) float64 {
	x, y := s.project(p)
	if s.len2 > 0 {
		t := min(max((x*s.bx+y*s.by)/s.len2, 0), 1)
		x -= t * s.bx
		y -= t * s.by
	}
	return x*x + y*y
}
