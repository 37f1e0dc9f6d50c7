package gt06

import (
	"errors"
	"strconv"
	"time"

	"trackgate/internal/position"
)

// MaxFrame is the largest frame accepted, in bytes (start bits to stop
// bits), for the 0x7979 form whose length field has two bytes. The 0x7878
// form, with its one-byte length field, is never longer than 260 bytes.
const MaxFrame = 1024

// The sentinel errors of a broken stream or frame, wrapped by *Error and
// checked with errors.Is.
var (
	// ErrStart: bytes that are not the start bits 0x7878 or 0x7979 where a frame should begin.
	ErrStart = errors.New("gt06: not start bits")
	// ErrLength: a length field too small to hold the protocol number, serial
	// number and error check, one that would make the frame longer than
	// MaxFrame, or one that disagrees with the frame handed to Decode.
	ErrLength = errors.New("gt06: bad length field")
	// ErrStop: the stop bits 0x0D0A are missing where the length field puts them.
	ErrStop = errors.New("gt06: no stop bits where the length field puts them")
	// ErrCRC: the error check does not match the CRC-ITU of the frame.
	ErrCRC = errors.New("gt06: CRC-ITU mismatch")
	// ErrShort: the data ends inside a frame.
	ErrShort = errors.New("gt06: frame cut short")
)

// Error is a decoding error naming the packet's protocol number and the
// field that failed. Err is the sentinel (ErrStart, ErrLength, ErrStop,
// ErrCRC, ErrShort) where one applies: a broken frame, or ErrLength for
// content shorter than the fields its protocol defines; it is nil for a
// value out of its range.
type Error struct {
	Protocol byte   // the packet's protocol number, 0 when the frame is too broken to show one
	Field    string // the field that failed, e.g. "start bits", "latitude"
	Msg      string // what is wrong with it
	Err      error  // the sentinel, or nil
}

// Error formats e as "gt06: protocol 0x12: field: msg", without the
// protocol when it is unknown.
func (e *Error) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, "gt06: "...)
	if e.Protocol != 0 {
		b = append(b, "protocol 0x"...)
		b = appendHex(b, uint64(e.Protocol), 2)
		b = append(b, ": "...)
	}
	b = append(b, e.Field...)
	b = append(b, ": "...)
	b = append(b, e.Msg...)
	return string(b)
}

// Unwrap returns the sentinel e wraps, if any.
func (e *Error) Unwrap() error { return e.Err }

// Packet is one decoded frame.
type Packet struct {
	Long     bool   // the frame used the 0x7979 start bits (two-byte length)
	Protocol byte   // protocol number, e.g. 0x01 login, 0x12 GPS+LBS, 0x13 status/heartbeat, 0x16 alarm, 0x22 GPS+LBS (GT06 2nd gen), 0x8A time request
	Serial   uint16 // information serial number, echoed in the response
	IMEI     string // login: the terminal ID as 15 digits (the 8-byte BCD's leading 0 nibble dropped)
	// Zone is the time zone the device declared in its login packet (the
	// "time zone/language" extension, when the login carries it), nil when
	// it did not. A declared GMT+0 is time.UTC.
	Zone *time.Location
	// Position is set for packets that carry a GPS location (0x10, 0x11,
	// 0x12, 0x16, 0x1A, 0x22, 0x26, 0x27); nil otherwise. Its Time is in
	// UTC; it carries Time, Lat, Lon, Speed, Course, Sats and Fix (Fix2D when
	// Valid, FixNone when not), and Batt for the alarm packets that report a
	// voltage level.
	Position *position.Position
	// Valid reports whether the GPS had a fix ("GPS positioned" bit of
	// course/status). Position is still filled when false.
	Valid bool
	// Batt is the battery level in percent when the packet reports one, with
	// HasBatt: the built-in battery voltage level (0 no power … 6 full) of
	// the status/heartbeat (0x13), alarm (0x16, 0x26, 0x27) and LBS alarm
	// (0x19) packets, mapped linearly onto 0–100 %. A level above 6, which
	// some devices put in that byte, is not reported.
	Batt    float64
	HasBatt bool
}

