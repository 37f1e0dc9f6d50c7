// Package importer reads recorded track files (GPX, NMEA 0183 logs, GeoJSON
// and CSV) into positions, streaming: Read hands the positions on in batches
// as it parses, and holds no more of the file than a batch and a record (for
// GeoJSON, a feature).
//
// # Formats
//
//   - GPX 1.0 and 1.1: the trkpt and rtept points (waypoints are not part of a
//     track and are ignored), with their ele, time, geoidheight, fix, sat,
//     hdop, vdop and pdop; GPX 1.0's speed and course; and any element named
//     speed or course (or bearing, heading) inside a point's extensions, such
//     as those of TrackPointExtension v2. Element names are matched by local
//     name, whatever their namespace. The fix kind pps (precise positioning
//     service) becomes dgps, as the NMEA assembler reads GGA's PPS quality:
//     the position model has no kind of its own for it, and it is better
//     than a plain 3d fix.
//   - NMEA 0183 logs, one sentence a line, assembled into fixes by the
//     receiver's epochs (package trackgate/internal/epoch): RMC, GGA, GNS,
//     GLL, GSA, VTG, ZDA and GSV from any talker. A log without RMC or ZDA
//     carries no date and is dated from Options.Now.
//   - GeoJSON: a FeatureCollection (streamed feature by feature), a Feature, a
//     bare geometry, an array of features, or several of these one after the
//     other (newline-delimited GeoJSON). Point features take their time from
//     properties.time or properties.timestamp and their other fields from
//     properties (alt, speed, course, hdop, sats, acc, batt and their common
//     aliases); MultiPoint, LineString and MultiLineString take one time per
//     position from properties.coordTimes, properties.times or
//     properties.coordinateProperties.times. Polygons and geometry
//     collections are skipped. trackgate's JSON export (package
//     trackgate/cloud/export), {"track":…,"points":[…]}, whose points are
//     position objects, is read too.
//   - CSV with a header row, delimited by commas, semicolons or tabs: the
//     columns time, lat and lon are required (with their usual aliases), the
//     others optional; an empty cell is an absent field. With semicolons or
//     tabs, a number may have a decimal comma.
//
// Times are RFC 3339 with or without a fraction of a second, or epoch seconds
// or milliseconds where a format allows numbers (GeoJSON, CSV); a time
// without a zone is UTC. All times are returned in UTC.
//
// # Errors
//
// A problem with the file's content is an *Error carrying the 1-based line
// where it is, and Read stops there; the batches handed on before it stay
// handed on. In GPX, GeoJSON and CSV every point must be a valid position
// with a time: one that is not is an error, for the file to be fixed. An NMEA
// log is a receiver's raw output, noise included: a line that is not a valid
// sentence (bad checksum, garbled, too long) and an epoch without a valid fix
// are counted in Stats.Skipped instead, and only a file in which no line at
// all is a sentence is an error.
//
// A hostile file cannot take the memory: a GPX value is at most 1 KiB, any
// other XML token 1 MiB, elements nest at most 256 deep; an NMEA line longer
// than 1 KiB is skipped; a CSV record (a line, or more in quotes) is at most
// 1 MiB. A GeoJSON feature is held whole, as the JSON decoder reads it: the
// size of the upload bounds it.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"trackgate/internal/position"
)

// Format is a file format the importer reads.
type Format string

// The formats Read understands.
const (
	GPX     Format = "gpx"     // GPX 1.0 and 1.1
	NMEA    Format = "nmea"    // NMEA 0183 logs
	GeoJSON Format = "geojson" // GeoJSON (RFC 7946), and the JSON export
	CSV     Format = "csv"     // CSV with a header row
)

// ParseFormat maps a name ("gpx", "nmea", "geojson", "csv"; also "json" ->
// GeoJSON, "txt"/"log" -> NMEA) to a Format, case-insensitive.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case GPX, NMEA, GeoJSON, CSV:
		return f, nil
	case "json":
		return GeoJSON, nil
	case "txt", "log":
		return NMEA, nil
	}
	return "", unknownFormat(s)
}

