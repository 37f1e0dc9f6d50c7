package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"trackgate/internal/position"
)

// lineCounter counts the lines of what the JSON decoder reads, to turn the
// decoder's offsets into lines. It keeps the offsets of the newlines the
// decoder has read but not yet been asked about: its memory is bounded by
// the decoder's buffer, not the file.
type lineCounter struct {
	r    io.Reader
	off  int64   // bytes read
	nl   []int64 // offsets of newlines, from nl[head] on not yet counted
	head int
	line int   // 1 + the newlines counted
	err  error // the first error of the reader other than io.EOF
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		c.nl = append(c.nl, c.off+int64(i+j))
		i += j + 1
	}
	c.off += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// lineAt returns the line of the byte at offset off. The offsets asked for
// must not decrease: an earlier one gets the line of the latest.
func (c *lineCounter) lineAt(off int64) int {
	for c.head < len(c.nl) && c.nl[c.head] < off {
		c.head++
		c.line++
	}
	if c.head >= 1024 && 2*c.head >= len(c.nl) {
		c.nl = c.nl[:copy(c.nl, c.nl[c.head:])]
		c.head = 0
	}
	return c.line
}

// rawValue is a JSON value as the decoder read it. It is not a copy: it is
// valid until the decoder's next call.
type rawValue []byte

// UnmarshalJSON keeps data.
func (r *rawValue) UnmarshalJSON(data []byte) error {
	*r = data
	return nil
}

// geoReader is the state of a GeoJSON document being read.
type geoReader struct {
	s   *sink
	lc  *lineCounter
	dec *json.Decoder
	raw rawValue

	// The feature being read.
	coords     []byte // its coordinates, copied: its properties may follow
	coordsLine int
	props      props
}

// geoObject is what an object of the document turned out to be.
type geoObject struct {
	line      int
	typ       string // its type member
	geomType  string // the type of its geometry member
	geometry  bool   // it has a geometry member, or is a geometry
	bare      bool   // it is a geometry: its own coordinates
	null      bool   // its geometry is null
	coords    bool   // coordinates were read
	container bool   // it holds features or points
}

// readGeoJSON reads a GeoJSON document, or a sequence of them, into s.
func readGeoJSON(r io.Reader, s *sink) error {
	lc := &lineCounter{r: newBuffered(r, 64<<10), line: 1}
	g := &geoReader{s: s, lc: lc, dec: json.NewDecoder(lc), coords: make([]byte, 0, 256)}
	values := 0
	for ; ; values++ {
		tok, err := g.dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return g.fail(err)
		}
		line := g.tokenLine()
		switch tok {
		case json.Delim('{'):
			err = g.top(line)
		case json.Delim('['):
			err = g.features()
		default:
			return errorf(line, "not GeoJSON: the document is %s, not an object or an array", describe(tok))
		}
		if err != nil {
			return err
		}
	}
	if values == 0 {
		return errorf(1, "empty file: no GeoJSON")
	}
	return nil
}

// tokenLine returns the line of the token just read.
func (g *geoReader) tokenLine() int { return g.lc.lineAt(g.dec.InputOffset() - 1) }

// valueLine returns the line where the value just decoded into g.raw starts.
func (g *geoReader) valueLine() int {
	return g.lc.lineAt(g.dec.InputOffset() - int64(len(g.raw)))
}

// fail turns an error of the decoder into the error to return.
func (g *geoReader) fail(err error) error {
	if g.lc.err != nil {
		return fmt.Errorf("importer geojson: read: %w", g.lc.err)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errorf(g.lc.lineAt(max(g.lc.off-1, 0)), "unexpected end of file")
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return errorf(g.lc.lineAt(g.syntaxErrorOffset()), "JSON syntax error: %s", se.Error())
	}
	return errorf(g.lc.lineAt(g.dec.InputOffset()), "JSON: %v", err)
}

