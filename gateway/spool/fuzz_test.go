package spool

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fuzzValidFrom numbers FuzzOpen's valid segment far above the seeds'
// entries, so that no record the fuzzer derives from them shares a
// sequence number with it: segments overlapping in numbers come only from
// tampering, and Open does not sort them out.
const fuzzValidFrom = 1 << 32

// FuzzOpen opens a spool whose last segment is the fuzz input, after a
// valid segment or alone, and checks that every entry it counts is read,
// the valid segment's entries first and whole, that every byte of the
// input is kept or quarantined, and that acking what was read empties it.
func FuzzOpen(f *testing.F) {
	path, offs := writeSegment(f, f.TempDir(), 0, 8)
	seg, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	flipped := bytes.Clone(seg)
	flipped[offs[3]+headerLen+fixedBody] ^= 1
	f.Add(seg, true)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-7], false)
	f.Add(flipped, false)
	f.Add(append(bytes.Clone(seg[offs[2]:offs[5]]), seg[offs[1]:]...), false)
	f.Add(append(bytes.Clone(seg[:offs[6]]), make([]byte, 40)...), true)
	f.Add([]byte{}, true)

	validDir := f.TempDir()
	if err := os.WriteFile(filepath.Join(validDir, ackedFile), []byte(strconv.Itoa(fuzzValidFrom)), 0o600); err != nil {
		f.Fatal(err)
	}
	validPath, _ := writeSegment(f, validDir, 0, 5)
	valid, err := os.ReadFile(validPath)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte, withValid bool) {
		if len(data) > 64<<10 { // resynchronizing is quadratic in the worst case
			return
		}
		dir := t.TempDir()
		if withValid {
			if err := os.WriteFile(filepath.Join(dir, ackedFile), []byte(strconv.Itoa(fuzzValidFrom)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(validPath)), valid, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fuzzed := filepath.Join(dir, fmt.Sprintf("%020d%s", uint64(math.MaxUint64), segSuffix))
		if err := os.WriteFile(fuzzed, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s := openSpool(t, Config{Dir: dir, Sync: SyncNever})
		st := s.Stats()
		r := s.NewReader()
		es := readN(t, r, int(st.Items))
		checkIncreasing(t, es)
		if withValid {
			if len(es) != 5 {
				t.Fatalf("read %d entries, want the valid segment's 5", len(es))
			}
			for i, e := range es {
				if e.Seq != fuzzValidFrom+uint64(i) || entryNum(t, e) != i || e.Topic != numbered(i).topic {
					t.Fatalf("entry %d = %d %q %q, want the valid segment's", i, e.Seq, e.Topic, e.Payload)
				}
			}
		} else {
			var kept, quar int64
			if fi, err := os.Stat(fuzzed); err == nil {
				kept = fi.Size()
			}
			for _, b := range quarantined(t, dir) {
				quar += int64(len(b))
			}
			if kept+int64(st.QuarBytes) != int64(len(data)) || quar != int64(st.QuarBytes) {
				t.Fatalf("%d bytes kept, %d quarantined (%d in files), of %d", kept, st.QuarBytes, quar, len(data))
			}
		}
		s.Ack(seqs(es)...)
		if st := s.Stats(); st.Items != 0 {
			t.Fatalf("%d items after acking all %d read", st.Items, len(es))
		}
	})
}

// FuzzRecord parses any bytes as a record, and checks that the record
// Append writes for any message reads back and parses back to it, and that
// any change to its checksum or body is caught. One spool serves every
// input a fuzzing process tries.
func FuzzRecord(f *testing.F) {
	path, offs := writeSegment(f, f.TempDir(), 0, 3)
	seg, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg[:offs[1]], "devices/van-gps/positions", []byte(`{"lat":52.370216,"lon":4.895168}`), false, uint(0))
	f.Add(seg, "devices/van-gps/status", []byte("online"), true, uint(100))
	f.Add(seg[offs[1]+1:], "", []byte{}, false, uint(7))
	f.Add([]byte{}, "t", []byte{0, 0xff}, true, uint(33))

	s := openSpool(f, Config{Sync: SyncNever})
	r := s.NewReader()
	f.Fuzz(func(t *testing.T, data []byte, topic string, payload []byte, retain bool, flip uint) {
		if n, e, ok := parseRecord(data); ok {
			if n > len(data) || n != headerLen+fixedBody+len(e.Topic)+len(e.Payload) {
				t.Fatalf("parseRecord(%q) = %d bytes, topic %q, payload %q", data, n, e.Topic, e.Payload)
			}
		}

		err := s.Append(topic, payload, retain)
		if len(topic) > 0xffff || len(topic)+len(payload) > MaxEntry {
			if err == nil {
				t.Fatalf("Append of a %d byte topic and %d byte payload succeeded", len(topic), len(payload))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		e := readN(t, r, 1)[0]
		s.Ack(e.Seq)
		if e.Topic != topic || !bytes.Equal(e.Payload, payload) || e.Retain != retain {
			t.Fatalf("read %q %q retain %v, want %q %q retain %v", e.Topic, e.Payload, e.Retain, topic, payload, retain)
		}
		segs := segFiles(t, s.cfg.Dir)
		rec := tail(t, segs[len(segs)-1], msg{topic, payload, retain}.recLen())
		n, pe, ok := parseRecord(rec)
		if !ok || n != len(rec) || pe.Seq != e.Seq || pe.Topic != topic || !bytes.Equal(pe.Payload, payload) || pe.Retain != retain || !pe.Appended.Equal(e.Appended) {
			t.Fatalf("record %q parses as %v, %d of %d bytes, %+v", rec, ok, n, len(rec), pe)
		}
		at := 4 + int(flip/8%uint(len(rec)-4))
		rec[at] ^= 1 << (flip % 8)
		if _, _, ok := parseRecord(rec); ok {
			t.Fatalf("record with bit %d of byte %d flipped checks", flip%8, at)
		}
	})
}

// tail returns the last n bytes of the file at path.
func tail(t *testing.T, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, fi.Size()-n); err != nil {
		t.Fatal(err)
	}
	return b
}
