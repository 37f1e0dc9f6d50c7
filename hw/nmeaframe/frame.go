// Package nmeaframe cuts a raw byte stream from a GPS receiver (a serial port
// or a TCP multiplexer) into NMEA 0183 sentences, and counts what it throws
// away.
//
// Real receiver output is not clean: a reader that opens a port mid-stream
// sees the tail of a sentence first, receivers interleave binary protocols
// (UBX, SiRF binary) with NMEA, a wrong line speed yields noise, lines end in
// CR LF, LF or CR alone, and some devices write lower-case checksum hex or no
// checksum at all. The Framer accepts a sentence only when it starts with '$'
// or '!', holds nothing but printable ASCII, fits in MaxLine bytes, and
// carries a checksum that matches (a missing checksum is accepted only in lax
// mode). Everything else is dropped and counted, and never costs the good
// sentences around it.
package nmeaframe

// MaxSentence is the longest sentence NMEA 0183 allows, from '$' to the
// line end inclusive.
const MaxSentence = 82

// DefaultMaxLine is the default cap on a sentence's length (without its line
// ending): twice the standard's limit, because several receivers write longer
// proprietary and GSV sentences than the standard allows.
const DefaultMaxLine = 2 * MaxSentence

// Stats counts what a Framer saw. Every byte fed is either part of an
// emitted sentence, a line ending, or counted in GarbageBytes (and, for a
// rejected sentence, also in one of the other counters).
type Stats struct {
	Sentences    uint64 // sentences emitted
	BadChecksum  uint64 // sentences dropped because their checksum did not match
	NoChecksum   uint64 // sentences without a checksum (dropped unless lax; emitted and counted when lax)
	Overlong     uint64 // lines longer than MaxLine, dropped
	GarbageBytes uint64 // bytes outside sentences, and the bytes of every dropped sentence
}

// Add returns s plus o, field by field.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Sentences:    s.Sentences + o.Sentences,
		BadChecksum:  s.BadChecksum + o.BadChecksum,
		NoChecksum:   s.NoChecksum + o.NoChecksum,
		Overlong:     s.Overlong + o.Overlong,
		GarbageBytes: s.GarbageBytes + o.GarbageBytes,
	}
}

// Framer turns bytes into sentences. The zero value is not usable; create
// one with New. A Framer is not safe for concurrent use.
type Framer struct {
	lax     bool
	maxLine int
	buf     []byte // the sentence being collected, from its '$' or '!'
	in      bool   // collecting a sentence
	skip    bool   // inside an over-long line: drop until its end
	stats   Stats
}

// New returns a Framer. lax accepts sentences without a checksum; maxLine
// caps a sentence's length without its line ending (0: DefaultMaxLine).
func New(lax bool, maxLine int) *Framer {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Framer{lax: lax, maxLine: maxLine, buf: make([]byte, 0, maxLine)}
}

// Stats returns the counters so far.
func (f *Framer) Stats() Stats { return f.stats }

// Reset drops a partly collected sentence, counting it as garbage, as when
// the stream was interrupted (a reconnect): the next bytes start afresh.
func (f *Framer) Reset() {
	f.drop()
	f.skip = false
}

// Feed consumes p and calls emit for every complete, valid sentence, in
// order. The sentence passed to emit starts with '$' or '!', has no line
// ending, and is only valid during the call: emit must copy what it keeps.
// A sentence cut off at the end of p is kept and completed by the next Feed.
func (f *Framer) Feed(p []byte, emit func(sentence []byte)) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\r' || c == '\n':
			if f.in {
				f.finish(emit)
			}
			f.skip = false
		case c == '$' || c == '!':
			// A start inside a sentence: the sentence before it was cut
			// short (a receiver reset, dropped bytes); it is garbage.
			f.drop()
			f.skip = false
			f.in = true
			f.buf = append(f.buf[:0], c)
		case f.skip:
			f.stats.GarbageBytes++
		case !f.in:
			f.stats.GarbageBytes++
		case c < 0x20 || c > 0x7e:
			// Binary inside a sentence: the sentence is broken.
			f.drop()
			f.stats.GarbageBytes++
		case len(f.buf) == f.maxLine:
			f.stats.Overlong++
			f.drop()
			f.stats.GarbageBytes++
			f.skip = true
		default:
			// The common case: collect the rest of the printable run at once.
			j := i + 1
			for j < len(p) && j-i < f.maxLine-len(f.buf) && printable(p[j]) {
				j++
			}
			f.buf = append(f.buf, p[i:j]...)
			i = j - 1
		}
	}
}

// printable reports whether c may continue a sentence body (not a start, not
// a line end).
func printable(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '$' && c != '!'
}

// drop discards the sentence being collected, counting its bytes as garbage.
func (f *Framer) drop() {
	if f.in {
		f.stats.GarbageBytes += uint64(len(f.buf))
		f.in = false
		f.buf = f.buf[:0]
	}
}

// finish validates the collected sentence at its line end and emits it.
func (f *Framer) finish(emit func([]byte)) {
	s := f.buf
	f.in = false
	f.buf = f.buf[:0]
	// Some devices pad the line with spaces before CR LF.
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	switch Check(s) {
	case OK:
		f.stats.Sentences++
		emit(s)
		return
	case Missing:
		f.stats.NoChecksum++
		if f.lax && len(s) > 1 {
			f.stats.Sentences++
			emit(s)
			return
		}
	default:
		f.stats.BadChecksum++
	}
	f.stats.GarbageBytes += uint64(len(s))
}

// Result is the outcome of checking a sentence's checksum.
type Result int

// Results of Check.
const (
	OK       Result = iota // the checksum matches
	Missing                // there is no "*HH" at the end
	Mismatch               // there is one and it does not match
)

// Check checks the checksum of sentence s ("$...*HH" without line ending):
// the XOR of the bytes between the start character and '*', as two hex
// digits in either case.
func Check(s []byte) Result {
	n := len(s)
	if n < 4 || s[n-3] != '*' {
		return Missing
	}
	hi, ok1 := unhex(s[n-2])
	lo, ok2 := unhex(s[n-1])
	if !ok1 || !ok2 {
		return Missing
	}
	var sum byte
	for _, c := range s[1 : n-3] {
		sum ^= c
	}
	if sum != hi<<4|lo {
		return Mismatch
	}
	return OK
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