// Protocol numbers, as the Concox GT06 protocol documents name them.
const (
	msgLogin      = 0x01 // login: terminal ID [, model code, time zone/language]
	msgGPS        = 0x10 // GPS information
	msgGPSLBSWide = 0x11 // GPS and LBS information (some models)
	msgGPSLBS     = 0x12 // GPS and LBS information
	msgStatus     = 0x13 // status information (heartbeat)
	msgAlarm      = 0x16 // GPS, LBS and status combined (alarm)
	msgLBSAlarm   = 0x19 // LBS and status (LBS alarm)
	msgGPSPhone   = 0x1A // GPS, phone number checking location
	msgGPSLBS2    = 0x22 // GPS and LBS information (GT06 2nd generation)
	msgHeartbeat2 = 0x23 // heartbeat with external voltage (EG02/EG03)
	msgAlarm2     = 0x26 // alarm (GT06 2nd generation)
	msgAlarmMulti = 0x27 // alarm with geo-fence number
	msgTime       = 0x8A // time request
)

// Sizes of the parts of a frame and of its content.
const (
	minLength  = 5          // smallest length field: protocol number, serial number, error check
	gpsSize    = 18         // date/time 6, GPS info 1, latitude 4, longitude 4, speed 1, course/status 2
	imeiSize   = 8          // terminal ID, BCD
	zoneEnd    = 12         // terminal ID 8, model identification code 2, time zone/language 2
	maxLevel   = 6          // highest battery voltage level
	coordScale = 30000 * 60 // latitude and longitude are in minutes × 30000
	maxLat     = 90 * coordScale
	maxLon     = 180 * coordScale
	maxZone    = 14 * 60 * 60 // largest time zone offset accepted, seconds
)

// Bits of the course/status field.
const (
	csPositioned = 1 << 12 // GPS positioned
	csWest       = 1 << 11 // west longitude (else east)
	csNorth      = 1 << 10 // north latitude (else south)
	csCourse     = 1<<10 - 1
)

// zoneWest is the bit of the time zone/language field set for a zone west of Greenwich.
const zoneWest = 1 << 3

// ScanFrames is a bufio.SplitFunc that yields whole frames (start bits 0x7878
// or 0x7979 through stop bits 0x0D0A). It returns an error (it never skips
// bytes) when the stream is broken: bytes that are not start bits
// (ErrStart), a length field that would exceed MaxFrame or is too small to
// hold protocol+serial+CRC (ErrLength), missing stop bits where the length
// says they are (ErrStop), or a CRC-ITU mismatch (ErrCRC). At EOF with a
// partial frame it returns ErrShort. It never asks for more than MaxFrame
// bytes. The errors are *Error.
func ScanFrames(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if len(data) == 0 {
		return 0, nil, nil
	}
	hdr, total, err := header(data)
	if err != nil {
		return 0, nil, err
	}
	if total == 0 || len(data) < total {
		if atEOF {
			return 0, nil, short(data, hdr, total)
		}
		return 0, nil, nil
	}
	frame := data[:total:total]
	if err := check(frame, hdr); err != nil {
		return 0, nil, err
	}
	return total, frame, nil
}

