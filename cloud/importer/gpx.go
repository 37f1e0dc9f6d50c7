package importer

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"trackgate/internal/position"
)

// Limits on a GPX document, so that a hostile one cannot take the memory.
const (
	maxXMLToken = 1 << 20 // bytes of one XML token: a tag, a text, a comment
	maxXMLValue = 1 << 10 // bytes of the text of a value the importer reads
	maxXMLDepth = 256     // nesting of elements
)

// gpxField is a child element of a point that the importer reads.
type gpxField uint8

const (
	gpxNone gpxField = iota
	gpxEle
	gpxTime
	gpxGeoid
	gpxFix
	gpxSat
	gpxHDOP
	gpxVDOP
	gpxPDOP
	gpxSpeed
	gpxCourse
)

// gpxChild returns the field of a point's child element with local name
// name (GPX 1.1, and GPX 1.0's speed and course).
func gpxChild(name string) gpxField {
	switch name {
	case "ele":
		return gpxEle
	case "time":
		return gpxTime
	case "geoidheight":
		return gpxGeoid
	case "fix":
		return gpxFix
	case "sat":
		return gpxSat
	case "hdop":
		return gpxHDOP
	case "vdop":
		return gpxVDOP
	case "pdop":
		return gpxPDOP
	}
	return gpxExtension(name)
}

// gpxExtension returns the field of an element with local name name inside
// a point's extensions.
func gpxExtension(name string) gpxField {
	switch name {
	case "speed":
		return gpxSpeed
	case "course", "bearing", "heading":
		return gpxCourse
	}
	return gpxNone
}

// gpxFloats maps the decimal fields to theirs in a Position.
var gpxFloats = [...]position.Fields{
	gpxEle:    position.FieldAlt,
	gpxGeoid:  position.FieldGeoid,
	gpxHDOP:   position.FieldHDOP,
	gpxVDOP:   position.FieldVDOP,
	gpxPDOP:   position.FieldPDOP,
	gpxSpeed:  position.FieldSpeed,
	gpxCourse: position.FieldCourse,
}

// gpxReader is the state of a GPX document being read.
type gpxReader struct {
	s     *sink
	in    *xmlInput
	d     *xml.Decoder
	stack []xml.Name // the open elements

	point     int    // depth of the point being read, 0 outside one
	pointName string // trkpt or rtept
	pointLine int
	ext       int // depth of the point's extensions, 0 outside them
	p         position.Position

	field      gpxField // the value being collected, gpxNone if none
	fieldName  string
	fieldDepth int
	val        []byte
}

// readGPX reads a GPX document into s.
func readGPX(r io.Reader, s *sink) error {
	in := newXMLInput(r)
	d := xml.NewDecoder(in)
	d.CharsetReader = charsetReader
	g := &gpxReader{s: s, in: in, d: d, stack: make([]xml.Name, 0, 16), val: make([]byte, 0, 64)}
	for {
		in.mark()
		tok, err := d.RawToken()
		if err == io.EOF {
			return g.eof()
		}
		if err != nil {
			return g.fail(err)
		}
		var done bool
		switch t := tok.(type) {
		case xml.StartElement:
			err = g.start(&t)
		case xml.EndElement:
			done, err = g.end(t.Name)
		case xml.CharData:
			if g.field != gpxNone {
				if len(g.val)+len(t) > maxXMLValue {
					return errorf(g.line(), "<%s> longer than %d bytes", g.fieldName, maxXMLValue)
				}
				g.val = append(g.val, t...)
			}
		}
		if err != nil || done {
			return err
		}
	}
}

// line returns the line the decoder is at.
func (g *gpxReader) line() int {
	line, _ := g.d.InputPos()
	return line
}

// eof handles the end of the input, which comes too soon: the document
// ends when the root element closes.
func (g *gpxReader) eof() error {
	if err := g.in.readErr(); err != nil {
		return fmt.Errorf("importer gpx: read: %w", err)
	}
	if len(g.stack) == 0 {
		return errorf(1, "no <gpx> element: the file is empty or not GPX")
	}
	return errorf(g.line(), "unexpected end of file inside <%s>", qname(g.stack[len(g.stack)-1]))
}

