// Package epoch assembles NMEA 0183 sentences from a GPS receiver into fixes,
// one per epoch.
//
// A receiver reports each solution (an epoch) as a burst of sentences that
// share one UTC time of day: RMC, GGA, GNS, GLL and ZDA carry the time, GSA,
// GSV and VTG do not. The Assembler parses the sentences it needs with
// github.com/adrianmo/go-nmea, from any talker (GP, GL, GA, GB, BD, GQ, GN,
// GI), merges them into one fix, and hands the fix on as soon as the epoch is
// complete:
//
//   - when a sentence with a different time of day starts the next epoch;
//   - when the sentence that ends every epoch arrives: the Assembler learns
//     which sentence that is (the last one before each change of time, the
//     same twice in a row), so a fix is not held back until the next burst;
//   - when the caller calls Flush after a quiet period on the line.
//
// If sentences with the time of an epoch already handed on arrive after all
// (the learned end was wrong, or the line paused mid-burst), the epoch is
// reopened, completed and handed on again: downstream, the later, more
// complete fix replaces the earlier one (same device, same time).
//
// The date comes from RMC or ZDA; between them, and across midnight, it is
// carried forward from the last one seen. A stream with no date at all (GGA
// or GNS only) is dated from the host clock, nearest to now. A date before
// 2017 is a receiver's GPS week rollover and is moved on by 1024 weeks, as
// gpsd does.
//
// Void solutions (RMC status V, GGA quality 0, GNS mode N, GLL status V, or
// no position at all) become epochs with Valid false: a "no fix" status,
// never a position.
package epoch

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	nmea "github.com/adrianmo/go-nmea"

	"trackgate/internal/position"
)

// knot is one knot in metres per second (exactly 1852 m per hour).
const knot = 1852.0 / 3600

// Epoch is one assembled epoch.
type Epoch struct {
	// Position is the fix. Its Time is set whenever the epoch had a time of
	// day (FieldTime); Lat, Lon and the rest only when Valid.
	Position position.Position
	// Valid reports whether the receiver had a solution.
	Valid bool
	// SatsInView is the number of satellites in view (from GSV, summed
	// over constellations), or -1 when the epoch had no GSV.
	SatsInView int
	// Sentences is the number of sentences merged into the epoch.
	Sentences int
	// Reopened reports that this is a second, more complete report of an
	// epoch already handed on.
	Reopened bool
}

// Stats counts what an Assembler did.
type Stats struct {
	Parsed      uint64 // sentences parsed and merged
	ParseErrors uint64 // sentences of a used type that did not parse
	Ignored     uint64 // sentences of types not used (proprietary, AIS, TXT, …)
	Epochs      uint64 // epochs handed on (including reopened ones)
	Fixes       uint64 // of which valid fixes
	Reopened    uint64 // of which reopened epochs
	Rollovers   uint64 // dates before 2017 moved on by 1024 weeks (GPS week rollover)
}

// Options configures an Assembler.
type Options struct {
	// Now is the clock used to date streams that carry no date
	// (default time.Now).
	Now func() time.Time
}

// Assembler merges sentences into epochs. The zero value is not usable;
// create one with New. An Assembler is not safe for concurrent use.
type Assembler struct {
	now    func() time.Time
	parser nmea.SentenceParser
	cur    acc
	prev   acc       // the epoch handed on last, for reopening
	prevBy flushKind // why prev was handed on
	out    Epoch

	// Learning the sentence that ends every epoch.
	lastKey   sentenceKey // the last sentence merged into cur
	candidate sentenceKey // the last sentence before the last change of time
	ender     sentenceKey // learned end of epoch; zero while unknown

	// The last date seen or derived, with its time of day, to carry the
	// date forward to epochs without one.
	refDay, refTod int64
	hasRef         bool

	stats Stats
}

type flushKind int

const (
	byTime  flushKind = iota // the next epoch started
	byEnder                  // the learned last sentence arrived
	byIdle                   // the caller flushed
)

// New returns an Assembler.
func New(opts Options) *Assembler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Assembler{now: opts.Now}
	// The framer has checked the checksum (or, in lax mode, accepted its
	// absence); go-nmea must not insist on one.
	a.parser.CheckCRC = func(nmea.BaseSentence, string) error { return nil }
	a.cur.reset()
	a.prev.reset()
	return a
}