// header reads the start bits and length field at the start of data. It
// returns the size of the header (start bits and length field) and of the
// whole frame, or total 0 when data is too short to show them.
func header(data []byte) (hdr, total int, err error) {
	s := data[0]
	switch {
	case s != 0x78 && s != 0x79:
		return 0, 0, &Error{Field: "start bits", Msg: hexString(data[:1]) + " does not start 0x7878 or 0x7979", Err: ErrStart}
	case len(data) > 1 && data[1] != s:
		return 0, 0, &Error{Field: "start bits", Msg: hexString(data[:2]) + " is not 0x7878 or 0x7979", Err: ErrStart}
	}
	hdr = 3
	if s == 0x79 {
		hdr = 4
	}
	if len(data) < hdr {
		return hdr, 0, nil
	}
	length := int(data[2])
	if hdr == 4 {
		length = length<<8 | int(data[3])
	}
	switch total = hdr + length + 2; {
	case length < minLength:
		return 0, 0, &Error{Field: "length", Msg: strconv.Itoa(length) + " cannot hold the protocol number, serial number and error check", Err: ErrLength}
	case total > MaxFrame:
		return 0, 0, &Error{Field: "length", Msg: strconv.Itoa(length) + " makes a frame of " + strconv.Itoa(total) + " bytes, more than " + strconv.Itoa(MaxFrame), Err: ErrLength}
	}
	return hdr, total, nil
}

// short is the error of data that ends inside a frame of total bytes (0 when
// the header is incomplete).
func short(data []byte, hdr, total int) error {
	e := &Error{Field: "frame", Msg: "ends after " + strconv.Itoa(len(data)) + " bytes", Err: ErrShort}
	if total > 0 {
		e.Protocol = protocolAt(data, hdr)
		e.Msg += " of " + strconv.Itoa(total)
	}
	return e
}

// protocolAt returns the protocol number of a frame with a header of hdr
// bytes, 0 when data does not reach it.
func protocolAt(data []byte, hdr int) byte {
	if len(data) > hdr {
		return data[hdr]
	}
	return 0
}

// check checks the stop bits and the error check of a whole frame whose
// header has hdr bytes.
func check(frame []byte, hdr int) error {
	n := len(frame)
	if frame[n-2] != 0x0D || frame[n-1] != 0x0A {
		return &Error{Protocol: frame[hdr], Field: "stop bits",
			Msg: hexString(frame[n-2:]) + " where the length field puts 0x0D0A", Err: ErrStop}
	}
	if got, want := be16(frame[n-4:]), CRC(frame[2:n-4]); got != want {
		return &Error{Protocol: frame[hdr], Field: "error check",
			Msg: hexString(frame[n-4:n-2]) + ", CRC-ITU of the frame is 0x" + string(appendHex(nil, uint64(want), 4)), Err: ErrCRC}
	}
	return nil
}

// Decode decodes one whole frame as ScanFrames yields it. It checks the
// start bits, length field, stop bits and error check again, so it is safe
// on any byte slice. loc is the time zone of the device's date/time fields
// (the Zone from its login or the bridge's configuration); nil means UTC.
//
// Unknown protocol numbers are not an error: they decode to a Packet with
// Long, Protocol and Serial set and nothing else. So does a known protocol
// whose content fails (an *Error with Err nil or ErrLength for content
// shorter than its fields), so that the caller can still answer the device;
// only a frame that fails its framing checks returns a zero Packet.
//
// Decode reads the fields it uses and ignores content after them, which
// some models extend with fields of their own (mileage, for one).
func Decode(frame []byte, loc *time.Location) (Packet, error) {
	if len(frame) == 0 {
		return Packet{}, &Error{Field: "frame", Msg: "empty", Err: ErrShort}
	}
	hdr, total, err := header(frame)
	switch {
	case err != nil:
		return Packet{}, err
	case total == 0 || len(frame) < total:
		return Packet{}, short(frame, hdr, total)
	case len(frame) > total:
		return Packet{}, &Error{Protocol: frame[hdr], Field: "length",
			Msg: "frame of " + strconv.Itoa(total) + " bytes followed by " + strconv.Itoa(len(frame)-total) + " more", Err: ErrLength}
	}
	if err := check(frame, hdr); err != nil {
		return Packet{}, err
	}
	body := frame[hdr : total-4] // protocol number, content, serial number
	p := Packet{Long: hdr == 4, Protocol: body[0], Serial: be16(body[len(body)-2:])}
	content := body[1 : len(body)-2]
	if loc == nil {
		loc = time.UTC
	}
	d := decoder{p: &p, c: content}
	switch p.Protocol {
	case msgLogin:
		err = d.login()
	case msgStatus:
		err = d.status()
	case msgLBSAlarm:
		err = d.lbsAlarm()
	case msgGPS, msgGPSLBSWide, msgGPSLBS, msgGPSPhone, msgGPSLBS2:
		err = d.location(loc)
	case msgAlarm, msgAlarm2, msgAlarmMulti:
		if err = d.location(loc); err == nil {
			err = d.alarm()
		}
	}
	if err != nil {
		return Packet{Long: p.Long, Protocol: p.Protocol, Serial: p.Serial}, err
	}
	return p, nil
}