// syntaxErrorOffset returns the offset in the input of the syntax error the
// decoder has just met. The error's own Offset does not tell: for an error
// in a value, it counts only the bytes the decoder read as values. The
// decoder stands where the error is (an error between values) or at the
// start of the value with the error, which it holds in its buffer: decoding
// that value afresh finds the error's offset in it.
func (g *geoReader) syntaxErrorOffset() int64 {
	cur := g.dec.InputOffset()
	var v rawValue
	err := json.NewDecoder(g.dec.Buffered()).Decode(&v)
	if se, ok := errors.AsType[*json.SyntaxError](err); ok && se.Offset > 0 {
		return cur + se.Offset - 1
	}
	return cur
}

// describe names the kind of a token.
func describe(tok json.Token) string {
	switch tok.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	if tok == json.Delim('[') {
		return "an array"
	}
	return "an object"
}

// key reads the next key of an object (the decoder checks that it is one).
func (g *geoReader) key() (string, error) {
	tok, err := g.dec.Token()
	if err != nil {
		return "", g.fail(err)
	}
	k, _ := tok.(string)
	return k, nil
}

// open reads the start of the array member named name.
func (g *geoReader) open(name string) error {
	tok, err := g.dec.Token()
	if err != nil {
		return g.fail(err)
	}
	if tok != json.Delim('[') {
		return errorf(g.tokenLine(), "%q is %s, not an array", name, describe(tok))
	}
	return nil
}

// close reads the end of the array or object whose members have been read.
func (g *geoReader) close() error {
	if _, err := g.dec.Token(); err != nil {
		return g.fail(err)
	}
	return nil
}

// decode reads the next value into g.raw.
func (g *geoReader) decode() error {
	if err := g.dec.Decode(&g.raw); err != nil {
		return g.fail(err)
	}
	return nil
}

