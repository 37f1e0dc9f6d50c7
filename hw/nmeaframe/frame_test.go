package nmeaframe

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

var (
	rmc = withSum("$GNRMC,083559.00,A,5222.23184,N,00453.71112,E,0.004,,211126,,,A,V")
	gga = withSum("$GNGGA,083559.00,5222.23184,N,00453.71112,E,1,12,0.58,4.2,M,46.0,M,,")
	ais = withSum("!AIVDM,1,1,,B,177KQJ5000G?tO`K>RA1wUbN0TKH,0")
)

// withSum appends the checksum to a sentence body "$...".
func withSum(body string) string {
	var sum byte
	for i := 1; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("%s*%02X", body, sum)
}

func feedAll(f *Framer, chunks ...string) []string {
	var got []string
	for _, c := range chunks {
		f.Feed([]byte(c), func(s []byte) { got = append(got, string(s)) })
	}
	return got
}

func TestFramer(t *testing.T) {
	rmcBody := rmc[:len(rmc)-3]
	lowerHex := withSum("$GPZDA,083600.00,21,11,2026,00,00") // checksum 6E
	lowerHex = lowerHex[:len(lowerHex)-2] + strings.ToLower(lowerHex[len(lowerHex)-2:])
	long := withSum("$GPXXX," + strings.Repeat("1,", 100))
	tests := []struct {
		name  string
		lax   bool
		in    []string // fed chunk by chunk
		want  []string
		stats Stats
	}{
		{name: "crlf", in: []string{rmc + "\r\n" + gga + "\r\n"}, want: []string{rmc, gga},
			stats: Stats{Sentences: 2}},
		{name: "lf only and cr only", in: []string{rmc + "\n" + gga + "\r" + ais + "\n"}, want: []string{rmc, gga, ais},
			stats: Stats{Sentences: 3}},
		{name: "split across reads", in: []string{rmc[:10], rmc[10:50], rmc[50:] + "\r", "\n" + gga[:3], gga[3:] + "\r\n"},
			want: []string{rmc, gga}, stats: Stats{Sentences: 2}},
		{name: "partial sentence at start", in: []string{rmc[20:] + "\r\n" + gga + "\r\n"}, want: []string{gga},
			stats: Stats{Sentences: 1, GarbageBytes: uint64(len(rmc) - 20)}},
		{name: "binary between sentences", in: []string{rmc + "\r\n\xb5\x62\x01\x07\x5c\x00\xff" + gga + "\r\n"},
			want: []string{rmc, gga}, stats: Stats{Sentences: 2, GarbageBytes: 7}},
		{name: "binary inside a sentence", in: []string{rmc[:30] + "\x00" + rmc[30:] + "\r\n" + gga + "\r\n"},
			want: []string{gga}, stats: Stats{Sentences: 1, GarbageBytes: uint64(len(rmc) + 1)}},
		{name: "sentence cut by a new start", in: []string{rmc[:30] + gga + "\r\n"}, want: []string{gga},
			stats: Stats{Sentences: 1, GarbageBytes: 30}},
		{name: "bad checksum", in: []string{rmcBody + "*00\r\n" + gga + "\r\n"}, want: []string{gga},
			stats: Stats{Sentences: 1, BadChecksum: 1, GarbageBytes: uint64(len(rmc))}},
		{name: "lower-case hex", in: []string{lowerHex + "\r\n"}, want: []string{lowerHex}, stats: Stats{Sentences: 1}},
		{name: "missing checksum strict", in: []string{rmcBody + "\r\n"},
			stats: Stats{NoChecksum: 1, GarbageBytes: uint64(len(rmcBody))}},
		{name: "missing checksum lax", lax: true, in: []string{rmcBody + "\r\n"}, want: []string{rmcBody},
			stats: Stats{Sentences: 1, NoChecksum: 1}},
		{name: "over-long line", in: []string{long + "\r\n" + gga + "\r\n"}, want: []string{gga},
			stats: Stats{Sentences: 1, Overlong: 1, GarbageBytes: uint64(len(long))}},
		{name: "trailing spaces", in: []string{rmc + "  \r\n"}, want: []string{rmc}, stats: Stats{Sentences: 1}},
		{name: "empty lines", in: []string{"\r\n\r\n\n"}, stats: Stats{}},
		{name: "lone start", in: []string{"$\r\n!\r\n"}, stats: Stats{NoChecksum: 2, GarbageBytes: 2}},
		{name: "proprietary passes framing", in: []string{withSum("$PUBX,00,083559.00,5222.23184,N") + "\r\n"},
			want: []string{withSum("$PUBX,00,083559.00,5222.23184,N")}, stats: Stats{Sentences: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(tt.lax, 0)
			got := feedAll(f, tt.in...)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("sentences:\n got %q\nwant %q", got, tt.want)
			}
			if f.Stats() != tt.stats {
				t.Errorf("stats: got %+v, want %+v", f.Stats(), tt.stats)
			}
		})
	}
}

