package position

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxPayload is the largest payload Decode accepts, in bytes.
const MaxPayload = 64 << 10

// maxDepth bounds the nesting of unknown values a payload may carry.
const maxDepth = 32

// Decode parses a payload holding one position object or an array of them,
// appending the positions to dst. It checks syntax and types, not ranges.
//
// An element of an array whose fields have the wrong types is rejected alone:
// its error is returned (with its index) and the other elements are kept. A
// payload that is not JSON, or is larger than MaxPayload, yields one error and
// no positions.
func Decode(data []byte, dst []Position) ([]Position, []*Error) {
	d := decoder{data: data}
	return d.payload(dst)
}

// Accept is Decode followed by Validate against now for each position: it
// appends the valid positions to dst and returns one error for each rejected
// element (or for the whole payload).
func Accept(data []byte, now time.Time, dst []Position) ([]Position, []*Error) {
	d := decoder{data: data, now: now, validate: true}
	return d.payload(dst)
}

// decoder is a single-pass reader of the flat JSON objects of the wire contract.
type decoder struct {
	data     []byte
	pos      int
	validate bool      // validate each position as it is decoded
	now      time.Time // the time validation measures "future" against
}

// payload decodes a whole payload: one object or an array of objects.
func (d *decoder) payload(dst []Position) ([]Position, []*Error) {
	if len(d.data) > MaxPayload {
		return dst, []*Error{{Index: -1, Reason: ReasonTooLarge,
			Detail: strconv.Itoa(len(d.data)) + " bytes, more than " + strconv.Itoa(MaxPayload)}}
	}
	start := len(dst)
	d.skipSpace()
	var errs []*Error
	var err *Error
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '{':
		var perr *Error
		if dst, perr, err = d.element(dst, -1); perr != nil {
			errs = append(errs, perr)
		}
	case d.pos < len(d.data) && d.data[d.pos] == '[':
		dst, errs, err = d.array(dst)
	default:
		err = d.syntax("want an object or an array of objects")
	}
	if err == nil {
		if d.skipSpace(); d.pos != len(d.data) {
			err = d.syntax("data after the value")
		}
	}
	if err != nil {
		return dst[:start], []*Error{err}
	}
	return dst, errs
}

// element decodes the object at the current position and appends it to dst,
// unless it has a type error or (when validating) is invalid: then it returns
// that error, marked with index.
func (d *decoder) element(dst []Position, index int) ([]Position, *Error, *Error) {
	dst = append(dst, Position{})
	p := &dst[len(dst)-1]
	perr, err := d.object(p, 1)
	if err != nil {
		return dst[:len(dst)-1], nil, err
	}
	if perr == nil && d.validate {
		perr = p.validate(d.now)
	}
	if perr != nil {
		perr.Index = index
		return dst[:len(dst)-1], perr, nil
	}
	return dst, nil, nil
}