// top reads a top-level object, whose '{' (at line) has been read: a
// FeatureCollection, whose features it streams, the JSON export, whose
// points it streams, a Feature or a geometry.
func (g *geoReader) top(line int) error {
	o := geoObject{line: line}
	g.begin()
	for g.dec.More() {
		key, err := g.key()
		if err != nil {
			return err
		}
		switch key {
		case "features":
			o.container = true
			if err = g.open(key); err == nil {
				err = g.features()
			}
		case "points":
			o.container = true
			err = g.points()
		default:
			if err = g.decode(); err == nil {
				sc := scanner{b: g.raw, line: g.valueLine()}
				err = g.member(&o, []byte(key), &sc)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := g.close(); err != nil {
		return err
	}
	return g.emit(&o)
}

// features reads the features of an array whose '[' has been read.
func (g *geoReader) features() error {
	for g.dec.More() {
		if err := g.decode(); err != nil {
			return err
		}
		if err := g.feature(g.valueLine()); err != nil {
			return err
		}
	}
	return g.close()
}

// feature reads the feature in g.raw, at line, and hands on its positions.
func (g *geoReader) feature(line int) error {
	o := geoObject{line: line}
	g.begin()
	sc := scanner{b: g.raw, line: line}
	if sc.ws() != '{' {
		return errorf(line, "a feature is %s, not an object", sc.kind())
	}
	if err := sc.object("feature", func(key, _ []byte) error { return g.member(&o, key, &sc) }); err != nil {
		return err
	}
	return g.emit(&o)
}

// begin starts reading an object.
func (g *geoReader) begin() {
	g.props.reset()
	g.coords = g.coords[:0]
}

// member reads the member key of a feature or geometry o, its value at sc.
func (g *geoReader) member(o *geoObject, key []byte, sc *scanner) error {
	var err error
	switch string(key) {
	case "type":
		o.typ, err = sc.typeName()
	case "geometry":
		err = g.geometry(o, sc)
	case "coordinates":
		o.geometry, o.bare = true, true
		g.coordinates(o, sc)
	case "geometries":
		o.geometry, o.bare = true, true
		sc.skip()
	case "properties":
		err = g.props.read(sc)
	default:
		sc.skip()
	}
	return err
}

// geometry reads a Feature's geometry member.
func (g *geoReader) geometry(o *geoObject, sc *scanner) error {
	line := sc.line
	switch sc.ws() {
	case 'n':
		sc.skip()
		o.geometry, o.null = true, true
		return nil
	case '{':
	default:
		return errorf(line, "geometry is %s, not an object", sc.kind())
	}
	o.geometry = true
	return sc.object("geometry", func(key, _ []byte) error {
		var err error
		switch string(key) {
		case "type":
			o.geomType, err = sc.typeName()
		case "coordinates":
			g.coordinates(o, sc)
		default:
			sc.skip()
		}
		return err
	})
}

// coordinates reads a coordinates member, to be read when the feature ends
// (its properties may follow).
func (g *geoReader) coordinates(o *geoObject, sc *scanner) {
	sc.ws()
	start, line := sc.i, sc.line
	sc.skip()
	g.coords = append(g.coords[:0], sc.b[start:sc.i]...)
	g.coordsLine = line
	o.coords = true
}

// points reads the points of the JSON export: position objects.
func (g *geoReader) points() error {
	if err := g.open("points"); err != nil {
		return err
	}
	for g.dec.More() {
		if err := g.decode(); err != nil {
			return err
		}
		line := g.valueLine()
		var p position.Position
		if err := p.UnmarshalJSON(g.raw); err != nil {
			return errorf(line, "point: %v", err)
		}
		if !p.Has(position.FieldTime) {
			return errorf(line, "point without time: trackgate stores positions by their time")
		}
		if err := g.s.add(&p, line, "point"); err != nil {
			return err
		}
	}
	return g.close()
}

// emit hands on the positions of an object just read.
func (g *geoReader) emit(o *geoObject) error {
	if o.container {
		return nil
	}
	if !o.geometry {
		return errorf(o.line, "the object is neither a FeatureCollection, a Feature nor a geometry: it has no features, geometry or coordinates")
	}
	if o.null {
		g.s.stats.Skipped++
		return nil
	}
	typ := o.geomType
	if o.bare {
		typ = o.typ
	}
	depth := 0
	switch typ {
	case "Point":
	case "MultiPoint", "LineString":
		depth = 1
	case "MultiLineString":
		depth = 2
	case "Polygon", "MultiPolygon", "GeometryCollection":
		g.s.stats.Skipped++
		return nil
	case "":
		return errorf(o.line, "geometry without a type")
	default:
		return errorf(o.line, "unknown geometry type %q", typ)
	}
	if !o.coords {
		return errorf(o.line, "%s without coordinates", typ)
	}
	sc := scanner{b: g.coords, line: g.coordsLine}
	if depth == 0 {
		return g.point(o, &sc)
	}
	return g.track(o, typ, depth, &sc)
}

// point hands on a Point feature.
func (g *geoReader) point(o *geoObject, sc *scanner) error {
	p := g.props.p
	if err := sc.position(&p); err != nil {
		return errorf(sc.line, "Point: %v", err)
	}
	if !p.Has(position.FieldTime) {
		return errorf(o.line, "Point without properties.time or properties.timestamp: trackgate stores positions by their time")
	}
	return g.s.add(&p, o.line, "Point")
}

// track hands on the positions of a MultiPoint or LineString (depth 1) or a
// MultiLineString (depth 2), each with its time from the properties.
func (g *geoReader) track(o *geoObject, typ string, depth int, sc *scanner) error {
	pr := &g.props
	if pr.timesKey == "" {
		return errorf(o.line, "%s without properties.coordTimes: trackgate stores positions by their time, one for each position", typ)
	}
	n, lines := 0, 0 // positions and lines of a MultiLineString read
	var walk func(level int) error
	walk = func(level int) error {
		if sc.ws() != '[' {
			return errorf(sc.line, "%s: coordinates are not an array", typ)
		}
		sc.i++
		first := n // the first position of this array
		for {
			c := sc.ws()
			if c == ']' {
				sc.i++
				break
			}
			if c == ',' {
				sc.i++
				continue
			}
			if level < depth {
				if err := walk(level + 1); err != nil {
					return err
				}
				continue
			}
			line := sc.line
			var p position.Position
			if err := sc.position(&p); err != nil {
				return errorf(line, "%s: %v", typ, err)
			}
			if n >= len(pr.times) {
				return errorf(line, "%s has more positions than properties.%s has times (%d)", typ, pr.timesKey, len(pr.times))
			}
			if pr.times[n].IsZero() {
				return errorf(line, "%s position %d has no time in properties.%s: trackgate stores positions by their time", typ, n, pr.timesKey)
			}
			p.Time = pr.times[n]
			p.Set |= position.FieldTime
			if err := g.s.add(&p, line, typ); err != nil {
				return err
			}
			n++
		}
		if level == 2 && pr.nested {
			if lines >= len(pr.lens) || pr.lens[lines] != n-first {
				return errorf(sc.line, "%s: line %d has %d positions but properties.%s has not as many times for it", typ, lines, n-first, pr.timesKey)
			}
			lines++
		}
		return nil
	}
	if err := walk(1); err != nil {
		return err
	}
	if n != len(pr.times) {
		return errorf(o.line, "%s has %d positions but properties.%s has %d times", typ, n, pr.timesKey, len(pr.times))
	}
	return nil
}

// props is what the importer reads of a Feature's properties.
type props struct {
	p        position.Position // the optional fields, and the time of a Point
	timeKey  bool              // the time came from "time" rather than "timestamp"
	times    []time.Time       // one time per position, zero where null
	nested   bool              // times is an array of arrays of times, one for each line
	lens     []int             // the length of each array of times, if nested
	timesKey string            // the member times came from, "" if none
}

func (pr *props) reset() {
	*pr = props{times: pr.times[:0], lens: pr.lens[:0]}
}

// propField maps the property names, in lower case, to the fields they
// carry.
var propField = map[string]position.Fields{
	"alt": position.FieldAlt, "altitude": position.FieldAlt, "ele": position.FieldAlt, "elevation": position.FieldAlt,
	"speed":  position.FieldSpeed,
	"course": position.FieldCourse, "bearing": position.FieldCourse, "heading": position.FieldCourse,
	"hdop": position.FieldHDOP, "pdop": position.FieldPDOP, "vdop": position.FieldVDOP,
	"geoid": position.FieldGeoid,
	"acc":   position.FieldAcc, "accuracy": position.FieldAcc,
	"batt": position.FieldBatt, "battery": position.FieldBatt,
	"sats": position.FieldSats, "satellites": position.FieldSats,
	"fix":  position.FieldFix,
	"time": position.FieldTime, "timestamp": position.FieldTime,
}

// read reads a properties value.
func (pr *props) read(sc *scanner) error {
	return sc.object("properties", func(key, lower []byte) error {
		switch string(lower) {
		case "coordtimes", "times":
			return pr.readTimes(sc, string(key))
		case "coordinateproperties":
			return sc.object("coordinateProperties", func(k, l []byte) error {
				if string(l) == "times" {
					return pr.readTimes(sc, "coordinateProperties."+string(k))
				}
				sc.skip()
				return nil
			})
		}
		bit, ok := propField[string(lower)]
		if !ok {
			sc.skip()
			return nil
		}
		return pr.readField(sc, key, lower, bit)
	})
}

// readField reads the property key, carrying field bit.
func (pr *props) readField(sc *scanner, key, lower []byte, bit position.Fields) error {
	line := sc.line
	v, err := sc.scalar()
	if err != nil {
		return errorf(line, "properties.%s: %v", key, err)
	}
	if v == nil {
		return nil // null or ""
	}
	p := &pr.p
	switch bit {
	case position.FieldTime:
		isTime := string(lower) == "time"
		if !isTime && pr.timeKey {
			return nil
		}
		t, ok := parseTime(v)
		if !ok {
			t, ok = parseEpoch(v)
		}
		if !ok {
			return errorf(line, "properties.%s: %q is not an RFC 3339 time or epoch seconds or milliseconds", key, v)
		}
		p.Time = t
		p.Set |= position.FieldTime
		pr.timeKey = isTime
	case position.FieldSats:
		n, ok := parseSats(v)
		if !ok {
			return errorf(line, "properties.%s: %q is not a number of satellites", key, v)
		}
		p.Sats = n
		p.Set |= position.FieldSats
	case position.FieldFix:
		fix, ok := parseFix(v)
		if !ok {
			return errorf(line, "properties.%s: %q is not one of none, 2d, 3d, dgps, rtk, float, dr", key, v)
		}
		p.Fix = fix
		p.Set |= position.FieldFix
	default:
		f, ok := parseNum(v)
		if !ok {
			return errorf(line, "properties.%s: %q is not a number", key, v)
		}
		if !p.Has(bit) {
			setFloat(p, bit, f)
		}
	}
	return nil
}

// readTimes reads the times of the positions, from the member key: an
// array of times, or of arrays of times (one for each line of a
// MultiLineString). The first such member is the one read.
func (pr *props) readTimes(sc *scanner, key string) error {
	if pr.timesKey != "" {
		sc.skip()
		return nil
	}
	line := sc.line
	if c := sc.ws(); c == 'n' {
		sc.skip()
		return nil
	} else if c != '[' {
		return errorf(line, "properties.%s is not an array of times", key)
	}
	pr.timesKey = key
	sc.i++
	flat := false
	for {
		c := sc.ws()
		if c == ']' {
			sc.i++
			return nil
		}
		if c == ',' {
			sc.i++
			continue
		}
		if c != '[' {
			flat = true
			if err := pr.readTime(sc, key); err != nil {
				return err
			}
			continue
		}
		if flat {
			return errorf(sc.line, "properties.%s mixes times and arrays of times", key)
		}
		pr.nested = true
		sc.i++
		n := 0
		for {
			c := sc.ws()
			if c == ']' {
				sc.i++
				break
			}
			if c == ',' {
				sc.i++
				continue
			}
			if err := pr.readTime(sc, key); err != nil {
				return err
			}
			n++
		}
		pr.lens = append(pr.lens, n)
	}
}

// readTime reads one time of a times array: a string, epoch seconds or
// milliseconds, or null.
func (pr *props) readTime(sc *scanner, key string) error {
	line := sc.line
	v, err := sc.scalar()
	if err != nil {
		return errorf(line, "properties.%s[%d]: %v", key, len(pr.times), err)
	}
	var t time.Time
	if v != nil {
		var ok bool
		if t, ok = parseTime(v); !ok {
			if t, ok = parseEpoch(v); !ok {
				return errorf(line, "properties.%s[%d]: %q is not an RFC 3339 time or epoch seconds or milliseconds", key, len(pr.times), v)
			}
		}
	}
	pr.times = append(pr.times, t)
	return nil
}

// scanner reads values the JSON decoder has checked, counting lines.
type scanner struct {
	b    []byte
	i    int
	line int // the line of b[i]
}

// ws skips white space and returns the next byte, 0 at the end.
func (s *scanner) ws() byte {
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; c {
		case '\n':
			s.line++
		case ' ', '\t', '\r':
		default:
			return c
		}
	}
	return 0
}

// str reads a string, unescaped, at s.i.
func (s *scanner) str() ([]byte, error) {
	start := s.i
	escaped := false
	for j := start + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			s.i = j + 1
			if !escaped {
				return s.b[start+1 : j], nil
			}
			var v string
			if err := json.Unmarshal(s.b[start:j+1], &v); err != nil {
				return nil, err
			}
			return []byte(v), nil
		}
	}
	s.i = len(s.b)
	return nil, errors.New("unterminated string")
}

