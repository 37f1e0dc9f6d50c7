package spool

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// writeSegment appends the numbered entries from..to-1 to the spool in dir
// and closes it, returning the segment they went to and the offsets of its
// records (and of its end).
func writeSegment(t testing.TB, dir string, from, to int) (string, []int) {
	t.Helper()
	s := openSpool(t, Config{Dir: dir})
	appendNumbered(t, s, from, to)
	closeSpool(t, s)
	segs := segFiles(t, dir)
	path := segs[len(segs)-1]
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := []int{0}
	for off := 0; off < len(data); {
		n, _, ok := parseRecord(data[off:])
		if !ok {
			t.Fatalf("%s: no record at offset %d", path, off)
		}
		off += n
		offs = append(offs, off)
	}
	if len(offs) != to-from+1 {
		t.Fatalf("%s holds %d records, want %d", path, len(offs)-1, to-from)
	}
	return path, offs
}

// quarantined returns the files in dir's quarantine and their contents.
func quarantined(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "quarantine"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, "quarantine", de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = b
	}
	return out
}

// badName is the quarantine file of the region at off of segment path.
func badName(path string, off int) string {
	return strings.TrimSuffix(filepath.Base(path), segSuffix) + "-" + strconv.Itoa(off) + ".bad"
}

// checkRecovered checks that the spool in dir quarantined want (file name
// to content), that a reader returns exactly the numbered entries
// survivors, and that acking them all empties the queue and leaves only
// the current segment.
func checkRecovered(t *testing.T, dir string, want map[string][]byte, survivors []int) {
	t.Helper()
	s := openSpool(t, Config{Dir: dir})
	st := s.Stats()
	var quarBytes int
	for _, b := range want {
		quarBytes += len(b)
	}
	if st.Quarantined != uint64(len(want)) || st.QuarBytes != uint64(quarBytes) {
		t.Errorf("Stats: %d regions (%d bytes) quarantined, want %d (%d bytes)", st.Quarantined, st.QuarBytes, len(want), quarBytes)
	}
	got := quarantined(t, dir)
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("quarantine/%s holds %q, want %q", name, got[name], b)
		}
	}
	if len(got) != len(want) {
		t.Errorf("quarantine holds %d files, want %d", len(got), len(want))
	}
	if st.Items != uint64(len(survivors)) {
		t.Errorf("Stats.Items = %d, want the %d survivors", st.Items, len(survivors))
	}
	es := readAll(t, s)
	checkIncreasing(t, es)
	if n := nums(t, es); !slices.Equal(n, survivors) {
		t.Fatalf("read %v, want %v", n, survivors)
	}
	s.Ack(seqs(es)...)
	if st := s.Stats(); st.Items != 0 || st.Bytes != 0 || len(segFiles(t, dir)) != 1 {
		t.Errorf("all acked: %d items, %d bytes, segments %q; want an empty queue", st.Items, st.Bytes, segFiles(t, dir))
	}
	closeSpool(t, s)
	s = openSpool(t, Config{Dir: dir})
	if st := s.Stats(); st.Items != 0 || st.Quarantined != 0 {
		t.Errorf("reopened: %d items, %d quarantined; want none", st.Items, st.Quarantined)
	}
}

// without is span(from, to) without the numbers drop.
func without(from, to int, drop ...int) []int {
	return slices.DeleteFunc(span(from, to), func(n int) bool { return slices.Contains(drop, n) })
}