func unknownFormat(s string) error {
	return fmt.Errorf("importer: unknown format %q: want gpx, nmea, geojson or csv", s)
}

// utf8BOM is the byte order mark some editors put at the start of a file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Detect guesses the format from the first bytes of the file (head, up to 4
// KiB is passed): '<' after optional BOM/space -> GPX (only if it contains
// "<gpx"); '{' or '[' -> GeoJSON; a line starting with '$' or '!' -> NMEA (also
// a line with a sentence after a prefix such as a logger's timestamp);
// otherwise a first line with commas/semicolons/tabs -> CSV. Error if
// unknown.
func Detect(head []byte) (Format, error) {
	head = bytes.TrimLeft(bytes.TrimPrefix(head, utf8BOM), " \t\r\n")
	if len(head) == 0 {
		return "", errors.New("importer: cannot detect the format of an empty file")
	}
	switch head[0] {
	case '<':
		if bytes.Contains(head, []byte("<gpx")) {
			return GPX, nil
		}
		return "", errors.New("importer: XML but not GPX: no <gpx> element")
	case '{', '[':
		return GeoJSON, nil
	}
	for rest := head; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if line = bytes.TrimLeft(line, " \t"); len(line) > 0 && (line[0] == '$' || line[0] == '!') || hasSentence(line) {
			return NMEA, nil
		}
	}
	first, _, _ := bytes.Cut(head, []byte{'\n'})
	if bytes.ContainsAny(first, ",;\t") {
		return CSV, nil
	}
	return "", errors.New("importer: unknown format: not GPX, NMEA, GeoJSON or CSV")
}

// hasSentence reports whether line holds "$ttSSS," somewhere: an NMEA
// sentence after a prefix.
func hasSentence(line []byte) bool {
	for {
		i := bytes.IndexByte(line, '$')
		if i < 0 {
			return false
		}
		line = line[i+1:]
		if len(line) >= 6 && line[5] == ',' && isUpperAlnum(line[:5]) {
			return true
		}
	}
}

