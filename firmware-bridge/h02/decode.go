package h02

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"trackgate/internal/position"
)

// MaxMessage is the largest message accepted, in bytes.
const MaxMessage = 512

// binaryLen is the length of a binary message: the 32-byte record of the
// protocol document ('$', 5 bytes of BCD terminal number, BCD time and
// date, packed latitude, a battery byte, packed longitude with the flags
// nibble, BCD speed and course, the vehicle status, the alarm flag, a
// reserved byte and the record number). Firmware that appends cell data to
// it (45 or 47 bytes) cannot be framed without being told its length: the
// record does not say it.
const binaryLen = 32

// Sentinel errors of broken streams and messages, checked with errors.Is.
var (
	// ErrStart is a byte that cannot start a message where one must start.
	ErrStart = errors.New("h02: byte cannot start a message")
	// ErrTooLong is a text message longer than MaxMessage.
	ErrTooLong = errors.New("h02: message longer than MaxMessage")
	// ErrShort is a message cut short: the stream ends inside it.
	ErrShort = errors.New("h02: message cut short")
)

// Error is a decoding error naming the field that failed (e.g. "latitude",
// "date"), wrapping a sentinel where one applies.
type Error struct {
	Field string // the field at fault, or "start", "length", "end", "message", "fields" for the frame
	Msg   string // what was wrong, for people
	Err   error  // ErrStart, ErrTooLong, ErrShort or nil
}

// Error formats e as "h02: field: msg".
func (e *Error) Error() string { return "h02: " + e.Field + ": " + e.Msg }

// Unwrap returns the sentinel e wraps, if any.
func (e *Error) Unwrap() error { return e.Err }

// Message is one decoded message.
type Message struct {
	Maker    string             // the maker letters after '*', usually "HQ"; "" for binary messages
	IMEI     string             // the device id field (often 10 or 15 digits)
	Type     string             // V1, V4, NBR, LINK, HTBT, ...; "" for binary position messages
	Binary   bool               // the '$' form
	Position *position.Position // set for messages that carry a GPS location; nil otherwise
	Valid    bool               // the fix was valid (A); Position is still filled when false
	Batt     float64            // battery level in percent when the message reports one, with HasBatt
	HasBatt  bool               // the message reports its battery level (in Batt, and in Position when set)
}

// ScanMessages is a bufio.SplitFunc yielding whole messages: text from '*'
// through '#', or a binary message from '$' of its fixed length (32 bytes).
// Line breaks between messages are skipped. It returns an error (never skips
// silently) when the stream is broken: a byte that cannot start a message
// (ErrStart), a text message longer than MaxMessage without its '#'
// (ErrTooLong), or, at EOF, a partial message (ErrShort). It never asks for
// more than MaxMessage bytes.
func ScanMessages(data []byte, atEOF bool) (advance int, token []byte, err error) {
	skip := 0
	for skip < len(data) && (data[skip] == '\r' || data[skip] == '\n') {
		skip++
	}
	rest := data[skip:]
	if len(rest) == 0 {
		return skip, nil, nil
	}
	switch rest[0] {
	case '*':
		if i := bytes.IndexByte(rest[:min(len(rest), MaxMessage)], '#'); i >= 0 {
			return skip + i + 1, rest[:i+1], nil
		}
		if len(rest) >= MaxMessage {
			return 0, nil, &Error{Field: "length", Msg: "no '#' within " + strconv.Itoa(MaxMessage) + " bytes of '*'", Err: ErrTooLong}
		}
	case '$':
		if len(rest) >= binaryLen {
			return skip + binaryLen, rest[:binaryLen], nil
		}
	default:
		return 0, nil, &Error{Field: "start", Msg: "byte " + hexByte(rest[0]) + " cannot start a message", Err: ErrStart}
	}
	if atEOF {
		return 0, nil, &Error{Field: "length", Msg: "stream ends " + strconv.Itoa(len(rest)) + " bytes into a message", Err: ErrShort}
	}
	return skip, nil, nil
}

