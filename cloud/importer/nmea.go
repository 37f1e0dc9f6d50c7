package importer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"time"

	"trackgate/internal/epoch"
)

// maxNMEALine caps a log line: NMEA 0183 allows 82 bytes a sentence, and a
// logger's prefix fits in the rest.
const maxNMEALine = 1 << 10

// nmeaReader is the state of an NMEA log being read.
type nmeaReader struct {
	s          *sink
	a          *epoch.Assembler
	emit       func(*epoch.Epoch)
	nonEmpty   int   // non-empty lines
	recognised int   // lines that were sentences the assembler took
	err        error // the first error handing on a position
}

// readNMEA reads an NMEA log into s.
func readNMEA(r io.Reader, s *sink) error {
	br := bufio.NewReaderSize(r, 64<<10)
	n := &nmeaReader{s: s, a: epoch.New(epoch.Options{Now: func() time.Time { return s.now }})}
	n.emit = n.epoch
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: skip it to its end.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			n.nonEmpty++
			s.stats.Skipped++
			line = nil
		}
		if len(line) > 0 {
			n.line(line)
		}
		if n.err != nil {
			return n.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("importer nmea: read: %w", err)
		}
		if err := s.tick(); err != nil {
			return err
		}
	}
	n.a.Flush(n.emit)
	if n.err != nil {
		return n.err
	}
	if n.nonEmpty > 0 && n.recognised == 0 {
		return errorf(1, "no NMEA sentences: not one line is a well-formed sentence")
	}
	return nil
}

// line handles one line of the log, its line ending included.
func (n *nmeaReader) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	n.nonEmpty++
	if len(b) > maxNMEALine {
		n.s.stats.Skipped++
		return
	}
	// A logger may prefix each sentence (a timestamp, a port name).
	if i := bytes.IndexAny(b, "$!"); i > 0 {
		b = b[i:]
	}
	if !framed(b) {
		n.s.stats.Skipped++
		return
	}
	if err := n.a.AddLine(b, n.emit); err != nil {
		n.s.stats.Skipped++
		return
	}
	n.recognised++
}

// framed reports whether b is one sentence: '$' or '!', an address of
// upper-case letters and digits, a comma, printable ASCII, and a checksum
// that matches if there is one.
func framed(b []byte) bool {
	if len(b) < 2 || b[0] != '$' && b[0] != '!' {
		return false
	}
	body := b[1:]
	star := bytes.LastIndexByte(body, '*')
	if star >= 0 {
		if len(body) != star+3 {
			return false
		}
		hi, lo := unhex(body[star+1]), unhex(body[star+2])
		if hi < 0 || lo < 0 {
			return false
		}
		body = body[:star]
		var sum byte
		for _, c := range body {
			sum ^= c
		}
		if int(sum) != hi<<4|lo {
			return false
		}
	}
	comma := bytes.IndexByte(body, ',')
	if comma < 2 || !isUpperAlnum(body[:comma]) {
		return false
	}
	for _, c := range body {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}

// unhex returns the value of the hexadecimal digit c, or -1.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// epoch hands on the fix of an epoch, and counts an epoch without a valid
// one as skipped.
func (n *nmeaReader) epoch(e *epoch.Epoch) {
	if n.err != nil {
		return
	}
	if !e.Valid || e.Position.Validate(n.s.now) != nil {
		n.s.stats.Skipped++
		return
	}
	n.err = n.s.push(&e.Position)
}