func isUpperAlnum(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Error is a problem with the file's content, at a line.
type Error struct {
	Line int    // 1-based line of the file where the problem is
	Msg  string // what is wrong
}

// Error formats e as "line 12: <msg>".
func (e *Error) Error() string { return "line " + strconv.Itoa(e.Line) + ": " + e.Msg }

// errorf returns an *Error at line.
func errorf(line int, format string, args ...any) *Error {
	return &Error{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// Stats counts what Read did.
type Stats struct {
	Points  int // positions handed to the batch callback (in batches it accepted)
	Skipped int // records dropped and counted (e.g. NMEA sentences with a bad checksum, void fixes)
}

// Options configures Read.
type Options struct {
	BatchSize int       // positions per batch callback (default 5000)
	Now       time.Time // positions are validated against it (no future beyond position's own rule); zero = time.Now()
}

// defaultBatchSize is the batch size when Options.BatchSize is not positive.
const defaultBatchSize = 5000

// maxPrealloc bounds the batch slice allocated up front, whatever the
// batch size asked for.
const maxPrealloc = 1 << 16

// Read parses r as format f and calls batch with consecutive slices of
// positions in file order (the slice is reused after batch returns). It
// stops at the first error: a content error is *Error with a line number; an
// error from batch or from r is returned wrapped. ctx is checked between
// batches (return ctx.Err() wrapped when cancelled), and every few thousand
// records, so that a file with few points is not read to its end either.
//
// Every position handed on has at least Time, Lat and Lon, and passes
// position.Position.Validate(opts.Now).
func Read(ctx context.Context, r io.Reader, f Format, opts Options, batch func([]position.Position) error) (Stats, error) {
	read, ok := readers[f]
	if !ok {
		return Stats{}, unknownFormat(string(f))
	}
	if r == nil || batch == nil {
		return Stats{}, errors.New("importer: no reader or no batch function")
	}
	size := opts.BatchSize
	if size <= 0 {
		size = defaultBatchSize
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	s := &sink{ctx: ctx, now: now, fn: batch, size: size, format: f,
		buf: make([]position.Position, 0, min(size, maxPrealloc))}
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("importer %s: %w", f, err)
	}
	err := read(r, s)
	if err == nil {
		err = s.flush()
	}
	return s.stats, err
}

// readers holds the reader of each format.
var readers = map[Format]func(io.Reader, *sink) error{GPX: readGPX, NMEA: readNMEA, GeoJSON: readGeoJSON, CSV: readCSV}

// sink collects positions into batches and hands them on.
type sink struct {
	ctx    context.Context
	now    time.Time
	fn     func([]position.Position) error
	buf    []position.Position
	size   int
	format Format
	stats  Stats
	ticks  int
}

// add validates p, reporting a failure as a content error at line with
// what (the kind of record) before it, and queues it, handing on the batch
// when it is full.
func (s *sink) add(p *position.Position, line int, what string) error {
	if err := p.Validate(s.now); err != nil {
		return &Error{Line: line, Msg: what + ": " + err.Error()}
	}
	return s.push(p)
}

// push queues p, which is valid, handing on the batch when it is full.
func (s *sink) push(p *position.Position) error {
	s.buf = append(s.buf, *p)
	if len(s.buf) >= s.size {
		return s.flush()
	}
	return s.tick()
}

// flush hands on the queued positions, if any, unless ctx is done.
func (s *sink) flush() error {
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("importer %s: stopped after %d points: %w", s.format, s.stats.Points, err)
	}
	if len(s.buf) == 0 {
		return nil
	}
	if err := s.fn(s.buf); err != nil {
		return fmt.Errorf("importer %s: batch after %d points: %w", s.format, s.stats.Points, err)
	}
	s.stats.Points += len(s.buf)
	s.buf = s.buf[:0]
	return nil
}

// tickEvery is how many records go by between two checks of ctx.
const tickEvery = 4096

// tick counts a record and checks ctx every tickEvery records.
func (s *sink) tick() error {
	s.ticks++
	if s.ticks%tickEvery != 0 {
		return nil
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("importer %s: stopped after %d points: %w", s.format, s.stats.Points, err)
	}
	return nil
}

// newBuffered returns r buffered, past a UTF-8 byte order mark if it starts
// with one.
func newBuffered(r io.Reader, size int) *bufio.Reader {
	br := bufio.NewReaderSize(r, size)
	if b, _ := br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM)) // peeked: cannot fail
	}
	return br
}

// text is the text of a value: a string, or bytes in a buffer.
type text interface{ ~string | ~[]byte }

// parseNum parses a decimal number, with an optional sign, fraction and
// exponent: no hexadecimal, infinities or NaN.
func parseNum[T text](s T) (float64, bool) {
	if len(s) == 0 || len(s) > 64 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(string(s), 64)
	return v, err == nil
}