// decoder decodes the content c of the packet p.
type decoder struct {
	p *Packet
	c []byte
}

// fail returns the error of field with msg.
func (d *decoder) fail(field, msg string) error {
	return &Error{Protocol: d.p.Protocol, Field: field, Msg: msg}
}

// need returns an error when the content is shorter than n bytes, the end
// of field.
func (d *decoder) need(n int, field string) error {
	if len(d.c) >= n {
		return nil
	}
	return &Error{Protocol: d.p.Protocol, Field: field,
		Msg: "content of " + strconv.Itoa(len(d.c)) + " bytes ends before it (needs " + strconv.Itoa(n) + ")", Err: ErrLength}
}

// login decodes the terminal ID and, when the login carries them, the model
// identification code and time zone/language.
func (d *decoder) login() error {
	if err := d.need(imeiSize, "terminal ID"); err != nil {
		return err
	}
	var digits [2 * imeiSize]byte
	for i, b := range d.c[:imeiSize] {
		digits[2*i], digits[2*i+1] = b>>4, b&0x0f
	}
	if digits[0] != 0 {
		return d.fail("terminal ID", hexString(d.c[:imeiSize])+" has 16 digits, not 15")
	}
	for i, v := range digits {
		if v > 9 {
			return d.fail("terminal ID", "nibble "+strconv.Itoa(i)+" is 0x"+string(appendHex(nil, uint64(v), 1))+", not a decimal digit")
		}
		digits[i] = '0' + v
	}
	d.p.IMEI = string(digits[1:])
	if len(d.c) < zoneEnd {
		return nil
	}
	z, ok := zone(be16(d.c[zoneEnd-2 : zoneEnd]))
	if !ok {
		return d.fail("time zone", hexString(d.c[zoneEnd-2:zoneEnd])+" is not a time zone offset (hours×100+minutes up to 14:00)")
	}
	d.p.Zone = z
	return nil
}

// zone returns the time zone of the time zone/language field v, false when
// it is not one: bits 15–4 are the offset as hours×100+minutes (0x320 is
// 8:00, 0x4DD is 12:45), bit 3 is set for a zone west of Greenwich.
func zone(v uint16) (*time.Location, bool) {
	hm := int(v >> 4)
	h, m := hm/100, hm%100
	off := (h*60 + m) * 60
	if m >= 60 || off > maxZone {
		return nil, false
	}
	if off == 0 {
		return time.UTC, true
	}
	sign := byte('+')
	if v&zoneWest != 0 {
		sign, off = '-', -off
	}
	name := []byte{'U', 'T', 'C', sign, byte('0' + h/10), byte('0' + h%10), ':', byte('0' + m/10), byte('0' + m%10)}
	return time.FixedZone(string(name), off), true
}

// status decodes the battery voltage level of a status (heartbeat) packet:
// terminal information 1, voltage level 1, GSM signal strength 1,
// alarm/language 2.
func (d *decoder) status() error {
	if err := d.need(2, "voltage level"); err != nil {
		return err
	}
	d.battery(d.c[1])
	return nil
}

