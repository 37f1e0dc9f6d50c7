package gt06

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/iotest"
	"time"

	"trackgate/internal/position"
)

// farFuture is a now for Validate that no date of the protocol (up to 2255) passes.
var farFuture = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)

// sentinels are the errors of a broken frame.
var sentinels = []error{ErrStart, ErrLength, ErrStop, ErrCRC, ErrShort}

// framing reports whether err is the error of a broken frame.
func framing(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzDecode checks that no bytes make Decode panic; that what it returns
// is consistent (an error names a field, a Packet with an error carries
// nothing of the content); that it accepts exactly the frames ScanFrames
// yields; and that every position it returns is valid: coordinates,
// course, speed, satellites, fix and battery in range, the time from 2000
// on. A value out of its range must be an error.
//
// With seal, the input is a protocol number and content that the fuzzer
// sealed into a frame with a right length field and error check, so that
// mutations reach the decoding of content; the seeds are the captures,
// whole and so.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		frame := hexBytes(f, tc.hex)
		f.Add(frame, false)
		if n, _, err := ScanFrames(frame, true); err == nil && n == len(frame) && n > 0 {
			hdr := 3 + int(frame[0]&1) // 0x7979 has a two-byte length
			f.Add(frame[hdr:len(frame)-6], true)
		}
	}
	for _, tc := range responseCases {
		f.Add(hexBytes(f, tc.want), false)
	}
	f.Fuzz(func(t *testing.T, frame []byte, seal bool) {
		if seal {
			if len(frame) == 0 || len(frame) > MaxFrame-10 {
				return
			}
			frame = sealed(len(frame) > 250, frame[0], frame[1:], 1)
		}
		checkDecode(t, frame)
	})
}

// checkDecode checks what Decode makes of frame.
func checkDecode(t *testing.T, frame []byte) {
	p, err := Decode(frame, nil)
	n, token, serr := ScanFrames(frame, true)
	whole := serr == nil && n == len(frame) && len(frame) > 0
	if whole && !bytes.Equal(token, frame) {
		t.Fatalf("ScanFrames yields % X of % X", token, frame)
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Field == "" || e.Msg == "" {
			t.Fatalf("error %#v", err)
		}
		// A content error carries the packet's protocol number, serial
		// number and nothing else; a broken frame, a zero Packet and a
		// sentinel, exactly when ScanFrames refuses the frame too.
		if inContent := p.Protocol != 0; inContent {
			header := Packet{Long: p.Long, Protocol: p.Protocol, Serial: p.Serial}
			if !whole || p != header || e.Protocol != p.Protocol || e.Err != nil && e.Err != ErrLength {
				t.Fatalf("%+v with the error %v; ScanFrames: %v", p, err, serr)
			}
		} else if whole || p != (Packet{}) || !framing(err) {
			t.Fatalf("%+v with the error %v; ScanFrames: %v", p, err, serr)
		}
		return
	}
	if !whole {
		t.Fatalf("Decode takes % X, ScanFrames does not: %v", frame, serr)
	}
	if p.Protocol == msgLogin && len(p.IMEI) != 15 {
		t.Fatalf("IMEI %q", p.IMEI)
	}
	if p.HasBatt && (p.Batt < 0 || p.Batt > 100) || !p.HasBatt && p.Batt != 0 {
		t.Fatalf("battery %v, %v", p.Batt, p.HasBatt)
	}
	if p.Position == nil {
		if p.Valid {
			t.Fatal("valid without a position")
		}
		return
	}
	pos := *p.Position
	if err := pos.Validate(farFuture); err != nil {
		t.Fatalf("position %+v: %v", pos, err)
	}
	if pos.Set != gpsFields|pos.Set&position.FieldBatt || p.Valid != (pos.Fix == position.Fix2D) || pos.Sats > 15 ||
		pos.Has(position.FieldBatt) != p.HasBatt || pos.Batt != p.Batt {
		t.Fatalf("position %+v of %+v", pos, p)
	}
	// Another zone moves the time only.
	zone := time.FixedZone("UTC-12:45", -(12*60+45)*60)
	q, err := Decode(frame, zone)
	if err != nil || q.Position == nil {
		t.Fatalf("in %v: %+v, %v", zone, q, err)
	}
	moved := *q.Position
	if !moved.Time.Equal(pos.Time.Add(12*time.Hour + 45*time.Minute)) {
		t.Fatalf("in %v: time %v, in UTC %v", zone, moved.Time, pos.Time)
	}
	moved.Time = pos.Time
	if moved != pos {
		t.Fatalf("in %v: %+v, in UTC %+v", zone, moved, pos)
	}
}

// FuzzScanFrames checks that ScanFrames, driven by a bufio.Scanner as the
// adapter drives it, never panics, never yields a token longer than
// MaxFrame, never skips a byte, stops only with one of its sentinels (never
// the scanner's bufio.ErrTooLong), yields tokens that Decode takes as whole
// frames, and does the same however the stream is cut into reads.
func FuzzScanFrames(f *testing.F) {
	for i, tc := range scanCases {
		var stream []byte
		for _, fr := range tc.frames {
			stream = append(stream, hexBytes(f, fr)...)
		}
		f.Add(append(stream, hexBytes(f, tc.tail)...), uint64(i))
	}
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		frames, err := scan(bytes.NewReader(stream))
		if err != nil && !framing(err) {
			t.Fatalf("error %v", err)
		}
		var read []byte
		for _, fr := range frames {
			if len(fr) > MaxFrame {
				t.Fatalf("token of %d bytes", len(fr))
			}
			if _, err := Decode(fr, nil); framing(err) {
				t.Fatalf("token % X: %v", fr, err)
			}
			read = append(read, fr...)
		}
		if !bytes.HasPrefix(stream, read) || err == nil && len(read) != len(stream) {
			t.Fatalf("tokens % X of the stream % X (%v)", read, stream, err)
		}
		rng := rand.New(rand.NewPCG(seed, seed))
		for _, r := range []*pieces{
			{r: iotest.OneByteReader(bytes.NewReader(stream)), rng: rng},
			{r: bytes.NewReader(stream), rng: rng},
		} {
			again, err2 := scan(r)
			if len(again) != len(frames) || (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
				t.Fatalf("in pieces: %d frames, %v; whole: %d frames, %v", len(again), err2, len(frames), err)
			}
			for i := range again {
				if !bytes.Equal(again[i], frames[i]) {
					t.Fatalf("in pieces: frame %d % X, whole % X", i, again[i], frames[i])
				}
			}
		}
	})
}