// scalar reads a string or number: its text, nil for null or an empty
// string.
func (s *scanner) scalar() ([]byte, error) {
	switch c := s.ws(); {
	case c == '"':
		v, err := s.str()
		if err != nil {
			return nil, err
		}
		if v = bytes.TrimSpace(v); len(v) == 0 {
			return nil, nil
		}
		return v, nil
	case c == 'n':
		s.skip()
		return nil, nil
	case c == '-' || c >= '0' && c <= '9':
		return s.number(), nil
	}
	start := s.i
	s.skip()
	return nil, fmt.Errorf("%s is not a string or a number", bytes.TrimSpace(s.b[start:min(s.i, start+32)]))
}

// kind names the kind of the value at s.i.
func (s *scanner) kind() string {
	switch s.ws() {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// geoTypes holds the GeoJSON type names, to return them without
// allocating.
var geoTypes = map[string]string{
	"Feature": "Feature", "FeatureCollection": "FeatureCollection", "Point": "Point", "MultiPoint": "MultiPoint",
	"LineString": "LineString", "MultiLineString": "MultiLineString", "Polygon": "Polygon", "MultiPolygon": "MultiPolygon",
	"GeometryCollection": "GeometryCollection",
}

// typeName reads the value of a type member, a string.
func (s *scanner) typeName() (string, error) {
	line := s.line
	if s.ws() != '"' {
		return "", errorf(line, "\"type\" is %s, not a string", s.kind())
	}
	v, err := s.str()
	if err != nil {
		return "", errorf(line, "\"type\": %v", err)
	}
	if n, ok := geoTypes[string(v)]; ok {
		return n, nil
	}
	return string(v), nil
}

// number reads a number at s.i.
func (s *scanner) number() []byte {
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		if c := s.b[s.i]; (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
	}
	return s.b[start:s.i]
}

// skip skips a value.
func (s *scanner) skip() {
	switch s.ws() {
	case '"':
		_, _ = s.str() // only skipped
		return
	case '{', '[':
	default:
		for ; s.i < len(s.b); s.i++ {
			switch s.b[s.i] {
			case ',', ']', '}', ' ', '\t', '\r', '\n':
				return
			}
		}
		return
	}
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			_, _ = s.str()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				s.i++
				return
			}
		case '\n':
			s.line++
		}
		s.i++
	}
}

