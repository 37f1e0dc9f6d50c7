package h02

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"testing/iotest"
	"time"

	"trackgate/internal/position"
)

// FuzzDecode checks that no input makes Decode panic, that its errors name
// a field and come with no decoded data, and that what it decodes is in
// range (see checkMessage).
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeTests {
		f.Add(tc.msg)
	}
	accept, reject := captures(f)
	for _, msg := range append(accept, reject...) {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := Decode(msg, now)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Field == "" || e.Msg == "" {
				t.Fatalf("Decode(%q): error %#v is not an *Error naming a field", msg, err)
			}
			if m.Position != nil || m.Valid || m.HasBatt || m.Batt != 0 {
				t.Fatalf("Decode(%q): error %v with decoded data %s", msg, err, show(m))
			}
			return
		}
		checkMessage(t, msg, m)
	})
}

// FuzzScanMessages checks that no stream makes ScanMessages panic or ask for
// more than MaxMessage bytes, that it splits a stream the same however it
// is read, into tokens that are the stream's own bytes in order (line
// breaks skipped between them), each at most MaxMessage bytes and each
// decoding without a panic; and that it ends with one of the sentinels or
// at the end of the stream.
func FuzzScanMessages(f *testing.F) {
	for _, tc := range scanTests {
		f.Add(tc.stream)
	}
	accept, _ := captures(f)
	f.Add(join(accept))
	f.Fuzz(func(t *testing.T, stream []byte) {
		tokens, err := scan(bytes.NewReader(stream))
		byByte, byteErr := scan(iotest.OneByteReader(bytes.NewReader(stream)))
		if !reflect.DeepEqual(tokens, byByte) || (err == nil) != (byteErr == nil) || err != nil && sentinel(err) != sentinel(byteErr) {
			t.Fatalf("%q split into %q, %v when read whole, into %q, %v byte by byte", stream, tokens, err, byByte, byteErr)
		}
		if err != nil && sentinel(err) == nil {
			t.Fatalf("%q: the scan ended with %v, not a sentinel", stream, err)
		}
		rest := stream
		for _, tok := range tokens {
			rest = bytes.TrimLeft(rest, "\r\n")
			if len(tok) == 0 || len(tok) > MaxMessage || !bytes.HasPrefix(rest, tok) {
				t.Fatalf("%q: token %q is not the next message of the stream, at most %d bytes", stream, tok, MaxMessage)
			}
			rest = rest[len(tok):]
			if m, err := Decode(tok, now); err == nil {
				checkMessage(t, tok, m)
			}
		}
		if rest = bytes.TrimLeft(rest, "\r\n"); err == nil && len(rest) > 0 {
			t.Fatalf("%q: the scan ended cleanly before %q", stream, rest)
		}
	})
}

// sentinel returns the sentinel err wraps, or nil.
func sentinel(err error) error {
	for _, s := range []error{ErrStart, ErrTooLong, ErrShort} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// checkMessage checks a Message that Decode returned without error: its
// header is well formed, its battery a percentage, its position (if any)
// complete and within the model's ranges (no NaN, latitude, longitude,
// speed, course), and its reply, if any, a message that itself decodes.
func checkMessage(t *testing.T, msg []byte, m Message) {
	t.Helper()
	if m.Binary == (m.Maker != "") || m.Binary == (m.Type != "") || !isDigits([]byte(m.IMEI)) {
		t.Fatalf("Decode(%q): malformed header %s", msg, show(m))
	}
	if m.HasBatt && !(m.Batt >= 0 && m.Batt <= 100) || !m.HasBatt && m.Batt != 0 {
		t.Fatalf("Decode(%q): battery %s", msg, show(m))
	}
	if p := m.Position; p != nil {
		if err := p.Validate(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || !p.Has(fixSet) {
			t.Fatalf("Decode(%q): position %s out of range: %v", msg, show(m), err)
		}
		if (p.Fix == position.Fix2D) != m.Valid || m.HasBatt != p.Has(position.FieldBatt) || p.Batt != m.Batt {
			t.Fatalf("Decode(%q): position %s disagrees with the message", msg, show(m))
		}
	}
	if reply := AppendReply(nil, m, now); len(reply) > 0 {
		adv, tok, err := ScanMessages(reply, true)
		r, derr := Decode(tok, now)
		if adv != len(reply) || err != nil || derr != nil || r.IMEI != m.IMEI || r.Maker != m.Maker {
			t.Fatalf("Decode(%q): reply %q does not decode: %s, %v, %v", msg, reply, show(r), err, derr)
		}
	}
}
