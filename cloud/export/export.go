// Package export writes a track's points as JSON, GeoJSON, GPX or CSV.
//
// The encoders stream: New writes the header, Point writes one point as it
// comes, Close writes the trailer. They hold no point list, whatever the
// track's length, and a point costs no allocation.
package export

import (
	"fmt"
	"io"
	"strings"
	"time"

	"trackgate/cloud/geo"
	"trackgate/internal/position"
)

// Format is an export format.
type Format string

// The export formats.
const (
	JSON    Format = "json"    // the track and its points as the wire contract's position objects
	GeoJSON Format = "geojson" // one RFC 7946 Feature with a LineString
	GPX     Format = "gpx"     // GPX 1.1 with Garmin's TrackPointExtension v2 for speed and course
	CSV     Format = "csv"     // RFC 4180, one row per point
)

// ParseFormat returns the format named s, in any case; the empty string is
// JSON.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case "":
		return JSON, nil
	case JSON, GeoJSON, GPX, CSV:
		return f, nil
	}
	return "", unknownFormat(s)
}

// unknownFormat is the error for a format named s that does not exist.
func unknownFormat(s string) error {
	return fmt.Errorf("export: unknown format %q: want json, geojson, gpx or csv", s)
}

// ContentType returns the media type of f, or the empty string for an
// unknown format.
func (f Format) ContentType() string {
	switch f {
	case JSON:
		return "application/json"
	case GeoJSON:
		return "application/geo+json"
	case GPX:
		return "application/gpx+xml"
	case CSV:
		return "text/csv; charset=utf-8"
	}
	return ""
}

// Extension returns the file name extension of f, without the dot, or the
// empty string for an unknown format.
func (f Format) Extension() string {
	switch f {
	case JSON, GeoJSON, GPX, CSV:
		return string(f)
	}
	return ""
}

// Track describes the track being exported.
type Track struct {
	ID      string      // the track's id
	Name    string      // its name, any text
	Device  string      // the device that recorded it
	Started time.Time   // when recording started
	Stopped *time.Time  // when it stopped; nil while recording
	Summary geo.Summary // the statistics of its points
}

// Encoder writes one track's points in a format.
type Encoder interface {
	// Point writes p, which is not retained.
	Point(p *position.Position) error
	// Close writes the trailer; it does not close the writer.
	Close() error
}

// New writes the header of t in format f to w and returns the encoder. w
// should be buffered by the caller: the encoder writes each point with one
// call. The points should be valid (position.Position.Validate): their values
// are written unchecked.
//
// After a write fails, every call returns that error; Point and Close after
// Close fail.
func New(f Format, w io.Writer, t Track) (Encoder, error) {
	s := sink{w: w, format: f, buf: make([]byte, 0, 1024)}
	var e Encoder
	var err error
	switch f {
	case JSON:
		e, err = newJSON(s, &t)
	case GeoJSON:
		e, err = newGeoJSON(s, &t)
	case GPX:
		e, err = newGPX(s, &t)
	case CSV:
		e, err = newCSV(s)
	default:
		return nil, unknownFormat(string(f))
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// sink is what every encoder shares: the writer, a scratch buffer reused for
// every point, and the first write error, returned ever after.
type sink struct {
	w      io.Writer
	format Format
	buf    []byte
	points int // points taken
	err    error
	closed bool
}

// begin empties s.buf for the next write, by the method what ("point",
// "Close"), or returns why s cannot write any more.
func (s *sink) begin(what string) error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return fmt.Errorf("export %s: %s after Close", s.format, what)
	}
	s.buf = s.buf[:0]
	return nil
}

// write writes s.buf, naming what it holds in the error if the write fails.
// Callers have checked s.err (begin).
func (s *sink) write(what string) error {
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = fmt.Errorf("export %s: write %s after %d points: %w", s.format, what, s.points, err)
	}
	return s.err
}

// utc returns a copy of *t in UTC, for encoding/json to write with a Z, or
// nil.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