func (d *decoder) syntax(msg string) *Error {
	return &Error{Index: -1, Reason: ReasonSyntax, Detail: "offset " + strconv.Itoa(d.pos) + ": " + msg}
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// expect consumes c after optional white space.
func (d *decoder) expect(c byte) bool {
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

// array decodes an array of objects. An element that is not an object, or is
// rejected, is reported and skipped.
func (d *decoder) array(dst []Position) ([]Position, []*Error, *Error) {
	var errs []*Error
	d.pos++ // '['
	if d.expect(']') {
		return dst, nil, nil
	}
	for i := 0; ; i++ {
		d.skipSpace()
		if d.pos < len(d.data) && d.data[d.pos] == '{' {
			var perr, err *Error
			if dst, perr, err = d.element(dst, i); err != nil {
				return dst, nil, err
			}
			if perr != nil {
				errs = append(errs, perr)
			}
		} else {
			if err := d.skipValue(1); err != nil {
				return dst, nil, err
			}
			errs = append(errs, &Error{Index: i, Reason: ReasonType, Detail: "element is not an object"})
		}
		if d.expect(',') {
			continue
		}
		if d.expect(']') {
			return dst, errs, nil
		}
		return dst, nil, d.syntax("want ',' or ']' in array")
	}
}

// object decodes one object into p. A syntax error (the second result) ends
// the decoding; the first type error (the first result) does not, so that the
// rest of an array can still be read.
func (d *decoder) object(p *Position, depth int) (perr, err *Error) {
	d.pos++ // '{'
	if d.expect('}') {
		return nil, nil
	}
	for {
		d.skipSpace()
		key, err := d.str()
		if err != nil {
			return nil, err
		}
		if !d.expect(':') {
			return nil, d.syntax("want ':' after object key")
		}
		d.skipSpace()
		ferr, err := d.field(p, key, depth)
		if err != nil {
			return nil, err
		}
		if perr == nil {
			perr = ferr
		}
		if d.expect(',') {
			continue
		}
		if d.expect('}') {
			return perr, nil
		}
		return nil, d.syntax("want ',' or '}' in object")
	}
}

// field decodes the value of key into p, or skips it when the key is unknown.
func (d *decoder) field(p *Position, key []byte, depth int) (*Error, *Error) {
	if d.null() {
		// null is the same as absent.
		switch string(key) {
		case "time":
			p.Set &^= FieldTime
		case "sats":
			p.Set &^= FieldSats
		case "fix":
			p.Set &^= FieldFix
		default:
			if i := floatFieldIndex(key); i >= 0 {
				p.Set &^= floatFields[i].bit
			}
		}
		return nil, nil
	}
	switch string(key) {
	case "time":
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return typeErr("time", "want an RFC 3339 string"), d.skipValue(depth + 1)
		}
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		var t time.Time
		if perr := t.UnmarshalText(s); perr != nil {
			return &Error{Field: "time", Reason: ReasonType, Detail: "not an RFC 3339 time: " + strconv.Quote(string(s))}, nil
		}
		p.Time, p.Set = t.UTC(), p.Set|FieldTime
		return nil, nil
	case "sats":
		v, ferr, err := d.number("sats", depth)
		if ferr != nil || err != nil {
			return ferr, err
		}
		if v != float64(int64(v)) || v < -1<<31 || v > 1<<31 {
			return &Error{Field: "sats", Reason: ReasonType, Detail: "not a whole number: " + string(appendFloat(nil, v))}, nil
		}
		p.Sats, p.Set = int(v), p.Set|FieldSats
		return nil, nil
	case "fix":
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return typeErr("fix", "want a string"), d.skipValue(depth + 1)
		}
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		p.Fix, p.Set = InternFix(s), p.Set|FieldFix
		return nil, nil
	}
	if i := floatFieldIndex(key); i >= 0 {
		f := &floatFields[i]
		v, ferr, err := d.number(f.name, depth)
		if ferr != nil || err != nil {
			return ferr, err
		}
		*f.ptr(p), p.Set = v, p.Set|f.bit
		return nil, nil
	}
	return nil, d.skipValue(depth + 1)
}

// floatFieldIndex returns the index in floatFields of the field named key, or -1.
func floatFieldIndex(key []byte) int {
	switch string(key) {
	case "lat":
		return 0
	case "lon":
		return 1
	case "alt":
		return 2
	case "geoid":
		return 3
	case "speed":
		return 4
	case "course":
		return 5
	case "hdop":
		return 6
	case "pdop":
		return 7
	case "vdop":
		return 8
	case "acc":
		return 9
	case "batt":
		return 10
	}
	return -1
}

// InternFix returns the known Fix spelled s without allocating, or a new one.
func InternFix(s []byte) Fix {
	for _, f := range fixes {
		if string(f) == string(s) {
			return f
		}
	}
	return Fix(s)
}

func typeErr(field, detail string) *Error {
	return &Error{Field: field, Reason: ReasonType, Detail: detail}
}

// null consumes a JSON null if one is next.
func (d *decoder) null() bool {
	if len(d.data)-d.pos >= 4 && string(d.data[d.pos:d.pos+4]) == "null" {
		d.pos += 4
		return true
	}
	return false
}

// number reads a JSON number for field; a value of another type is skipped and
// reported as a type error.
func (d *decoder) number(field string, depth int) (float64, *Error, *Error) {
	start := d.pos
	if d.pos >= len(d.data) || (d.data[d.pos] != '-' && (d.data[d.pos] < '0' || d.data[d.pos] > '9')) {
		return 0, typeErr(field, "want a number"), d.skipValue(depth + 1)
	}
	if err := d.skipNumber(); err != nil {
		return 0, nil, err
	}
	if v, ok := exactFloat(d.data[start:d.pos]); ok {
		return v, nil, nil
	}
	v, err := strconv.ParseFloat(string(d.data[start:d.pos]), 64)
	if err != nil {
		return 0, &Error{Field: field, Reason: ReasonRange, Detail: "number out of range: " + string(d.data[start:d.pos])}, nil
	}
	return v, nil, nil
}