func TestFramerByteByByte(t *testing.T) {
	in := "garbage" + rmc + "\r\n\xb5b" + gga + "\n" + ais + "\r\n"
	f := New(false, 0)
	var got []string
	for i := 0; i < len(in); i++ {
		f.Feed([]byte{in[i]}, func(s []byte) { got = append(got, string(s)) })
	}
	if want := []string{rmc, gga, ais}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if g := f.Stats().GarbageBytes; g != 9 {
		t.Errorf("garbage bytes %d, want 9", g)
	}
}

func TestReset(t *testing.T) {
	f := New(false, 0)
	got := feedAll(f, rmc[:40])
	f.Reset()
	got = append(got, feedAll(f, rmc[40:]+"\r\n"+gga+"\r\n")...)
	if len(got) != 1 || got[0] != gga {
		t.Fatalf("got %q, want only the GGA", got)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		in   string
		want Result
	}{
		{rmc, OK},
		{rmc[:len(rmc)-2] + strings.ToLower(rmc[len(rmc)-2:]), OK},
		{rmc[:len(rmc)-2] + "ZZ", Missing},
		{withSum("$GPZDA,1")[:len("$GPZDA,1")] + "*00", Mismatch},
		{rmc[:len(rmc)-3], Missing},
		{rmc[:len(rmc)-2] + "G1", Missing},
		{"$*00", OK},
		{"", Missing},
	}
	for _, tt := range tests {
		if got := Check([]byte(tt.in)); got != tt.want {
			t.Errorf("Check(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzFramer checks the framer's invariants on arbitrary input: it never
// panics, every emitted sentence is well formed, and every byte is accounted
// for, whichever way the input is split.
func FuzzFramer(f *testing.F) {
	f.Add([]byte(rmc+"\r\n"+gga+"\r\n"), 7, false)
	f.Add([]byte("\xb5\x62"+rmc[5:]+"\n"+ais+"\r"), 1, true)
	f.Add([]byte(rmc[:len(rmc)-3]+"\r\n$$!!**\r\n"), 3, true)
	f.Fuzz(func(t *testing.T, data []byte, split int, lax bool) {
		fr := New(lax, 0)
		var emitted, emittedBytes uint64
		check := func(s []byte) {
			emitted++
			emittedBytes += uint64(len(s))
			if len(s) == 0 || (s[0] != '$' && s[0] != '!') {
				t.Fatalf("sentence %q does not start with $ or !", s)
			}
			if bytes.ContainsAny(s, "\r\n") || len(s) > DefaultMaxLine {
				t.Fatalf("malformed sentence %q", s)
			}
			if r := Check(s); r == Mismatch || (r == Missing && !lax) {
				t.Fatalf("sentence %q emitted with checksum result %v", s, r)
			}
		}
		if split <= 0 {
			split = 1
		}
		for i := 0; i < len(data); i += split {
			fr.Feed(data[i:min(i+split, len(data))], check)
		}
		fr.Reset()
		st := fr.Stats()
		if st.Sentences != emitted {
			t.Fatalf("Sentences = %d, emitted %d", st.Sentences, emitted)
		}
		var ends, trailing uint64
		for _, c := range data {
			if c == '\r' || c == '\n' {
				ends++
			}
		}
		// Trailing spaces trimmed from a sentence are neither emitted nor
		// garbage: allow for them.
		trailing = uint64(bytes.Count(data, []byte{' '}))
		total := emittedBytes + ends + st.GarbageBytes
		if total > uint64(len(data)) || total+trailing < uint64(len(data)) {
			t.Fatalf("bytes: %d emitted + %d line ends + %d garbage != %d fed", emittedBytes, ends, st.GarbageBytes, len(data))
		}
	})
}