// Stats returns the counters so far.
func (a *Assembler) Stats() Stats { return a.stats }

// Ender returns the learned last sentence of an epoch (talker and type, such
// as "GNGLL"), or "" while it is not known.
func (a *Assembler) Ender() string {
	if a.ender == (sentenceKey{}) {
		return ""
	}
	return string(a.ender[:])
}

// Pending reports whether sentences are waiting for their epoch to end.
func (a *Assembler) Pending() bool { return a.cur.n > 0 }

// used lists the sentence types the Assembler merges.
var used = [...]string{"RMC", "GGA", "GNS", "GSA", "GLL", "VTG", "ZDA", "GSV"}

// AddLine parses one framed sentence ("$GNRMC,…*HH", no line ending) and
// merges it, calling emit for each epoch it completes (at most two: the one
// it ends by starting the next, and its own when it is the learned end). The
// Epoch passed to emit is only valid during the call. Sentences of types the
// Assembler does not use are counted and ignored; one that does not parse is
// counted and returned as an error, and the epoch goes on without it.
func (a *Assembler) AddLine(line []byte, emit func(*Epoch)) error {
	if !usedType(line) {
		a.stats.Ignored++
		return nil
	}
	if string(line[3:6]) == "GSV" {
		// Half the sentences of a multi-GNSS receiver, and only three
		// numbers of each are needed: read them in place.
		return a.addGSVLine(line, emit)
	}
	s, err := a.parser.Parse(string(line))
	if err != nil {
		a.stats.ParseErrors++
		return fmt.Errorf("parse %.6s: %w", line, err)
	}
	if err := a.Add(s, emit); err != nil {
		a.stats.ParseErrors++
		return err
	}
	return nil
}

// usedType reports whether line is "$ttSSS,…" with SSS one of the used types.
func usedType(line []byte) bool {
	if len(line) < 7 || line[0] != '$' || line[1] == 'P' || line[6] != ',' {
		return false
	}
	typ := line[3:6]
	for _, u := range used {
		if string(typ) == u {
			return true
		}
	}
	return false
}