// lbsAlarm decodes the battery voltage level of an LBS alarm: MCC 2, MNC 1
// (2 when bit 15 of MCC is set), LAC 2, cell ID 3, terminal information 1,
// voltage level 1, GSM signal strength 1, alarm/language 2.
func (d *decoder) lbsAlarm() error {
	if err := d.need(2, "MCC"); err != nil {
		return err
	}
	level := 9 // MCC, MNC, LAC, cell ID, terminal information
	if d.c[0]&0x80 != 0 {
		level++
	}
	if err := d.need(level+1, "voltage level"); err != nil {
		return err
	}
	d.battery(d.c[level])
	return nil
}

// alarm decodes the battery voltage level of an alarm packet, whose GPS
// information is followed by LBS length 1 (counting itself, 0 when the
// packet has no LBS information), MCC, MNC, LAC, cell ID, then terminal
// information 1, voltage level 1, GSM signal strength 1, alarm/language 2.
func (d *decoder) alarm() error {
	if err := d.need(gpsSize+1, "LBS length"); err != nil {
		return err
	}
	level := gpsSize + max(int(d.c[gpsSize]), 1) + 1 // a length of 0 counts as 1: the length byte alone
	if err := d.need(level+1, "voltage level"); err != nil {
		return err
	}
	d.battery(d.c[level])
	if d.p.HasBatt {
		d.p.Position.Batt = d.p.Batt
		d.p.Position.Set |= position.FieldBatt
	}
	return nil
}

// battery records a battery voltage level.
func (d *decoder) battery(level byte) {
	if level <= maxLevel {
		d.p.Batt, d.p.HasBatt = float64(level)*100/maxLevel, true
	}
}

// location decodes the GPS information at the start of the content:
// date/time 6, GPS information length and satellites 1, latitude 4,
// longitude 4, speed 1, course/status 2.
func (d *decoder) location(loc *time.Location) error {
	if err := d.need(gpsSize, "GPS information"); err != nil {
		return err
	}
	c := d.c
	t, ok := dateTime(c[:6], loc)
	if !ok {
		return d.fail("date time", string(appendDateTime(nil, c[:6]))+" is not a date and time")
	}
	cs := be16(c[16:18])
	lat, lon, course := int64(be32(c[7:11])), int64(be32(c[11:15])), cs&csCourse
	switch {
	case lat > maxLat:
		return d.fail("latitude", strconv.FormatFloat(float64(lat)/coordScale, 'f', -1, 64)+"° is beyond 90°")
	case lon > maxLon:
		return d.fail("longitude", strconv.FormatFloat(float64(lon)/coordScale, 'f', -1, 64)+"° is beyond 180°")
	case course >= 360:
		return d.fail("course", strconv.Itoa(int(course))+"° is not within [0°, 360°)")
	}
	if cs&csNorth == 0 {
		lat = -lat
	}
	if cs&csWest != 0 {
		lon = -lon
	}
	d.p.Valid = cs&csPositioned != 0
	fix := position.FixNone
	if d.p.Valid {
		fix = position.Fix2D
	}
	d.p.Position = &position.Position{
		Time:   t,
		Lat:    float64(lat) / coordScale,
		Lon:    float64(lon) / coordScale,
		Speed:  float64(c[15]) / 3.6, // km/h
		Course: float64(course),
		Sats:   int(c[6] & 0x0f),
		Fix:    fix,
		Set: position.FieldTime | position.FieldLat | position.FieldLon | position.FieldSpeed |
			position.FieldCourse | position.FieldSats | position.FieldFix,
	}
	return nil
}

// dateTime returns the UTC time of the date/time bytes YY MM DD hh mm ss in
// loc, false when they are not a date and time.
func dateTime(b []byte, loc *time.Location) (time.Time, bool) {
	y, mo, dd, h, mi, s := 2000+int(b[0]), int(b[1]), int(b[2]), int(b[3]), int(b[4]), int(b[5])
	if mo < 1 || mo > 12 || dd < 1 || dd > daysIn(y, mo) || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(mo), dd, h, mi, s, 0, loc).UTC(), true
}