// maxKey is the longest key matched against the known ones.
const maxKey = 32

// object reads an object (null is an empty one), calling member for each
// member with the scanner at its value, which member must read. name names
// the object in errors.
func (s *scanner) object(name string, member func(key, lower []byte) error) error {
	line := s.line
	switch s.ws() {
	case 'n':
		s.skip()
		return nil
	case '{':
		s.i++
	default:
		return errorf(line, "%s is not an object", name)
	}
	var lower [maxKey]byte
	for {
		switch s.ws() {
		case '}':
			s.i++
			return nil
		case ',':
			s.i++
			continue
		case '"':
		default:
			return errorf(s.line, "%s: want a key", name)
		}
		key, err := s.str()
		if err != nil {
			return errorf(s.line, "%s: %v", name, err)
		}
		if s.ws() != ':' {
			return errorf(s.line, "%s: want ':' after a key", name)
		}
		s.i++
		s.ws()
		l := lower[:0]
		if len(key) <= maxKey {
			for _, c := range key {
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				l = append(l, c)
			}
		}
		if err := member(key, l); err != nil {
			return err
		}
	}
}

// position reads [lon, lat] or [lon, lat, alt] (further numbers are
// ignored) into p.
func (s *scanner) position(p *position.Position) error {
	if s.ws() != '[' {
		return errors.New("a position is not an array [lon, lat]")
	}
	s.i++
	n := 0
	for {
		c := s.ws()
		if c == ']' {
			s.i++
			break
		}
		if c == ',' {
			s.i++
			continue
		}
		if c != '-' && (c < '0' || c > '9') {
			return errors.New("a position holds something other than numbers")
		}
		num := s.number()
		v, err := strconv.ParseFloat(string(num), 64)
		if err != nil {
			return fmt.Errorf("%s is out of range", num)
		}
		switch n {
		case 0:
			p.Lon = v
			p.Set |= position.FieldLon
		case 1:
			p.Lat = v
			p.Set |= position.FieldLat
		case 2:
			p.Alt = v
			p.Set |= position.FieldAlt
		}
		n++
	}
	if n < 2 {
		return errors.New("a position has fewer than two numbers: want [lon, lat]")
	}
	return nil
}