// Add merges one parsed sentence, like AddLine. It returns an error for a
// sentence whose time or date is out of range; other sentence types are
// ignored.
func (a *Assembler) Add(s nmea.Sentence, emit func(*Epoch)) error {
	var key sentenceKey
	if t, typ := s.TalkerID(), s.DataType(); len(t) == 2 && len(typ) == 3 {
		copy(key[:2], t)
		copy(key[2:], typ)
	}
	switch m := s.(type) {
	case nmea.RMC:
		c, err := a.beginTimed(m.Time, emit)
		if err != nil {
			return err
		}
		c.rmc, c.rmcStatus, c.rmcMode = true, m.Validity, m.FFAMode
		if has(m.Fields, 2) && has(m.Fields, 4) {
			if err := c.setLatLon(m.Latitude, m.Longitude, decimals(m.Fields[2]), m.Validity == nmea.ValidRMC); err != nil {
				return err
			}
		}
		if has(m.Fields, 6) {
			c.setSpeed(m.Speed*knot, true)
		}
		if has(m.Fields, 7) {
			c.setCourse(m.Course, true)
		}
		if m.Date.Valid {
			day, err := dayOf(2000+m.Date.YY, m.Date.MM, m.Date.DD)
			if err != nil {
				return err
			}
			a.setDay(c, day)
		}
	case nmea.GGA:
		c, err := a.beginTimed(m.Time, emit)
		if err != nil {
			return err
		}
		c.gga, c.ggaQuality = true, m.FixQuality
		if has(m.Fields, 6) {
			c.sats, c.hasSats = int(m.NumSatellites), true
		}
		valid := m.FixQuality != nmea.Invalid && m.FixQuality != ""
		if err := c.setSolution(m.Fields, m.Latitude, m.Longitude, valid, m.HDOP, m.Altitude, m.Separation, 10); err != nil {
			return err
		}
	case nmea.GNS:
		c, err := a.beginTimed(m.Time, emit)
		if err != nil {
			return err
		}
		c.gns, c.gnsMode = true, gnsBest(m.Mode)
		if has(m.Fields, 6) && !c.hasSats {
			c.sats, c.hasSats = int(m.SVs), true
		}
		if err := c.setSolution(m.Fields, m.Latitude, m.Longitude, c.gnsMode != "N", m.HDOP, m.Altitude, m.Separation, 9); err != nil {
			return err
		}
	case nmea.GLL:
		c, err := a.beginTimed(m.Time, emit)
		if err != nil {
			return err
		}
		c.gll, c.gllStatus, c.gllMode = true, m.Validity, m.FFAMode
		if has(m.Fields, 0) && has(m.Fields, 2) {
			if err := c.setLatLon(m.Latitude, m.Longitude, decimals(m.Fields[0]), m.Validity == nmea.ValidGLL); err != nil {
				return err
			}
		}
	case nmea.ZDA:
		if _, err := a.beginTimed(m.Time, emit); err != nil {
			return err
		}
		if has(m.Fields, 1) && has(m.Fields, 2) && has(m.Fields, 3) {
			day, err := dayOf(int(m.Year), int(m.Month), int(m.Day))
			if err != nil {
				return err
			}
			a.setDay(&a.cur, day)
		}
	case nmea.GSA:
		a.begin(-1, emit)
		c := &a.cur
		c.gsa = true
		if fix, err := strconv.Atoi(m.FixType); err == nil && fix > c.gsaFix {
			c.gsaFix = fix
		}
		for _, sv := range m.SV {
			if sv != "" {
				c.gsaSats++
			}
		}
		if has(m.Fields, 14) {
			c.pdop, c.hasPDOP = m.PDOP, true
		}
		if has(m.Fields, 15) {
			c.gsaHDOP, c.hasGSAHDOP = m.HDOP, true
		}
		if has(m.Fields, 16) {
			c.vdop, c.hasVDOP = m.VDOP, true
		}
	case nmea.VTG:
		a.begin(-1, emit)
		c := &a.cur
		switch {
		case has(m.Fields, 4):
			c.setSpeed(m.GroundSpeedKnots*knot, false)
		case has(m.Fields, 6):
			c.setSpeed(m.GroundSpeedKPH/3.6, false)
		}
		if has(m.Fields, 0) {
			c.setCourse(m.TrueTrack, false)
		}
	case nmea.GSV:
		var talker [2]byte
		copy(talker[:], m.TalkerID())
		a.addGSV(key, talker, int(m.MessageNumber), int(m.TotalMessages), int(m.NumberSVsInView), has(m.Fields, 2), emit)
		return nil
	default:
		a.stats.Ignored++
		return nil
	}
	a.merged(key, emit)
	return nil
}

// merged finishes merging a sentence with key k: it is the epoch's last so
// far, and if it is the learned end, the epoch is handed on.
func (a *Assembler) merged(k sentenceKey, emit func(*Epoch)) {
	a.stats.Parsed++
	a.cur.n++
	a.lastKey = k
	if k != (sentenceKey{}) && k == a.ender && a.cur.tod >= 0 {
		a.flush(byEnder, emit)
	}
}

// addGSV merges a GSV sentence: satellites in view per talker.
func (a *Assembler) addGSV(k sentenceKey, talker [2]byte, num, total, inView int, hasInView bool, emit func(*Epoch)) {
	a.begin(-1, emit)
	if hasInView {
		a.cur.inView(talker, inView)
	}
	if num != total {
		k = sentenceKey{} // only the last of a group can end an epoch
	}
	a.merged(k, emit)
}