// Decode decodes one whole message as ScanMessages yields it. It is safe on
// any byte slice.
//
// now is used only for a fix with a time but no date: it gets the UTC day
// of now, or the day before or after, whichever puts it latest but no more
// than dateSlack ahead of now. A VP1 fix, with a date but no time of day,
// makes no Position (Valid still says whether it was valid).
//
// Unknown types of a well-formed frame are not an error: they decode to a
// Message with Maker, IMEI and Type set. On error the Message holds the
// header fields decoded before the failure, never a Position: send no reply
// for it.
func Decode(msg []byte, now time.Time) (Message, error) {
	if len(msg) == 0 {
		return Message{}, &Error{Field: "length", Msg: "empty message", Err: ErrShort}
	}
	switch msg[0] {
	case '*':
		return decodeText(msg, now)
	case '$':
		return decodeBinary(msg)
	}
	return Message{}, &Error{Field: "start", Msg: "byte " + hexByte(msg[0]) + " cannot start a message", Err: ErrStart}
}

// AppendReply appends to dst the server's reply to m, stamped with now in
// UTC, and returns it: "*HQ,IMEI,V4,V1,yyyyMMddHHmmss#" for V1 (and the
// same with NBR for NBR), the heartbeat echoed as "*HQ,IMEI,HTBT#", nothing
// for the other messages (binary ones included). The maker letters are the
// device's own.
func AppendReply(dst []byte, m Message, now time.Time) []byte {
	if m.Binary || m.Maker == "" || m.IMEI == "" {
		return dst
	}
	switch m.Type {
	case "V1", "NBR":
		dst = appendHeader(dst, m, "V4")
		dst = append(dst, ',')
		dst = append(dst, m.Type...)
		dst = append(dst, ',')
		dst = now.UTC().AppendFormat(dst, "20060102150405")
		return append(dst, '#')
	case "HTBT":
		return append(appendHeader(dst, m, "HTBT"), '#')
	}
	return dst
}

// appendHeader appends "*maker,imei,typ" to dst.
func appendHeader(dst []byte, m Message, typ string) []byte {
	dst = append(dst, '*')
	dst = append(dst, m.Maker...)
	dst = append(dst, ',')
	dst = append(dst, m.IMEI...)
	dst = append(dst, ',')
	return append(dst, typ...)
}

// Limits of the values decoded.
const (
	// knot is one knot in metres per second (1852 m an hour).
	knot = 1852.0 / 3600
	// maxSpeed is the largest speed the position model accepts, m/s.
	maxSpeed = 2000
	// maxKnots is maxSpeed in whole knots, for messages.
	maxKnots = maxSpeed * 3600 / 1852
	// dateSlack is how far ahead of now a time given without its date may
	// be put on the day of now; later, it is put on the day before.
	dateSlack = 3 * time.Hour
	// maxFields bounds the fields of a text message that are split without
	// allocating; longer messages are split too, only on the heap.
	maxFields = 48
)

