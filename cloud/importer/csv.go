package importer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"trackgate/internal/position"
)

// csvColumn is a column of a CSV file the importer reads.
type csvColumn uint8

const (
	colTime csvColumn = iota
	colLat
	colLon
	colAlt
	colSpeed
	colCourse
	colHDOP
	colSats
	colFix
	colAcc
	colBatt
	colPDOP
	colVDOP
	colGeoid
	numColumns
)

// csvNames maps the header names, in lower case, to the columns.
var csvNames = map[string]csvColumn{
	"time": colTime, "timestamp": colTime, "datetime": colTime, "date_time": colTime, "utc": colTime,
	"lat": colLat, "latitude": colLat,
	"lon": colLon, "lng": colLon, "long": colLon, "longitude": colLon,
	"alt": colAlt, "altitude": colAlt, "ele": colAlt, "elevation": colAlt,
	"speed":  colSpeed,
	"course": colCourse, "bearing": colCourse, "heading": colCourse,
	"hdop": colHDOP,
	"sats": colSats, "satellites": colSats,
	"fix": colFix,
	"acc": colAcc, "accuracy": colAcc,
	"batt": colBatt, "battery": colBatt,
	"pdop":  colPDOP,
	"vdop":  colVDOP,
	"geoid": colGeoid,
}

// csvFloats maps the decimal columns to their fields.
var csvFloats = [numColumns]position.Fields{
	colLat: position.FieldLat, colLon: position.FieldLon, colAlt: position.FieldAlt, colSpeed: position.FieldSpeed,
	colCourse: position.FieldCourse, colHDOP: position.FieldHDOP, colAcc: position.FieldAcc, colBatt: position.FieldBatt,
	colPDOP: position.FieldPDOP, colVDOP: position.FieldVDOP, colGeoid: position.FieldGeoid,
}

// csvCell is a column present in the file: its index in a row, and its name
// in the header for the error messages.
type csvCell struct {
	col   csvColumn
	index int
	name  string
	// decimalComma accepts a decimal comma in a number, as spreadsheets
	// write them in many locales, when the delimiter is not a comma.
	decimalComma bool
}

// maxCSVRecord caps a record of a CSV file (a line, or more when a quoted
// cell holds line ends), so that a file without line ends, or with an
// unterminated quote, cannot make the reader buffer without bound.
const maxCSVRecord = 1 << 20

// errRecordTooLong is the error csvInput returns for a record longer than
// maxCSVRecord.
var errRecordTooLong = errors.New("record too long")

// csvInput is the input of the CSV reader: it fails a record longer than
// maxCSVRecord, and remembers the reader's own error.
type csvInput struct {
	r      io.Reader
	lines  int  // line ends read
	start  int  // the line where the current record starts
	run    int  // bytes read since it started
	quoted bool // inside a quoted cell (an escaped quote toggles twice)
	long   int  // the line of the record that is too long, 0 if none
	err    error
}

func (c *csvInput) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	for b := p[:n]; ; {
		i := bytes.IndexAny(b, "\"\n")
		if i < 0 {
			c.run += len(b)
			break
		}
		if c.run += i + 1; c.run > maxCSVRecord {
			break
		}
		if b[i] == '"' {
			c.quoted = !c.quoted
		} else if c.lines++; !c.quoted {
			c.start, c.run = c.lines, 0
		}
		b = b[i+1:]
	}
	if c.run > maxCSVRecord {
		c.long = c.start + 1
		return n, errRecordTooLong
	}
	return n, err
}