// addGSVLine reads the message count, message number and satellites in
// view of a GSV sentence ("$ttGSV,3,1,12,…") without go-nmea.
func (a *Assembler) addGSVLine(line []byte, emit func(*Epoch)) error {
	if i := bytes.LastIndexByte(line, '*'); i >= 7 {
		line = line[:i]
	}
	var nums [3]int
	var present [3]bool
	rest := line[7:]
	for i := range nums {
		field := rest
		if j := bytes.IndexByte(rest, ','); j >= 0 {
			field, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		if len(field) > 3 {
			a.stats.ParseErrors++
			return fmt.Errorf("parse %.6s: field %d: %q is not a small number", line, i+1, field)
		}
		for _, c := range field {
			if c < '0' || c > '9' {
				a.stats.ParseErrors++
				return fmt.Errorf("parse %.6s: field %d: %q is not a number", line, i+1, field)
			}
			nums[i] = nums[i]*10 + int(c-'0')
		}
		present[i] = len(field) > 0
	}
	if !present[0] || !present[1] {
		a.stats.ParseErrors++
		return fmt.Errorf("parse %.6s: no message count or number", line)
	}
	var k sentenceKey
	copy(k[:], line[1:6])
	a.addGSV(k, [2]byte{line[1], line[2]}, nums[1], nums[0], nums[2], present[2], emit)
	return nil
}

// sentenceKey is a sentence's talker and type ("GNGLL"); zero for none.
type sentenceKey [5]byte

// rolloverBefore is the first day (2017-01-01) taken as a real date: a
// receiver date before it comes from a receiver hit by the GPS week number
// rollover (its 10-bit week count wrapped, so it reports a date 1024 weeks
// late) and is moved on by 1024 weeks, as gpsd 3.22 does.
const rolloverBefore = 17167

// rolloverDays is 1024 GPS weeks.
const rolloverDays = 1024 * 7

// setDay records the date of epoch c, correcting a week rollover.
func (a *Assembler) setDay(c *acc, day int64) {
	if day < rolloverBefore {
		day += rolloverDays
		a.stats.Rollovers++
	}
	c.day, c.hasDay = day, true
}

// beginTimed starts merging a sentence that carries a time of day (empty
// or not) and returns the epoch it goes into.
func (a *Assembler) beginTimed(t nmea.Time, emit func(*Epoch)) (*acc, error) {
	tod, err := todOf(t)
	if err != nil {
		return nil, err
	}
	a.begin(tod, emit)
	a.cur.timed = true
	return &a.cur, nil
}

// Flush hands on the pending epoch, if any: call it when the line has been
// quiet for a while, so the last epoch of a burst is not held back.
func (a *Assembler) Flush(emit func(*Epoch)) {
	// Sentences without a time (GSA, GSV, VTG) alone wait for the timed
	// sentence of their epoch, however long the line was quiet.
	if a.cur.n > 0 && (a.cur.tod >= 0 || a.cur.timed) {
		a.flush(byIdle, emit)
	}
}

// begin prepares cur for a sentence with time of day tod (-1: none): it
// hands on cur when tod starts a new epoch, or reopens the epoch handed on
// last when tod is its time.
func (a *Assembler) begin(tod int64, emit func(*Epoch)) {
	switch {
	case tod < 0:
	case a.cur.tod < 0 && a.prev.n > 0 && tod == a.prev.tod && a.prevBy != byTime:
		// More of the epoch handed on last: reopen it, keeping what
		// arrived since (later sentences win).
		if a.prevBy == byEnder {
			a.ender, a.candidate = sentenceKey{}, sentenceKey{}
		}
		a.prev.merge(&a.cur)
		a.cur, a.prev = a.prev, a.cur
		a.prev.reset()
		a.cur.reopened = true
	case a.cur.tod < 0:
		a.cur.tod = tod
	case tod != a.cur.tod:
		// The next epoch starts: learn what ended this one.
		if a.lastKey != (sentenceKey{}) {
			if a.lastKey == a.candidate {
				a.ender = a.lastKey
			}
			a.candidate = a.lastKey
		}
		a.flush(byTime, emit)
		a.cur.tod = tod
	}
}

// flush hands on cur and starts a new, empty one.
func (a *Assembler) flush(by flushKind, emit func(*Epoch)) {
	a.build(&a.cur, &a.out)
	a.stats.Epochs++
	if a.out.Valid {
		a.stats.Fixes++
	}
	if a.out.Reopened {
		a.stats.Reopened++
	}
	emit(&a.out)
	a.prev, a.cur = a.cur, a.prev
	a.prevBy = by
	a.cur.reset()
	a.lastKey = sentenceKey{}
}

// build turns an accumulated epoch into an Epoch.
func (a *Assembler) build(c *acc, e *Epoch) {
	*e = Epoch{SatsInView: c.satsInView(), Sentences: c.n, Reopened: c.reopened}
	p := &e.Position
	if c.tod >= 0 {
		p.Time = time.UnixMilli(a.date(c)*msPerDay + c.tod).UTC()
		p.Set |= position.FieldTime
	}
	kind, valid := c.solution()
	if !valid || !c.hasLatLon || c.tod < 0 {
		// A solution without a time of day cannot be placed on a track.
		p.Fix, p.Set = position.FixNone, p.Set|position.FieldFix
		return
	}
	e.Valid = true
	p.Lat, p.Lon = c.lat, c.lon
	p.Fix = kind
	p.Set |= position.FieldLat | position.FieldLon | position.FieldFix
	set := func(bit position.Fields, dst *float64, v float64, ok bool) {
		if ok {
			*dst = v
			p.Set |= bit
		}
	}
	set(position.FieldAlt, &p.Alt, c.alt, c.hasAlt)
	set(position.FieldGeoid, &p.Geoid, c.geoid, c.hasGeoid)
	set(position.FieldSpeed, &p.Speed, c.speed, c.hasSpeed && c.speed >= 0)
	set(position.FieldCourse, &p.Course, c.course, c.hasCourse && c.course >= 0 && c.course < 360)
	if c.hasGSAHDOP {
		set(position.FieldHDOP, &p.HDOP, c.gsaHDOP, c.gsaHDOP > 0)
	} else {
		set(position.FieldHDOP, &p.HDOP, c.hdop, c.hasHDOP && c.hdop > 0)
	}
	set(position.FieldPDOP, &p.PDOP, c.pdop, c.hasPDOP && c.pdop > 0)
	set(position.FieldVDOP, &p.VDOP, c.vdop, c.hasVDOP && c.vdop > 0)
	switch {
	case c.gsaSats > 0:
		// The GSAs of all constellations list every satellite used; GGA's
		// count stops at 12 on many multi-GNSS receivers.
		p.Sats, p.Set = c.gsaSats, p.Set|position.FieldSats
	case c.hasSats && c.sats >= 0:
		p.Sats, p.Set = c.sats, p.Set|position.FieldSats
	}
	p.DropOutOfRange()
}

const msPerDay = 86_400_000

// date returns the day (since 1970-01-01) of epoch c: its own date, else the
// last date seen carried forward (across midnight), else the host clock's.
func (a *Assembler) date(c *acc) int64 {
	if c.hasDay {
		a.refDay, a.refTod, a.hasRef = c.day, c.tod, true
		return c.day
	}
	refDay, refTod := a.refDay, a.refTod
	if !a.hasRef {
		now := a.now().UnixMilli()
		refDay, refTod = floorDiv(now, msPerDay), now-floorDiv(now, msPerDay)*msPerDay
	}
	// The nearest of yesterday, today and tomorrow at this time of day.
	ref := refDay*msPerDay + refTod
	best := refDay
	for _, d := range [...]int64{refDay - 1, refDay + 1} {
		if abs64(d*msPerDay+c.tod-ref) < abs64(best*msPerDay+c.tod-ref) {
			best = d
		}
	}
	if a.hasRef {
		a.refDay, a.refTod = best, c.tod
	}
	return best
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// todOf returns the time of day of t in milliseconds, -1 when t is empty.
func todOf(t nmea.Time) (int64, error) {
	if !t.Valid {
		return -1, nil
	}
	if t.Hour > 23 || t.Minute > 59 || t.Second > 60 || t.Millisecond > 1000 {
		return -1, fmt.Errorf("time of day %s out of range", t)
	}
	return int64(t.Hour)*3_600_000 + int64(t.Minute)*60_000 + int64(t.Second)*1000 + int64(t.Millisecond), nil
}

// dayOf returns the day since 1970-01-01 of a calendar date, which must exist.
func dayOf(year, month, day int) (int64, error) {
	t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if t.Year() != year || int(t.Month()) != month || t.Day() != day {
		return 0, fmt.Errorf("date %04d-%02d-%02d does not exist", year, month, day)
	}
	return floorDiv(t.Unix(), 86400), nil
}

// has reports whether field i is present (not empty).
func has(fields []string, i int) bool { return i < len(fields) && fields[i] != "" }

// decimals returns the number of decimals of a numeric field.
func decimals(s string) int {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

// gnsBest returns the best of GNS's per-constellation mode characters:
// "R", "F", "D" (also for P), "A" (also for S and M), "E", or "N" when no
// constellation has a fix.
func gnsBest(modes []string) string {
	best, rank := "N", 0
	for _, m := range modes {
		if r := gnsRank(m); r > rank {
			best, rank = m, r
		}
	}
	switch best {
	case "P":
		return "D"
	case "S", "M":
		return "A"
	}
	return best
}

func gnsRank(mode string) int {
	switch mode {
	case "E":
		return 1
	case "A", "S", "M":
		return 2
	case "D", "P":
		return 3
	case "F":
		return 4
	case "R":
		return 5
	}
	return 0
}

// acc accumulates one epoch.
type acc struct {
	n        int   // sentences merged
	tod      int64 // time of day, ms; -1 unknown
	timed    bool  // a sentence that carries a time (RMC, GGA, GNS, GLL, ZDA) was merged, even if its time was empty
	day      int64 // days since 1970-01-01, if hasDay
	reopened bool

	lat, lon  float64
	latDigits int // decimals of the latitude's minutes: the most precise source wins
	latValid  bool
	speed     float64
	course    float64
	alt       float64
	geoid     float64
	hdop      float64
	gsaHDOP   float64
	pdop      float64
	vdop      float64
	sats      int
	gsaSats   int
	gsaFix    int

	hasDay, hasLatLon, hasSpeed, hasCourse, hasAlt, hasGeoid    bool
	hasHDOP, hasGSAHDOP, hasPDOP, hasVDOP, hasSats              bool
	speedRMC, courseRMC                                         bool
	rmc, gga, gns, gll, gsa                                     bool
	rmcStatus, rmcMode, ggaQuality, gnsMode, gllStatus, gllMode string

	views  [8]view // satellites in view per talker
	nViews int
}

type view struct {
	talker [2]byte
	n      int
}

func (c *acc) reset() { *c = acc{tod: -1} }

// setLatLon records a position; among several, the most precise wins, and
// of equally precise ones the later.
func (c *acc) setLatLon(lat, lon float64, digits int, valid bool) error {
	if !(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180) {
		return fmt.Errorf("position %v, %v out of range", lat, lon)
	}
	if c.hasLatLon && digits < c.latDigits {
		return nil
	}
	c.lat, c.lon, c.latDigits, c.latValid, c.hasLatLon = lat, lon, digits, valid, true
	return nil
}

// setSolution records what GGA and GNS share: the position (fields 1 to 4),
// HDOP (7), altitude (8) and geoid separation (field sep).
func (c *acc) setSolution(f []string, lat, lon float64, valid bool, hdop, alt, geoid float64, sep int) error {
	if has(f, 1) && has(f, 3) {
		if err := c.setLatLon(lat, lon, decimals(f[1]), valid); err != nil {
			return err
		}
	}
	if has(f, 7) {
		c.hdop, c.hasHDOP = hdop, true
	}
	if has(f, 8) {
		c.alt, c.hasAlt = alt, true
	}
	if has(f, sep) {
		c.geoid, c.hasGeoid = geoid, true
	}
	return nil
}

// setSpeed records a speed in m/s; RMC's wins over VTG's.
func (c *acc) setSpeed(v float64, rmc bool) {
	if c.speedRMC && !rmc {
		return
	}
	c.speed, c.hasSpeed, c.speedRMC = v, true, rmc
}

// setCourse records a course; RMC's wins over VTG's. 360 is north.
func (c *acc) setCourse(v float64, rmc bool) {
	if c.courseRMC && !rmc {
		return
	}
	if v == 360 {
		v = 0
	}
	c.course, c.hasCourse, c.courseRMC = v, true, rmc
}

func (c *acc) inView(talker [2]byte, n int) {
	for i := 0; i < c.nViews; i++ {
		if c.views[i].talker == talker {
			c.views[i].n = max(c.views[i].n, n)
			return
		}
	}
	if c.nViews < len(c.views) {
		c.views[c.nViews] = view{talker, n}
		c.nViews++
	}
}

func (c *acc) satsInView() int {
	if c.nViews == 0 {
		return -1
	}
	n := 0
	for _, v := range c.views[:c.nViews] {
		n += v.n
	}
	return n
}

// solution decides whether the epoch has a solution, and of what kind. The
// fix-quality sentence decides, in order: GGA, GNS, RMC, GLL.
func (c *acc) solution() (position.Fix, bool) {
	var kind position.Fix
	switch {
	case c.gga:
		switch c.ggaQuality {
		case nmea.DGPS, nmea.PPS:
			kind = position.FixDGPS
		case nmea.RTK:
			kind = position.FixRTK
		case nmea.FRTK:
			kind = position.FixFloat
		case nmea.EST:
			kind = position.FixDR
		case nmea.GPS:
		default:
			return position.FixNone, false
		}
	case c.gns:
		switch c.gnsMode {
		case "N":
			return position.FixNone, false
		case "R":
			kind = position.FixRTK
		case "F":
			kind = position.FixFloat
		case "D":
			kind = position.FixDGPS
		case "E":
			kind = position.FixDR
		}
	case c.rmc:
		if c.rmcStatus != nmea.ValidRMC || c.rmcMode == "N" {
			return position.FixNone, false
		}
		kind = faaKind(c.rmcMode)
	case c.gll:
		if c.gllStatus != nmea.ValidGLL || c.gllMode == "N" {
			return position.FixNone, false
		}
		kind = faaKind(c.gllMode)
	default:
		return position.FixNone, false
	}
	if !c.latValid {
		return position.FixNone, false
	}
	if kind == "" {
		switch {
		case c.gsaFix == 2:
			kind = position.Fix2D
		case c.gsaFix == 3 || c.hasAlt:
			kind = position.Fix3D
		default:
			kind = position.Fix2D
		}
	}
	return kind, true
}

// faaKind maps an RMC/GLL mode indicator (NMEA 2.3+) to a fix kind; "" when
// it says only autonomous (or nothing).
func faaKind(mode string) position.Fix {
	switch mode {
	case "D", "P":
		return position.FixDGPS
	case "E":
		return position.FixDR
	case "R":
		return position.FixRTK
	case "F":
		return position.FixFloat
	}
	return ""
}

// merge copies into c what src has (src's sentences came later and win).
func (c *acc) merge(src *acc) {
	c.n += src.n
	if src.hasDay {
		c.day, c.hasDay = src.day, true
	}
	if src.hasLatLon {
		_ = c.setLatLon(src.lat, src.lon, src.latDigits, src.latValid) // checked when src took it
	}
	if src.hasSpeed {
		c.setSpeed(src.speed, src.speedRMC)
	}
	if src.hasCourse {
		c.setCourse(src.course, src.courseRMC)
	}
	copyIf := func(dst *float64, has *bool, v float64, ok bool) {
		if ok {
			*dst, *has = v, true
		}
	}
	copyIf(&c.alt, &c.hasAlt, src.alt, src.hasAlt)
	copyIf(&c.geoid, &c.hasGeoid, src.geoid, src.hasGeoid)
	copyIf(&c.hdop, &c.hasHDOP, src.hdop, src.hasHDOP)
	copyIf(&c.gsaHDOP, &c.hasGSAHDOP, src.gsaHDOP, src.hasGSAHDOP)
	copyIf(&c.pdop, &c.hasPDOP, src.pdop, src.hasPDOP)
	copyIf(&c.vdop, &c.hasVDOP, src.vdop, src.hasVDOP)
	if src.hasSats {
		c.sats, c.hasSats = src.sats, true
	}
	c.gsaSats += src.gsaSats
	c.gsaFix = max(c.gsaFix, src.gsaFix)
	if src.rmc {
		c.rmc, c.rmcStatus, c.rmcMode = true, src.rmcStatus, src.rmcMode
	}
	if src.gga {
		c.gga, c.ggaQuality = true, src.ggaQuality
	}
	if src.gns {
		c.gns, c.gnsMode = true, src.gnsMode
	}
	if src.gll {
		c.gll, c.gllStatus, c.gllMode = true, src.gllStatus, src.gllMode
	}
	c.gsa = c.gsa || src.gsa
	c.timed = c.timed || src.timed
	for _, v := range src.views[:src.nViews] {
		c.inView(v.talker, v.n)
	}
}