// decodeText decodes a text message: "*maker,imei,type,...#".
func decodeText(msg []byte, now time.Time) (Message, error) {
	if len(msg) > MaxMessage {
		return Message{}, &Error{Field: "length", Msg: strconv.Itoa(len(msg)) + " bytes, more than " + strconv.Itoa(MaxMessage), Err: ErrTooLong}
	}
	if msg[len(msg)-1] != '#' {
		return Message{}, &Error{Field: "end", Msg: "no '#' at the end", Err: ErrShort}
	}
	body := msg[1 : len(msg)-1]
	for i, c := range body {
		if c < 0x20 || c > 0x7e || c == '#' {
			return Message{}, &Error{Field: "message", Msg: "byte " + hexByte(c) + " at offset " + strconv.Itoa(i+1)}
		}
	}
	var buf [maxFields][]byte
	f := buf[:0]
	for {
		i := bytes.IndexByte(body, ',')
		if i < 0 {
			f = append(f, body)
			break
		}
		f = append(f, body[:i])
		body = body[i+1:]
	}

	var m Message
	if !isLetters(f[0]) || len(f[0]) > 8 {
		return m, &Error{Field: "maker", Msg: strconv.Quote(string(f[0])) + " is not 1 to 8 letters"}
	}
	m.Maker = intern(f[0])
	if len(f) < 2 || len(f[1]) == 0 {
		return m, &Error{Field: "imei", Msg: "missing"}
	}
	if !isDigits(f[1]) || len(f[1]) > 20 {
		return m, &Error{Field: "imei", Msg: strconv.Quote(string(f[1])) + " is not 1 to 20 digits"}
	}
	m.IMEI = string(f[1])
	if len(f) < 3 || len(f[2]) == 0 {
		return m, &Error{Field: "type", Msg: "missing"}
	}
	if !isAlnum(f[2]) || len(f[2]) > 8 {
		return m, &Error{Field: "type", Msg: strconv.Quote(string(f[2])) + " is not 1 to 8 letters and digits"}
	}
	m.Type = intern(f[2])
	rest := f[3:]

	var err *Error
	switch m.Type {
	case "V1":
		var tail [][]byte
		if m.Position, m.Valid, tail, err = decodeFix(rest, now); err != nil {
			return m, err
		}
		// The status, then MCC, MNC, LAC, cell id and the battery level.
		if len(tail) == 6 {
			if lvl, ok := level(tail[5]); ok {
				m.Batt, m.HasBatt = lvl, true
			}
		}
	case "V2", "V5", "V19", "VI1":
		if m.Position, m.Valid, _, err = decodeFix(rest, now); err != nil {
			return m, err
		}
	case "V4":
		// The command confirmed and its parameters, the command's time,
		// then the fix: it starts where N or S and E or W are in place.
		for k := 2; k+9 <= len(rest); k++ {
			if isOneOf(rest[k+3], 'N', 'S') && isOneOf(rest[k+5], 'E', 'W') {
				if m.Position, m.Valid, _, err = decodeFix(rest[k:], now); err != nil {
					return m, err
				}
				break
			}
		}
	case "VP1":
		if m.Valid, err = decodeVP1(rest); err != nil {
			return m, err
		}
	case "LINK":
		// Time, signal, satellites, battery percent, steps, turnovers,
		// date, status.
		if len(rest) < 4 {
			return m, &Error{Field: "battery", Msg: "missing"}
		}
		if m.Batt, err = percent(rest[3]); err != nil {
			return m, err
		}
		m.HasBatt = true
	case "HTBT":
		if len(rest) > 0 && len(rest[0]) > 0 {
			if m.Batt, err = percent(rest[0]); err != nil {
				return m, err
			}
			m.HasBatt = true
		}
	}
	if m.HasBatt && m.Position != nil {
		m.Position.Batt = m.Batt
		m.Position.Set |= position.FieldBatt
	}
	return m, nil
}