// fail turns an error of the decoder into the error to return.
func (g *gpxReader) fail(err error) error {
	if rerr := g.in.readErr(); rerr != nil {
		return fmt.Errorf("importer gpx: read: %w", rerr)
	}
	if se, ok := errors.AsType[*xml.SyntaxError](err); ok {
		return errorf(se.Line, "XML syntax error: %s", se.Msg)
	}
	if errors.Is(err, errTokenTooLong) {
		return errorf(g.line(), "XML token longer than %d bytes", maxXMLToken)
	}
	return errorf(g.line(), "XML: %v", err)
}

// start handles a start tag.
func (g *gpxReader) start(t *xml.StartElement) error {
	if len(g.stack) == maxXMLDepth {
		return errorf(g.line(), "elements nested deeper than %d", maxXMLDepth)
	}
	g.stack = append(g.stack, t.Name)
	depth := len(g.stack)
	name := t.Name.Local
	switch {
	case depth == 1:
		if name != "gpx" {
			return errorf(g.line(), "the root element is <%s>, not <gpx>: not a GPX file", qname(t.Name))
		}
	case g.point == 0:
		if name == "trkpt" || name == "rtept" {
			return g.startPoint(t, depth)
		}
	case g.field != gpxNone:
		// Markup inside a value: its text is the value's.
	case depth == g.point+1:
		if name == "extensions" {
			g.ext = depth
		} else {
			g.collect(gpxChild(name), name, depth)
		}
	case g.ext != 0:
		g.collect(gpxExtension(name), name, depth)
	}
	return nil
}

// collect starts collecting the text of the element name at depth, the
// value of field f, if f is a field.
func (g *gpxReader) collect(f gpxField, name string, depth int) {
	if f == gpxNone {
		return
	}
	g.field, g.fieldName, g.fieldDepth = f, name, depth
	g.val = g.val[:0]
}

// startPoint begins a trkpt or rtept at depth.
func (g *gpxReader) startPoint(t *xml.StartElement, depth int) error {
	g.point, g.pointName, g.pointLine = depth, t.Name.Local, g.line()
	g.p = position.Position{}
	for _, a := range t.Attr {
		var bit position.Fields
		switch a.Name.Local {
		case "lat":
			bit = position.FieldLat
		case "lon":
			bit = position.FieldLon
		default:
			continue
		}
		v, ok := parseNum(strings.TrimSpace(a.Value))
		if !ok {
			return errorf(g.pointLine, "<%s> %s=%q is not a number", g.pointName, a.Name.Local, a.Value)
		}
		setFloat(&g.p, bit, v)
	}
	for _, f := range [...]struct {
		bit  position.Fields
		name string
	}{{position.FieldLat, "lat"}, {position.FieldLon, "lon"}} {
		if !g.p.Has(f.bit) {
			return errorf(g.pointLine, "<%s> without the %s attribute", g.pointName, f.name)
		}
	}
	return nil
}

// end handles an end tag; done reports the end of the document.
func (g *gpxReader) end(name xml.Name) (done bool, err error) {
	depth := len(g.stack)
	if depth == 0 {
		return false, errorf(g.line(), "</%s> without a start tag", qname(name))
	}
	if open := g.stack[depth-1]; open != name {
		return false, errorf(g.line(), "<%s> closed by </%s>", qname(open), qname(name))
	}
	g.stack = g.stack[:depth-1]
	switch depth {
	case g.fieldDepth:
		g.fieldDepth = 0
		err = g.setField()
		g.field = gpxNone
	case g.ext:
		g.ext = 0
	case g.point:
		g.point = 0
		err = g.endPoint()
	case 1:
		return true, nil
	}
	return false, err
}

// setField sets the collected value in the point.
func (g *gpxReader) setField() error {
	v := bytes.TrimSpace(g.val)
	if len(v) == 0 {
		return nil
	}
	p := &g.p
	switch g.field {
	case gpxTime:
		t, ok := parseTime(v)
		if !ok {
			return errorf(g.line(), "<%s> %q is not an RFC 3339 time", g.fieldName, v)
		}
		p.Time = t
		p.Set |= position.FieldTime
	case gpxSat:
		n, ok := parseSats(v)
		if !ok {
			return errorf(g.line(), "<%s> %q is not a number of satellites", g.fieldName, v)
		}
		p.Sats = n
		p.Set |= position.FieldSats
	case gpxFix:
		fix, ok := parseFix(v)
		if !ok {
			return errorf(g.line(), "<%s> %q is not one of none, 2d, 3d, dgps, pps", g.fieldName, v)
		}
		p.Fix = fix
		p.Set |= position.FieldFix
	default:
		f, ok := parseNum(v)
		if !ok {
			return errorf(g.line(), "<%s> %q is not a number", g.fieldName, v)
		}
		setFloat(p, gpxFloats[g.field], f)
	}
	return nil
}