// daysIn returns the number of days of month mo of year y.
func daysIn(y, mo int) int {
	return time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// appendDateTime appends the date/time bytes as "20YY-MM-DD hh:mm:ss", each
// field in decimal however large.
func appendDateTime(dst, b []byte) []byte {
	const seps = " -- ::" // the separator before each field but the year
	dst = strconv.AppendInt(dst, 2000+int64(b[0]), 10)
	for i := 1; i < 6; i++ {
		dst = append(dst, seps[i])
		if b[i] < 10 {
			dst = append(dst, '0')
		}
		dst = strconv.AppendInt(dst, int64(b[i]), 10)
	}
	return dst
}

// NeedsResponse reports whether the server must answer a packet of this
// protocol number: login (0x01), status/heartbeat (0x13, 0x23), the alarms
// (0x16, 0x19, 0x26, 0x27) and the time request (0x8A). Location packets
// (0x10, 0x11, 0x12, 0x22) take none, nor do the information transmission
// packets, command replies and unknown protocols.
func NeedsResponse(protocol byte) bool {
	switch protocol {
	case msgLogin, msgStatus, msgHeartbeat2, msgAlarm, msgLBSAlarm, msgAlarm2, msgAlarmMulti, msgTime:
		return true
	}
	return false
}

// AppendResponse appends the server's response to p (same start-bit form as
// p, protocol number, p's serial echoed, CRC-ITU, stop bits) to dst. For the
// time request (0x8A) the response carries now in UTC (year-2000, month,
// day, hour, minute, second) before the serial number.
func AppendResponse(dst []byte, p Packet, now time.Time) []byte {
	var content []byte
	var clock [6]byte
	if p.Protocol == msgTime {
		t := now.UTC()
		clock = [6]byte{byte(t.Year() - 2000), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second())}
		content = clock[:]
	}
	length := 1 + len(content) + 2 + 2 // protocol number, content, serial number, error check
	start := len(dst)
	if p.Long {
		dst = append(dst, 0x79, 0x79, byte(length>>8), byte(length))
	} else {
		dst = append(dst, 0x78, 0x78, byte(length))
	}
	dst = append(dst, p.Protocol)
	dst = append(dst, content...)
	dst = append(dst, byte(p.Serial>>8), byte(p.Serial))
	crc := CRC(dst[start+2:])
	return append(dst, byte(crc>>8), byte(crc), 0x0D, 0x0A)
}

// crcTable is the lookup table of CRC-ITU, the reflected polynomial 0x8408.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x8408
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC computes the CRC-ITU (CRC-16/X-25 as the GT06 documents use it:
// reflected polynomial 0x1021, initial value 0xFFFF, result inverted) of b.
// A frame's error check is the CRC of its bytes from the length field
// through the serial number.
func CRC(b []byte) uint16 {
	c := uint16(0xFFFF)
	for _, x := range b {
		c = c>>8 ^ crcTable[byte(c)^x]
	}
	return ^c
}

// be16 returns the big-endian uint16 at the start of b.
func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// be32 returns the big-endian uint32 at the start of b.
func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// hexString returns b as "0x" and two upper-case hexadecimal digits a byte.
func hexString(b []byte) string {
	s := append(make([]byte, 0, 2+2*len(b)), "0x"...)
	for _, x := range b {
		s = appendHex(s, uint64(x), 2)
	}
	return string(s)
}

// appendHex appends v as n upper-case hexadecimal digits.
func appendHex(dst []byte, v uint64, n int) []byte {
	const digits = "0123456789ABCDEF"
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, digits[v>>(4*uint(i))&0xf])
	}
	return dst
}