// decodeFix decodes the fix fields of f: time, validity, latitude and its
// hemisphere, longitude and its hemisphere, speed, course and date (some
// firmware puts one more number before the date). It returns the position,
// whether the fix is valid, and the fields after the date. An invalid fix
// without its time, coordinates or date (",V,,N,,E," or a date of 000000)
// is no position and no error.
func decodeFix(f [][]byte, now time.Time) (*position.Position, bool, [][]byte, *Error) {
	if len(f) < 9 {
		return nil, false, nil, &Error{Field: "fields", Msg: strconv.Itoa(len(f)) + " fields after the type, want at least 9 from time to date"}
	}
	date := 8
	if len(f[8]) > 0 && len(f[8]) != 6 && isDigits(f[8]) && len(f) > 9 && len(f[9]) == 6 && isDigits(f[9]) {
		date = 9
	}
	tail := f[date+1:]

	var valid bool
	switch v := f[1]; {
	case string(v) == "A":
		valid = true
	case string(v) == "V", len(v) == 0, isDigits(v) && len(v) <= 2:
		// V, nothing, or the coding scheme some firmware sends there:
		// none of them says the fix is valid.
	default:
		return nil, false, nil, &Error{Field: "validity", Msg: strconv.Quote(string(v)) + " is not A or V"}
	}
	if !valid && (len(f[0]) == 0 || len(f[2]) == 0 || len(f[4]) == 0 || string(f[date]) == "000000") {
		return nil, false, tail, nil
	}

	if len(f[0]) == 0 {
		return nil, false, nil, &Error{Field: "time", Msg: "missing"}
	}
	h, mi, s, ok := clock(f[0])
	if !ok {
		return nil, false, nil, &Error{Field: "time", Msg: strconv.Quote(string(f[0])) + " is not HHMMSS"}
	}
	var t time.Time
	if len(f[date]) == 0 {
		t = nearDay(now, h, mi, s)
	} else {
		y, mo, d, ok := calendar(f[date])
		if !ok {
			return nil, false, nil, &Error{Field: "date", Msg: strconv.Quote(string(f[date])) + " is not DDMMYY"}
		}
		t = time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	p, err := fix(t, valid, f[2], f[3], f[4], f[5], f[6], f[7])
	if err != nil {
		return nil, false, nil, err
	}
	return p, valid, tail, nil
}

// decodeVP1 decodes the validity of a VP1 message: "V,mcc,mnc,cells" (no
// fix) or "A,lat,N,lon,E,speed,course,DDMMYY". Its fix has a date but no
// time of day, so it makes no position.
func decodeVP1(f [][]byte) (bool, *Error) {
	switch {
	case len(f) == 0:
		return false, &Error{Field: "validity", Msg: "missing"}
	case string(f[0]) == "A":
		return true, nil
	case string(f[0]) == "V":
		return false, nil
	}
	return false, &Error{Field: "validity", Msg: strconv.Quote(string(f[0])) + " is not A or V"}
}

// fix builds the position of a text fix from its fields.
func fix(t time.Time, valid bool, lat, ns, lon, ew, speed, course []byte) (*position.Position, *Error) {
	p := &position.Position{Time: t, Fix: position.FixNone,
		Set: position.FieldTime | position.FieldLat | position.FieldLon | position.FieldSpeed | position.FieldCourse | position.FieldFix}
	if valid {
		p.Fix = position.Fix2D
	}
	var err *Error
	if p.Lat, err = coordinate(lat, ns, "latitude", 'N', 'S', 90); err != nil {
		return nil, err
	}
	if p.Lon, err = coordinate(lon, ew, "longitude", 'E', 'W', 180); err != nil {
		return nil, err
	}
	// An empty speed or course is 0, as the protocol document says.
	if s := trimSpace(speed); len(s) > 0 {
		v, ok := decimal(s)
		if !ok || v*knot > maxSpeed {
			return nil, &Error{Field: "speed", Msg: strconv.Quote(string(speed)) + " is not a speed in knots up to " + strconv.Itoa(maxKnots)}
		}
		p.Speed = v * knot
	}
	if c := trimSpace(course); len(c) > 0 {
		v, ok := decimal(c)
		if !ok || v >= 360 {
			return nil, &Error{Field: "course", Msg: strconv.Quote(string(course)) + " is not a course in [0, 360)"}
		}
		p.Course = v
	}
	return p, nil
}

// coordinate decodes a latitude or longitude field and its hemisphere field
// (pos or neg) into degrees, negative for neg, of at most limit. The field
// is degrees and minutes: DDMM.MMMM (any number of degree digits, even none,
// and of decimals), -DD-MM.MMMM, or DDMMMMMM with 4 implied decimals.
func coordinate(val, hemi []byte, name string, pos, neg byte, limit int) (float64, *Error) {
	var deg []byte
	var minutes float64
	ok := false
	switch dot := bytes.IndexByte(val, '.'); {
	case len(val) > 0 && val[0] == '-':
		if i := bytes.IndexByte(val[1:], '-') + 1; i > 1 {
			deg = val[1:i]
			minutes, ok = decimal(val[i+1:])
		}
	case dot > 0:
		deg = val[:max(dot-2, 0)]
		minutes, ok = decimal(val[len(deg):])
	case dot < 0 && len(val) >= 7 && len(val) <= 9:
		deg = val[:len(val)-6]
		var m int
		m, ok = number(val[len(val)-6:])
		minutes = float64(m) / 1e4
	}
	d := 0
	if len(deg) > 0 {
		var dok bool
		d, dok = number(deg)
		ok = ok && dok && len(deg) <= 3
	}
	if !ok {
		return 0, &Error{Field: name, Msg: strconv.Quote(string(val)) + " is not degrees and minutes"}
	}
	if minutes >= 60 {
		return 0, &Error{Field: name, Msg: strconv.Quote(string(val)) + " has minutes not below 60"}
	}
	v := float64(d) + minutes/60
	if v > float64(limit) {
		return 0, &Error{Field: name, Msg: strconv.Quote(string(val)) + " is more than " + strconv.Itoa(limit) + " degrees"}
	}
	switch {
	case isOneOf(hemi, pos, pos):
		return v, nil
	case isOneOf(hemi, neg, neg):
		return -v, nil
	}
	return 0, &Error{Field: name, Msg: "hemisphere " + strconv.Quote(string(hemi)) + " is not " + string(pos) + " or " + string(neg)}
}

// decodeBinary decodes a binary message, the 32-byte record of binaryLen.
// The battery byte is reserved in the protocol document; devices put a
// level from 1 to 6 in it, or 0 for none.
func decodeBinary(b []byte) (Message, error) {
	m := Message{Binary: true}
	if len(b) != binaryLen {
		e := &Error{Field: "length", Msg: strconv.Itoa(len(b)) + " bytes, want " + strconv.Itoa(binaryLen)}
		if len(b) < binaryLen {
			e.Err = ErrShort
		}
		return m, e
	}
	var id [10]byte
	for i := range id {
		d := nibble(b[1:6], i)
		if d > 9 {
			return m, &Error{Field: "imei", Msg: "BCD " + hexBytes(b[1:6]) + " is not 10 digits"}
		}
		id[i] = '0' + d
	}
	m.IMEI = string(id[:])

	h, ok1 := bcd(b[6:], 0, 2)
	mi, ok2 := bcd(b[6:], 2, 2)
	s, ok3 := bcd(b[6:], 4, 2)
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || s > 59 {
		return m, &Error{Field: "time", Msg: "BCD " + hexBytes(b[6:9]) + " is not HHMMSS"}
	}
	d, ok1 := bcd(b[9:], 0, 2)
	mo, ok2 := bcd(b[9:], 2, 2)
	y, ok3 := bcd(b[9:], 4, 2)
	if !ok1 || !ok2 || !ok3 || !validDate(2000+y, mo, d) {
		return m, &Error{Field: "date", Msg: "BCD " + hexBytes(b[9:12]) + " is not DDMMYY"}
	}
	flags := b[21] & 0x0f
	valid := flags&0x2 != 0
	p := &position.Position{Time: time.Date(2000+y, time.Month(mo), d, h, mi, s, 0, time.UTC), Fix: position.FixNone,
		Set: position.FieldTime | position.FieldLat | position.FieldLon | position.FieldSpeed | position.FieldCourse | position.FieldFix}
	if valid {
		p.Fix = position.Fix2D
	}
	var err *Error
	if p.Lat, err = packed(b[12:16], 2, "latitude", 90, flags&0x4 == 0); err != nil {
		return m, err
	}
	if p.Lon, err = packed(b[17:22], 3, "longitude", 180, flags&0x8 == 0); err != nil {
		return m, err
	}
	speed, ok1 := bcd(b[22:], 0, 3)
	course, ok2 := bcd(b[22:], 3, 3)
	if !ok1 {
		return m, &Error{Field: "speed", Msg: "BCD " + hexBytes(b[22:24]) + " is not a speed in knots"}
	}
	if !ok2 || course >= 360 {
		return m, &Error{Field: "course", Msg: "BCD " + hexBytes(b[23:25]) + " is not a course in [0, 360)"}
	}
	p.Speed = float64(speed) * knot
	p.Course = float64(course)
	if lvl := b[16]; lvl >= 1 && lvl <= 6 {
		m.Batt, m.HasBatt = levelPercent(int(lvl)), true
		p.Batt = m.Batt
		p.Set |= position.FieldBatt
	}
	m.Position, m.Valid = p, valid
	return m, nil
}

// packed decodes the BCD degrees and minutes in b: degDigits digits of
// degrees, 2 of minutes and 4 of their decimals, negative if neg, of at
// most limit.
func packed(b []byte, degDigits int, name string, limit int, neg bool) (float64, *Error) {
	d, ok1 := bcd(b, 0, degDigits)
	m, ok2 := bcd(b, degDigits, 6)
	if !ok1 || !ok2 {
		return 0, &Error{Field: name, Msg: "BCD " + hexBytes(b) + " is not degrees and minutes"}
	}
	minutes := float64(m) / 1e4
	if minutes >= 60 {
		return 0, &Error{Field: name, Msg: "BCD " + hexBytes(b) + " has minutes not below 60"}
	}
	v := float64(d) + minutes/60
	if v > float64(limit) {
		return 0, &Error{Field: name, Msg: "BCD " + hexBytes(b) + " is more than " + strconv.Itoa(limit) + " degrees"}
	}
	if neg {
		v = -v
	}
	return v, nil
}

// nibble returns the i-th half byte of b, high half first.
func nibble(b []byte, i int) byte {
	if i%2 == 0 {
		return b[i/2] >> 4
	}
	return b[i/2] & 0x0f
}

// bcd decodes n BCD digits of b from half byte from.
func bcd(b []byte, from, n int) (int, bool) {
	v := 0
	for i := from; i < from+n; i++ {
		d := nibble(b, i)
		if d > 9 {
			return 0, false
		}
		v = v*10 + int(d)
	}
	return v, true
}

// level decodes a battery level from 1 (empty) to 6 (full).
func level(b []byte) (float64, bool) {
	n, ok := number(trimSpace(b))
	if !ok || n < 1 || n > 6 {
		return 0, false
	}
	return levelPercent(n), true
}

// levelPercent converts a battery level from 1 (empty) to 6 (full) to
// percent, in steps of 20.
func levelPercent(n int) float64 { return float64(n-1) * 20 }

// percent decodes a battery field in percent.
func percent(b []byte) (float64, *Error) {
	n, ok := number(trimSpace(b))
	if !ok || n > 100 {
		return 0, &Error{Field: "battery", Msg: strconv.Quote(string(b)) + " is not a percentage"}
	}
	return float64(n), nil
}

// clock decodes HHMMSS.
func clock(b []byte) (h, m, s int, ok bool) {
	if len(b) != 6 {
		return 0, 0, 0, false
	}
	h, ok1 := number(b[0:2])
	m, ok2 := number(b[2:4])
	s, ok3 := number(b[4:6])
	return h, m, s, ok1 && ok2 && ok3 && h < 24 && m < 60 && s < 60
}

// calendar decodes DDMMYY, the year in this century.
func calendar(b []byte) (y int, m time.Month, d int, ok bool) {
	if len(b) != 6 {
		return 0, 0, 0, false
	}
	d, ok1 := number(b[0:2])
	mo, ok2 := number(b[2:4])
	y, ok3 := number(b[4:6])
	y += 2000
	return y, time.Month(mo), d, ok1 && ok2 && ok3 && validDate(y, mo, d)
}

// validDate reports whether d/m/y is a day of the calendar.
func validDate(y, m, d int) bool {
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Day() == d
}

// nearDay returns h:m:s on the UTC day of now, or on the day before or
// after: the latest of them no more than dateSlack ahead of now.
func nearDay(now time.Time, h, m, s int) time.Time {
	n := now.UTC()
	t := time.Date(n.Year(), n.Month(), n.Day(), h, m, s, 0, time.UTC)
	limit := n.Add(dateSlack)
	if t.After(limit) {
		return t.AddDate(0, 0, -1)
	}
	if next := t.AddDate(0, 0, 1); !next.After(limit) {
		return next
	}
	return t
}

// pow10 holds the powers of ten decimal divides by, all exact in a float64.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// decimal decodes an unsigned decimal number: digits with at most one '.'
// and at least one digit, 15 digits at most. The result is the correctly
// rounded value, as strconv.ParseFloat gives it, without its other forms
// (signs, exponents, hexadecimal, infinities, NaN).
func decimal(b []byte) (float64, bool) {
	var mant uint64
	digits, scale, dot := 0, 0, false
	for _, c := range b {
		switch {
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			if digits++; dot {
				scale++
			}
		default:
			return 0, false
		}
	}
	if digits == 0 || digits >= len(pow10) {
		return 0, false
	}
	return float64(mant) / pow10[scale], true
}

// number decodes 1 to 9 decimal digits.
func number(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// trimSpace removes the spaces some firmware pads numbers with.
func trimSpace(b []byte) []byte { return bytes.Trim(b, " ") }

func isOneOf(b []byte, x, y byte) bool { return len(b) == 1 && (b[0] == x || b[0] == y) }

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func isLetters(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return len(b) > 0
}

func isAlnum(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return len(b) > 0
}

// intern returns b as a string, without allocating for the usual makers and
// types.
func intern(b []byte) string {
	switch string(b) {
	case "HQ":
		return "HQ"
	case "V1":
		return "V1"
	case "V4":
		return "V4"
	case "NBR":
		return "NBR"
	case "LINK":
		return "LINK"
	case "HTBT":
		return "HTBT"
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

func hexByte(c byte) string { return "0x" + string([]byte{hexDigits[c>>4], hexDigits[c&0xf]}) }

func hexBytes(b []byte) string {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return string(out)
}