// readCSV reads a CSV file into s.
func readCSV(r io.Reader, s *sink) error {
	in := &csvInput{r: r}
	br := newBuffered(in, 64<<10)
	head, _ := br.Peek(4096) // a short peek is the whole file, or fails again below
	cr := csv.NewReader(br)
	cr.Comma = sniffDelimiter(head)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	// Cells are trimmed anyway; trimming in the reader also lets a quoted
	// cell follow a space, but with tabs it would merge empty cells.
	cr.TrimLeadingSpace = cr.Comma != '\t'
	fail := func(err error) error {
		if in.err != nil {
			return fmt.Errorf("importer csv: read: %w", in.err)
		}
		if in.long > 0 {
			return errorf(in.long, "a record (a line, or more in quotes) longer than %d bytes", maxCSVRecord)
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			return errorf(pe.Line, "CSV: %v (byte %d of the line)", pe.Err, pe.Column)
		}
		return fmt.Errorf("importer csv: %w", err)
	}
	header, err := cr.Read()
	if err == io.EOF {
		return errorf(1, "empty file: want a header row with time, lat and lon columns")
	}
	if err != nil {
		return fail(err)
	}
	headerLine, _ := cr.FieldPos(0)
	cells, err := csvHeader(header, headerLine, cr.Comma != ',')
	if err != nil {
		return err
	}
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		var p position.Position
		for _, c := range cells {
			if c.index >= len(row) {
				continue
			}
			if err := csvSet(&p, c, strings.TrimSpace(row[c.index])); err != nil {
				line, _ := cr.FieldPos(c.index)
				return &Error{Line: line, Msg: err.Error()}
			}
		}
		line, _ := cr.FieldPos(0)
		for _, f := range [...]struct {
			bit       position.Fields
			name, why string
		}{{position.FieldTime, "time", ": trackgate stores positions by their time"}, {position.FieldLat, "lat", ""}, {position.FieldLon, "lon", ""}} {
			if !p.Has(f.bit) {
				return errorf(line, "row without %s%s", f.name, f.why)
			}
		}
		if err := s.add(&p, line, "row"); err != nil {
			return err
		}
	}
}

// sniffDelimiter returns the delimiter of the header row, the first line
// of head that is not blank: the most frequent of comma, semicolon and tab
// outside quotes (comma if none).
func sniffDelimiter(head []byte) rune {
	for {
		line, rest, _ := bytes.Cut(head, []byte{'\n'})
		if len(bytes.TrimSpace(line)) > 0 || len(rest) == 0 {
			head = line
			break
		}
		head = rest
	}
	var n [3]int
	quoted := false
	for _, c := range head {
		switch c {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				n[0]++
			}
		case ';':
			if !quoted {
				n[1]++
			}
		case '\t':
			if !quoted {
				n[2]++
			}
		}
	}
	switch {
	case n[1] > n[0] && n[1] >= n[2]:
		return ';'
	case n[2] > n[0] && n[2] > n[1]:
		return '\t'
	}
	return ','
}

// csvHeader maps the header row to the columns present, and fails when
// time, lat or lon is missing.
func csvHeader(header []string, line int, decimalComma bool) ([]csvCell, error) {
	var seen [numColumns]bool
	var cells []csvCell
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		c, ok := csvNames[name]
		if !ok || seen[c] {
			continue
		}
		seen[c] = true
		cells = append(cells, csvCell{col: c, index: i, name: name, decimalComma: decimalComma})
	}
	var missing []string
	for _, c := range [...]struct {
		col  csvColumn
		name string
	}{{colTime, "time"}, {colLat, "lat"}, {colLon, "lon"}} {
		if !seen[c.col] {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return nil, errorf(line, "the header has no %s column: want time, lat and lon columns (found %q)",
			strings.Join(missing, ", no "), header)
	}
	return cells, nil
}

// csvSet sets the field of column c in p to v, an empty cell being an
// absent field.
func csvSet(p *position.Position, c csvCell, v string) error {
	if v == "" {
		return nil
	}
	switch c.col {
	case colTime:
		t, ok := parseTime(v)
		if !ok {
			if t, ok = parseEpoch(v); !ok {
				return fmt.Errorf("column %s: %q is not an RFC 3339 time, \"2006-01-02 15:04:05\" (UTC) or epoch seconds or milliseconds", c.name, v)
			}
		}
		p.Time = t
		p.Set |= position.FieldTime
	case colSats:
		n, ok := parseSats(v)
		if !ok {
			return fmt.Errorf("column %s: %q is not a number of satellites", c.name, v)
		}
		p.Sats = n
		p.Set |= position.FieldSats
	case colFix:
		fix, ok := parseFix(v)
		if !ok {
			return fmt.Errorf("column %s: %q is not one of none, 2d, 3d, dgps, rtk, float, dr", c.name, v)
		}
		p.Fix = fix
		p.Set |= position.FieldFix
	default:
		if c.decimalComma && strings.Count(v, ",") == 1 && !strings.Contains(v, ".") {
			v = strings.Replace(v, ",", ".", 1)
		}
		f, ok := parseNum(v)
		if !ok {
			return fmt.Errorf("column %s: %q is not a number", c.name, v)
		}
		setFloat(p, csvFloats[c.col], f)
	}
	return nil
}