// pow10 holds the powers of ten a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// exactFloat converts a JSON number without an exponent whose digits, read
// as an integer, stay below 2^53, with at most 22 after the point: that
// integer and the power of ten are exact float64s, so one division gives
// the correctly rounded value, as strconv.ParseFloat does (its own fast
// path), without its generality. ok is false for any other number.
func exactFloat(b []byte) (v float64, ok bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var m uint64
	digits := 0
	frac := -1 // digits after the point, once seen
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
			m = m*10 + uint64(c-'0')
			if m >= 1<<53 {
				return 0, false
			}
			if frac >= 0 {
				frac++
			}
		case c == '.' && frac < 0:
			frac = 0
		default:
			return 0, false
		}
	}
	if digits == 0 || frac > 22 {
		return 0, false
	}
	v = float64(m)
	if frac > 0 {
		v /= pow10[frac]
	}
	if neg {
		v = -v
	}
	return v, true
}

// skipNumber consumes a number following the JSON grammar.
func (d *decoder) skipNumber() *Error {
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.pos < len(d.data) && d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		d.digits()
	default:
		return d.syntax("bad number")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return d.syntax("bad number: no digits after '.'")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return d.syntax("bad number: no digits in exponent")
		}
	}
	return nil
}

func (d *decoder) digits() int {
	start := d.pos
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos - start
}

// str reads a string and returns its contents, unescaped. Strings without
// escapes are returned as a slice of the input.
func (d *decoder) str() ([]byte, *Error) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return nil, d.syntax("want a string")
	}
	d.pos++
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			return s, nil
		case c == '\\':
			return d.unescape(start)
		case c < 0x20:
			return nil, d.syntax("control character in string")
		}
		d.pos++
	}
	return nil, d.syntax("unterminated string")
}

// unescape finishes a string that holds escapes, from its first escape on.
func (d *decoder) unescape(start int) ([]byte, *Error) {
	out := append([]byte(nil), d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return out, nil
		case c < 0x20:
			return nil, d.syntax("control character in string")
		case c != '\\':
			out = append(out, c)
			d.pos++
			continue
		}
		if d.pos+1 >= len(d.data) {
			break
		}
		e := d.data[d.pos+1]
		d.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return nil, d.syntax("bad \\u escape")
			}
			if utf16Surrogate(r) {
				// A pair \uD8xx\uDCxx makes one rune; a lone half becomes U+FFFD.
				save := d.pos
				if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					d.pos += 2
					if r2, ok := d.hex4(); ok && r >= 0xD800 && r < 0xDC00 && r2 >= 0xDC00 && r2 < 0xE000 {
						r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					} else {
						d.pos = save
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, d.syntax("bad escape in string")
		}
	}
	return nil, d.syntax("unterminated string")
}

func utf16Surrogate(r rune) bool { return r >= 0xD800 && r < 0xE000 }

func (d *decoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

// skipValue consumes any JSON value, nested at most maxDepth deep.
func (d *decoder) skipValue(depth int) *Error {
	if depth > maxDepth {
		return d.syntax("nested too deeply")
	}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.syntax("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{':
		d.pos++
		if d.expect('}') {
			return nil
		}
		for {
			d.skipSpace()
			if _, err := d.str(); err != nil {
				return err
			}
			if !d.expect(':') {
				return d.syntax("want ':' after object key")
			}
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			if d.expect(',') {
				continue
			}
			if d.expect('}') {
				return nil
			}
			return d.syntax("want ',' or '}' in object")
		}
	case c == '[':
		d.pos++
		if d.expect(']') {
			return nil
		}
		for {
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			if d.expect(',') {
				continue
			}
			if d.expect(']') {
				return nil
			}
			return d.syntax("want ',' or ']' in array")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return d.skipNumber()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(d.data)-d.pos >= len(lit) && string(d.data[d.pos:d.pos+len(lit)]) == lit {
			d.pos += len(lit)
			return nil
		}
	}
	return d.syntax("invalid value")
}