// parseTime parses an RFC 3339 time, "2006-01-02T15:04:05" with an optional
// fraction of a second ('.' or ','), an optional zone (Z or ±hh:mm, ±hhmm,
// ±hh; none is UTC), and a space allowed for the T. It returns the time in
// UTC.
func parseTime[T text](s T) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	if c := s[10]; c != 'T' && c != 't' && c != ' ' {
		return time.Time{}, false
	}
	year, month, day := digits(s[0:4]), digits(s[5:7]), digits(s[8:10])
	hour, minute, sec := digits(s[11:13]), digits(s[14:16]), digits(s[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 60 {
		return time.Time{}, false
	}
	rest := s[19:]
	ns := 0
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		i, scale := 1, 100_000_000
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			ns += int(rest[i]-'0') * scale
			scale /= 10
		}
		if i == 1 {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case rest[0] == '+' || rest[0] == '-':
		z := rest[1:]
		var hh, mm int
		switch {
		case len(z) == 5 && z[2] == ':':
			hh, mm = digits(z[0:2]), digits(z[3:5])
		case len(z) == 4:
			hh, mm = digits(z[0:2]), digits(z[2:4])
		case len(z) == 2:
			hh = digits(z)
		default:
			return time.Time{}, false
		}
		if hh < 0 || hh > 23 || mm < 0 || mm > 59 {
			return time.Time{}, false
		}
		offset = hh*3600 + mm*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ns, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
}

// digits returns the value of the decimal digits b, or -1.
func digits[T text](b T) int {
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// daysIn returns the number of days of month in year.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// epochMillisFrom is the magnitude from which an epoch number is taken for
// milliseconds rather than seconds: 1e11 s is in the year 5138, 1e11 ms in
// 1973.
const epochMillisFrom = 1e11

// maxEpoch bounds an epoch number in seconds, far beyond any valid time, so
// that converting it cannot overflow.
const maxEpoch = 1e13

// parseEpoch parses epoch seconds or milliseconds, told apart by magnitude,
// with an optional fraction: exactly when written in plain decimals, to a
// float64's precision in exponent notation.
func parseEpoch[T text](s T) (time.Time, bool) {
	body, neg := s, len(s) > 0 && s[0] == '-'
	if neg {
		body = s[1:]
	}
	whole, frac := body, body[len(body):]
	for i := 0; i < len(body); i++ {
		if body[i] == '.' {
			whole, frac = body[:i], body[i+1:]
			break
		}
	}
	if n, f := digits(whole), digits(frac); len(whole) > 0 && len(whole) <= 15 && n >= 0 && f >= 0 {
		sec, unit := int64(n), int64(time.Second)
		var ns int64
		if n >= epochMillisFrom {
			sec, ns, unit = int64(n/1000), int64(n%1000)*int64(time.Millisecond), int64(time.Millisecond)
		}
		for i, scale := 0, unit/10; i < len(frac) && scale > 0; i, scale = i+1, scale/10 {
			ns += int64(frac[i]-'0') * scale
		}
		if neg {
			sec, ns = -sec, -ns
		}
		return time.Unix(sec, ns).UTC(), true
	}
	v, ok := parseNum(s)
	if !ok {
		return time.Time{}, false
	}
	if math.Abs(v) >= epochMillisFrom {
		v /= 1000
	}
	if math.IsNaN(v) || math.Abs(v) >= maxEpoch {
		return time.Time{}, false
	}
	sec := math.Floor(v)
	ns := math.Round((v - sec) * 1e9)
	return time.Unix(int64(sec), int64(ns)).UTC(), true
}

// parseFix parses a fix kind in any case; pps (GPX's precise positioning
// service) is dgps, as GGA's PPS quality is in package epoch.
func parseFix[T text](s T) (position.Fix, bool) {
	switch strings.ToLower(string(s)) {
	case "none":
		return position.FixNone, true
	case "2d":
		return position.Fix2D, true
	case "3d":
		return position.Fix3D, true
	case "dgps", "pps":
		return position.FixDGPS, true
	case "rtk":
		return position.FixRTK, true
	case "float":
		return position.FixFloat, true
	case "dr":
		return position.FixDR, true
	}
	return "", false
}

// setFloat sets the float field bit of p to v. A course of 360, which some
// devices write for due north, is 0.
func setFloat(p *position.Position, bit position.Fields, v float64) {
	if bit == position.FieldCourse && v == 360 {
		v = 0
	}
	if f, ok := position.FloatFieldFor(bit); ok {
		f.Set(p, v)
	}
}

// parseSats parses a satellite count.
func parseSats[T text](s T) (int, bool) {
	if len(s) == 0 || len(s) > 4 {
		return 0, false
	}
	n := digits(s)
	return n, n >= 0
}