func TestQuarantineFlippedByte(t *testing.T) {
	type flip struct {
		rec, at int // at < 0 counts from the record's end
	}
	cases := []struct {
		name  string
		flips []flip
	}{
		{"length high byte", []flip{{10, 1}}},
		{"length low byte", []flip{{10, 3}}},
		{"checksum", []flip{{10, 5}}},
		{"seq", []flip{{10, headerLen + 7}}},
		{"time", []flip{{10, headerLen + 12}}},
		{"flags", []flip{{10, headerLen + 16}}},
		{"topic length", []flip{{10, headerLen + 18}}},
		{"topic", []flip{{10, headerLen + fixedBody + 3}}},
		{"payload", []flip{{10, -1}}},
		{"first record", []flip{{0, headerLen + fixedBody}}},
		{"last record", []flip{{19, headerLen + fixedBody}}},
		{"two records", []flip{{5, -2}, {12, 0}}},
		{"adjacent records", []flip{{7, -1}, {8, 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offs := writeSegment(t, dir, 0, 20)
			writeSegment(t, dir, 20, 30)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var lost []int
			for _, f := range tc.flips {
				at := offs[f.rec] + f.at
				if f.at < 0 {
					at = offs[f.rec+1] + f.at
				}
				data[at] ^= 0x10
				lost = append(lost, f.rec)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			// Adjacent damaged records are one region.
			want := map[string][]byte{}
			for i := 0; i < len(lost); i++ {
				from, to := lost[i], lost[i]
				for i+1 < len(lost) && lost[i+1] == to+1 {
					i++
					to = lost[i]
				}
				want[badName(path, offs[from])] = data[offs[from]:offs[to+1]]
			}
			checkRecovered(t, dir, want, without(0, 30, lost...))
		})
	}
}

func TestQuarantineTornTail(t *testing.T) {
	zeros := make([]byte, 4096)
	cases := []struct {
		name string
		keep int    // bytes of the last record kept
		tail []byte // appended after them
		last bool   // whether the last record survives
	}{
		{"partial header", 3, nil, false},
		{"header only", headerLen, nil, false},
		{"partial body", headerLen + 10, nil, false},
		{"all but one byte", -1, nil, false},
		{"zeros after the records", 0, zeros, true},
		{"partial record then zeros", headerLen + 10, zeros[:100], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, offs := writeSegment(t, dir, 0, 20)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			end := offs[19] + tc.keep
			if tc.keep < 0 {
				end = offs[20] + tc.keep
			}
			if tc.last {
				end = offs[20]
			}
			data = append(data[:end], tc.tail...)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			survivors, badAt := span(0, 19), offs[19]
			if tc.last {
				survivors, badAt = span(0, 20), offs[20]
			}
			checkRecovered(t, dir, map[string][]byte{badName(path, badAt): data[badAt:]}, survivors)
		})
	}
}

func TestQuarantineGarbageSegment(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1000)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	cases := []struct {
		name    string
		file    string
		content func(valid []byte) []byte // valid: the first segment
	}{
		{"random bytes", "00000000000000000005.seg", func([]byte) []byte { return random }},
		{"zeros", "00000000000000000005.seg", func([]byte) []byte { return make([]byte, 512) }},
		{"sorting last", "99999999999999999999.seg", func([]byte) []byte { return random }},
		{"not a number", "garbage.seg", func([]byte) []byte { return random }},
		{"records with bad checksums", "00000000000000000005.seg", func(valid []byte) []byte {
			b := bytes.Clone(valid)
			for off := 0; off < len(b); off += int(numbered(0).recLen()) {
				b[off+4] ^= 1
			}
			return b
		}},
		{"empty", "00000000000000000005.seg", func([]byte) []byte { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first, _ := writeSegment(t, dir, 0, 10)
			writeSegment(t, dir, 10, 20)
			valid, err := os.ReadFile(first)
			if err != nil {
				t.Fatal(err)
			}
			garbage := tc.content(valid)
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
			want := map[string][]byte{}
			if len(garbage) > 0 {
				want[badName(path, 0)] = garbage
			}
			checkRecovered(t, dir, want, span(0, 20))
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("%s is still there (%v)", tc.file, err)
			}
		})
	}
}

// TestDamagedWhileOpen damages a segment after Open checked it: the reader
// skips the rest of that segment, and the next Open quarantines the damage
// and sends the rest again.
func TestDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	rec := numbered(0).recLen()
	cfg := Config{Dir: dir, SegmentBytes: 4 * rec}
	s := openSpool(t, cfg)
	appendNumbered(t, s, 0, 12)
	segs := segFiles(t, dir)
	if len(segs) != 3 {
		t.Fatalf("segments %q, want 3", segs)
	}
	f, err := os.OpenFile(segs[1], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, rec+headerLen+fixedBody); err != nil { // entry 5
		t.Fatal(err)
	}
	f.Close()

	r := s.NewReader()
	es := readN(t, r, 9)
	readNone(t, r)
	if got := nums(t, es); !slices.Equal(got, without(0, 12, 5, 6, 7)) {
		t.Fatalf("read %v, want 0..11 but the damaged segment's rest, 5..7", got)
	}
	s.Ack(seqs(es)...)
	closeSpool(t, s)

	s = openSpool(t, cfg)
	if st := s.Stats(); st.Quarantined != 1 || st.QuarBytes != uint64(rec) {
		t.Errorf("reopened: %d regions (%d bytes) quarantined, want one record's", st.Quarantined, st.QuarBytes)
	}
	// The cursor saved is 5: 6 and 7 come again, and 8..11 with them.
	if got := nums(t, readAll(t, s)); !slices.Equal(got, span(6, 12)) {
		t.Errorf("reopened: read %v, want 6..11", got)
	}
}