// endPoint hands on the point just closed.
func (g *gpxReader) endPoint() error {
	g.ext = 0
	if !g.p.Has(position.FieldTime) {
		return errorf(g.pointLine, "%s without <time>: trackgate stores positions by their time", g.pointName)
	}
	return g.s.add(&g.p, g.pointLine, g.pointName)
}

// qname returns the element name as written, with its prefix.
func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// charsetReader decodes the 8-bit encodings older GPX writers declare, as
// ISO 8859-1: numbers and times are ASCII in any of them.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252", "us-ascii", "ascii":
		br, ok := input.(io.ByteReader)
		if !ok {
			br = bufio.NewReader(input)
		}
		return &latin1Reader{r: br}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q: want UTF-8 or ISO 8859-1", label)
}

// latin1Reader decodes ISO 8859-1 into UTF-8, a byte at a time, as the XML
// decoder reads.
type latin1Reader struct {
	r       io.ByteReader
	pending byte // second byte of a two-byte sequence, 0 if none
}

func (l *latin1Reader) ReadByte() (byte, error) {
	if b := l.pending; b != 0 {
		l.pending = 0
		return b, nil
	}
	b, err := l.r.ReadByte()
	if err != nil || b < 0x80 {
		return b, err
	}
	l.pending = 0x80 | b&0x3F
	return 0xC0 | b>>6, nil
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	for i := range p {
		b, err := l.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = b
	}
	return len(p), nil
}

// errTokenTooLong is the error xmlInput returns for a token longer than
// maxXMLToken.
var errTokenTooLong = errors.New("XML token too long")

// xmlInput is the XML decoder's buffered input, as an io.ByteReader so that
// the decoder does not add a buffer of its own. It fails a token longer than
// maxXMLToken bytes (from the last call to mark), so that a hostile document
// cannot make the decoder buffer without bound.
type xmlInput struct {
	r     io.Reader
	buf   []byte
	i, n  int   // next byte and end of the data in buf
	stop  int   // the fast path reads up to here: n, or the limit
	base  int64 // offset of buf[0] in the input
	limit int64 // offset at which the current token is too long
	err   error // the error that ended the input, io.EOF at its end
}

func newXMLInput(r io.Reader) *xmlInput {
	return &xmlInput{r: r, buf: make([]byte, 64<<10)}
}

// mark starts a token.
func (x *xmlInput) mark() {
	x.limit = x.base + int64(x.i) + maxXMLToken
	x.setStop()
}

func (x *xmlInput) setStop() {
	x.stop = x.n
	if s := x.limit - x.base; s < int64(x.n) {
		x.stop = int(max(s, 0))
	}
}

// readErr returns the error of the reader, nil at the end of the input.
func (x *xmlInput) readErr() error {
	if x.err == io.EOF {
		return nil
	}
	return x.err
}

func (x *xmlInput) ReadByte() (byte, error) {
	if x.i < x.stop {
		b := x.buf[x.i]
		x.i++
		return b, nil
	}
	return x.slowByte()
}

// slowByte reads a byte at the limit or at the end of the buffer.
func (x *xmlInput) slowByte() (byte, error) {
	for empty := 0; ; empty++ {
		if x.i < x.n {
			return 0, errTokenTooLong
		}
		if x.err != nil {
			return 0, x.err
		}
		if empty == 100 {
			x.err = io.ErrNoProgress
			return 0, x.err
		}
		x.base += int64(x.n)
		n, err := x.r.Read(x.buf)
		x.i, x.n = 0, n
		x.err = err
		x.setStop()
		if x.i < x.stop {
			b := x.buf[x.i]
			x.i++
			return b, nil
		}
	}
}

func (x *xmlInput) Read(p []byte) (int, error) {
	for i := range p {
		b, err := x.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = b
	}
	return len(p), nil
}
