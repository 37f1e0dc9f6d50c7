package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// quiet is a logger for spools whose warnings a test provokes.
var quiet = slog.New(slog.DiscardHandler)

// msg is one message to append.
type msg struct {
	topic   string
	payload []byte
	retain  bool
}

// recLen is the size on disk of m's record.
func (m msg) recLen() int64 { return int64(headerLen + fixedBody + len(m.topic) + len(m.payload)) }

// numbered is the n-th message of a test: payload "entry-0042".
func numbered(n int) msg {
	return msg{topic: "devices/van-gps/positions", payload: fmt.Appendf(nil, "entry-%04d", n)}
}

// entryNum is the number a payload starts with ("entry-0042...").
func entryNum(t testing.TB, e Entry) int {
	t.Helper()
	n, err := 0, errors.New("no entry number")
	if len(e.Payload) >= 10 && bytes.HasPrefix(e.Payload, []byte("entry-")) {
		n, err = strconv.Atoi(string(e.Payload[6:10]))
	}
	if err != nil {
		t.Fatalf("entry %d: payload %q is not a numbered one", e.Seq, e.Payload)
	}
	return n
}

// openSpool opens a spool in cfg.Dir (a new temporary directory when
// empty), quiet unless cfg has a logger, closed when the test ends.
func openSpool(t testing.TB, cfg Config) *Spool {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// closeSpool closes s, failing the test on an error.
func closeSpool(t testing.TB, s *Spool) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// appendMsgs appends msgs to s.
func appendMsgs(t testing.TB, s *Spool, msgs ...msg) {
	t.Helper()
	for _, m := range msgs {
		if err := s.Append(m.topic, m.payload, m.retain); err != nil {
			t.Fatalf("Append(%.40q, %d bytes): %v", m.topic, len(m.payload), err)
		}
	}
}

// appendNumbered appends the numbered messages from..to-1.
func appendNumbered(t testing.TB, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		appendMsgs(t, s, numbered(i))
	}
}

// readN reads n entries, copying their payloads; it fails the test when
// they do not come within ten seconds.
func readN(t testing.TB, r *Reader, n int) []Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]Entry, 0, n)
	for len(out) < n {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d entries: %v", len(out), n, err)
		}
		e.Payload = bytes.Clone(e.Payload)
		out = append(out, e)
	}
	return out
}

// readNone checks that r has no entry to return.
func readNone(t testing.TB, r *Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if e, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = entry %d %q, %v; want no entry", e.Seq, e.Payload, err)
	}
}

// readAll reads every entry s holds, from a new reader.
func readAll(t testing.TB, s *Spool) []Entry {
	t.Helper()
	r := s.NewReader()
	defer r.Close()
	es := readN(t, r, int(s.Stats().Items))
	readNone(t, r)
	return es
}

// nums is the numbers of numbered entries.
func nums(t testing.TB, es []Entry) []int {
	t.Helper()
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = entryNum(t, e)
	}
	return out
}

// seqs is the sequence numbers of es.
func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// span is the numbers from..to-1.
func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// checkIncreasing checks that es have strictly increasing sequence numbers.
func checkIncreasing(t testing.TB, es []Entry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].Seq <= es[i-1].Seq {
			t.Fatalf("entry %d has seq %d after %d", i, es[i].Seq, es[i-1].Seq)
		}
	}
}

// segFiles lists dir's segment files.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// segBytes is the total size of dir's segment files.
func segBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, name := range segFiles(t, dir) {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// copyDir copies the regular files of src into a new temporary directory,
// as a machine killed at this moment would leave them.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if errors.Is(err, os.ErrNotExist) { // a temporary file renamed meanwhile
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestFullPolicy(t *testing.T) {
	for _, p := range []FullPolicy{DropOldest, DropNew} {
		got, err := ParseFullPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseFullPolicy(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"", "drop", "DROP-NEW", "drop-oldest "} {
		if _, err := ParseFullPolicy(s); err == nil {
			t.Errorf("ParseFullPolicy(%q): no error", s)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	longTopic := strings.Repeat("t", 0xffff)
	msgs := []msg{
		{"devices/van-gps/positions", []byte(`{"lat":52.370216,"lon":4.895168}`), false},
		{"devices/van-gps/status", []byte("online"), true},
		{"devices/van-gps/empty", nil, false},
		{"", []byte("no topic"), false},
		{"devices/ü/ünïcode", []byte{0, 1, 2, 0xfe, 0xff}, true},
		{"devices/big", bytes.Repeat([]byte{0xa5}, 100<<10), false},
		{longTopic, []byte("the longest topic"), true},
		{"devices/max", bytes.Repeat([]byte{'m'}, MaxEntry-len("devices/max")), false},
	}
	cases := []struct {
		name         string
		segmentBytes int64
	}{
		{"one segment", 0},
		{"a segment an entry", 256},
		{"segments of some entries", 200 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, Config{Dir: dir, SegmentBytes: tc.segmentBytes})
			var want []msg
			for range 3 {
				want = append(want, msgs...)
			}
			before := time.Now()
			appendMsgs(t, s, want...)
			after := time.Now()

			got := readAll(t, s)
			if len(got) != len(want) {
				t.Fatalf("read %d entries, want %d", len(got), len(want))
			}
			var size int64
			for i, e := range got {
				m := want[i]
				if e.Seq != uint64(i) || e.Topic != m.topic || !bytes.Equal(e.Payload, m.payload) || e.Retain != m.retain {
					t.Fatalf("entry %d = seq %d %.40q (%d bytes) retain %v; want seq %d %.40q (%d bytes) retain %v",
						i, e.Seq, e.Topic, len(e.Payload), e.Retain, i, m.topic, len(m.payload), m.retain)
				}
				if e.Appended.Before(before) || e.Appended.After(after) {
					t.Fatalf("entry %d appended at %v, not between %v and %v", i, e.Appended, before, after)
				}
				size += m.recLen()
			}

			st := s.Stats()
			if st.Items != uint64(len(want)) || st.Appended != uint64(len(want)) || st.Bytes != size || segBytes(t, dir) != size {
				t.Errorf("Stats = %d items, %d appended, %d bytes (%d on disk); want %d, %d, %d",
					st.Items, st.Appended, st.Bytes, segBytes(t, dir), len(want), len(want), size)
			}
			if !st.Oldest.Equal(got[0].Appended) {
				t.Errorf("Stats.Oldest = %v, want %v", st.Oldest, got[0].Appended)
			}

			s.Ack(seqs(got)...)
			st = s.Stats()
			segs := segFiles(t, dir)
			if st.Items != 0 || st.Acked != uint64(len(want)) || !st.Oldest.IsZero() || len(segs) != 1 || st.Bytes != segBytes(t, dir) {
				t.Errorf("after acking all: %d items, %d acked, oldest %v, segments %q of %d bytes (%d on disk); want 0 items, %d acked, no oldest, one segment",
					st.Items, st.Acked, st.Oldest, segs, st.Bytes, segBytes(t, dir), len(want))
			}
			readNone(t, s.NewReader())

			// Reopened: nothing to send, and numbering goes on.
			closeSpool(t, s)
			s = openSpool(t, Config{Dir: dir, SegmentBytes: tc.segmentBytes})
			if st := s.Stats(); st.Items != 0 || st.Bytes != 0 {
				t.Errorf("reopened: %d items, %d bytes; want none", st.Items, st.Bytes)
			}
			appendMsgs(t, s, msgs[0])
			if e := readAll(t, s); len(e) != 1 || e[0].Seq != uint64(len(want)) {
				t.Errorf("reopened: read seqs %v, want [%d]", seqs(e), len(want))
			}
		})
	}
}

func TestAppendTooLarge(t *testing.T) {
	cases := []struct {
		name    string
		topic   string
		payload int
	}{
		{"topic too long", strings.Repeat("t", 0x10000), 0},
		{"payload too large", "t", MaxEntry},
		{"both too large together", strings.Repeat("t", 100), MaxEntry - 99},
	}
	s := openSpool(t, Config{})
	for _, tc := range cases {
		if err := s.Append(tc.topic, make([]byte, tc.payload), false); err == nil {
			t.Errorf("%s: Append succeeded", tc.name)
		}
	}
	if st := s.Stats(); st.Appended != 0 || st.Items != 0 || st.Bytes != 0 || st.Dropped != 0 {
		t.Errorf("Stats after refused appends = %+v, want nothing", st)
	}
}

func TestOldest(t *testing.T) {
	s := openSpool(t, Config{})
	r := s.NewReader()
	if st := s.Stats(); !st.Oldest.IsZero() {
		t.Fatalf("empty queue: Oldest = %v", st.Oldest)
	}
	appendNumbered(t, s, 0, 3*(sampleMask+1))
	es := readN(t, r, 3*(sampleMask+1))
	if got := s.Stats().Oldest; !got.Equal(es[0].Appended) {
		t.Errorf("Oldest = %v, want entry 0's %v", got, es[0].Appended)
	}
	// Acknowledging a sampled entry's predecessors moves Oldest to it.
	s.Ack(seqs(es[:sampleMask+1])...)
	if got := s.Stats().Oldest; !got.Equal(es[sampleMask+1].Appended) {
		t.Errorf("Oldest = %v, want entry %d's %v", got, sampleMask+1, es[sampleMask+1].Appended)
	}
	s.Ack(seqs(es)...)
	if got := s.Stats().Oldest; !got.IsZero() {
		t.Errorf("drained: Oldest = %v, want zero", got)
	}
	// After the queue drained, a new entry is the oldest one, however long
	// ago the last sample was taken.
	time.Sleep(20 * time.Millisecond)
	appendNumbered(t, s, 1000, 1001)
	e := readN(t, r, 1)[0]
	if got := s.Stats().Oldest; !got.Equal(e.Appended) {
		t.Errorf("after draining: Oldest = %v, want the new entry's %v", got, e.Appended)
	}
}

func TestOutOfOrderAck(t *testing.T) {
	dir := t.TempDir()
	rec := numbered(0).recLen()
	cfg := Config{Dir: dir, SegmentBytes: 4 * rec} // four entries a segment
	s := openSpool(t, cfg)
	appendNumbered(t, s, 0, 20)
	full := s.Stats().Bytes

	ackAndRead := func(ack []uint64, items uint64, size int64, want []int) {
		t.Helper()
		s.Ack(ack...)
		st := s.Stats()
		if st.Items != items || st.Bytes != size || segBytes(t, dir) != size {
			t.Errorf("after Ack(%v): %d items, %d bytes (%d on disk); want %d, %d", ack, st.Items, st.Bytes, segBytes(t, dir), items, size)
		}
		r := s.NewReader()
		defer r.Close()
		for range 2 { // and again after a rewind
			es := readN(t, r, len(want))
			readNone(t, r)
			if got := nums(t, es); !slices.Equal(got, want) {
				t.Errorf("after Ack(%v): read %v, want %v", ack, got, want)
			}
			r.Rewind()
		}
	}
	// Acks behind the first unacknowledged entry free no segment.
	ackAndRead([]uint64{0, 1, 2, 5, 7, 8, 15}, 13, full,
		[]int{3, 4, 6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19})
	// Repeated acks and acks of entries that do not exist change nothing.
	ackAndRead([]uint64{0, 5, 5, 20, 1 << 40}, 13, full,
		[]int{3, 4, 6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19})
	if st := s.Stats(); st.Acked != 7 {
		t.Errorf("Stats.Acked = %d, want 7", st.Acked)
	}
	// Acking 3 frees the first segment; acking 4 moves the cursor to 6.
	ackAndRead([]uint64{3}, 12, full-4*rec, []int{4, 6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19})
	ackAndRead([]uint64{4}, 11, full-4*rec, []int{6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19})

	// The cursor saved is 6: the acks beyond it are forgotten, and their
	// entries sent again.
	closeSpool(t, s)
	s = openSpool(t, cfg)
	if got := nums(t, readAll(t, s)); !slices.Equal(got, span(6, 20)) {
		t.Errorf("reopened: read %v, want %v", got, span(6, 20))
	}
}

func TestCrash(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 5 * numbered(0).recLen(), Sync: SyncNever}
	s := openSpool(t, cfg)
	appendNumbered(t, s, 0, 50)
	s.Ack(seqs(readN(t, s.NewReader(), 20))...)
	// Wait for the background save of the cursor, then ack more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, ackedFile))
		if string(b) == "20\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked file holds %q, want 20", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Ack(20, 21, 22, 30, 31)
	appendNumbered(t, s, 50, 55)

	// Kill: the files as they are now, without Close.
	killed := copyDir(t, dir)
	closeSpool(t, s)
	cfg.Dir = killed
	s = openSpool(t, cfg)
	es := readAll(t, s)
	checkIncreasing(t, es)
	got := nums(t, es)
	for _, n := range got {
		if n < 20 {
			t.Fatalf("read %v: entry %d was acknowledged before the saved cursor", got, n)
		}
	}
	for n := 23; n < 55; n++ {
		if n != 30 && n != 31 && !slices.Contains(got, n) {
			t.Fatalf("read %v: unacknowledged entry %d lost", got, n)
		}
	}
	for _, e := range es {
		if e.Seq != uint64(entryNum(t, e)) {
			t.Fatalf("entry %q has seq %d", e.Payload, e.Seq)
		}
	}
	appendNumbered(t, s, 55, 56)
	e := readN(t, s.NewReader(), len(es)+1)[len(es)]
	if e.Seq <= 54 || entryNum(t, e) != 55 {
		t.Errorf("appended after the crash: entry %q seq %d; want entry 55 after seq 54", e.Payload, e.Seq)
	}
}

func TestSizeLimitDropOldest(t *testing.T) {
	const maxBytes = 64 << 10
	m := msg{"devices/van-gps/positions", bytes.Repeat([]byte{'p'}, 200), false}
	n := 10 * maxBytes / int(m.recLen())
	cases := []struct {
		name string
		read int // entries read before the flood, every other one acked
	}{
		{"idle reader", 0},
		{"reader acked some", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, Config{Dir: dir, MaxBytes: maxBytes})
			r := s.NewReader()
			for i := range n {
				m.payload = fmt.Appendf(m.payload[:0], "entry-%04d%s", i, bytes.Repeat([]byte{'p'}, 190))
				appendMsgs(t, s, m)
				if i+1 == tc.read {
					for j, e := range readN(t, r, tc.read) {
						if j%2 == 0 {
							s.Ack(e.Seq)
						}
					}
				}
				if b := s.Stats().Bytes; b > maxBytes {
					t.Fatalf("after %d appends: %d bytes, over the limit", i+1, b)
				}
			}
			st := s.Stats()
			if disk := segBytes(t, dir); disk != st.Bytes || disk > maxBytes+maxBytes/4 {
				t.Errorf("%d bytes on disk, Stats.Bytes %d; want at most %d", disk, st.Bytes, maxBytes+maxBytes/4)
			}
			if st.Dropped == 0 || st.DropBytes == 0 {
				t.Errorf("nothing dropped: %+v", st)
			}
			if st.Appended != st.Acked+st.Dropped+st.Items {
				t.Errorf("%d appended, want acked %d + dropped %d + items %d", st.Appended, st.Acked, st.Dropped, st.Items)
			}
			r.Rewind()
			es := readN(t, r, int(st.Items))
			readNone(t, r)
			checkIncreasing(t, es)
			for i, e := range es {
				if want := n - len(es) + i; entryNum(t, e) != want {
					t.Fatalf("entry %d of %d read is %q; want the newest ones", i, len(es), e.Payload[:10])
				}
			}
			if tc.read == 0 && st.Dropped != uint64(n-len(es)) {
				t.Errorf("Dropped = %d, but the reader missed %d entries", st.Dropped, n-len(es))
			}
		})
	}
}

func TestSizeLimitDropNew(t *testing.T) {
	const maxBytes = 64 << 10
	rec := numbered(0).recLen()
	s := openSpool(t, Config{MaxBytes: maxBytes, Full: DropNew})
	fits := int(maxBytes / rec)
	appendNumbered(t, s, 0, fits)
	for i := 1; i <= 2; i++ {
		if err := s.Append("devices/van-gps/positions", []byte("entry-9999"), false); !errors.Is(err, ErrFull) {
			t.Fatalf("Append to a full queue: %v, want ErrFull", err)
		}
		if st := s.Stats(); st.Dropped != uint64(i) || st.DropBytes != uint64(i)*uint64(rec) {
			t.Errorf("after %d refusals: Dropped %d (%d bytes); want %d (%d bytes)", i, st.Dropped, st.DropBytes, i, i*int(rec))
		}
	}
	r := s.NewReader()
	es := readN(t, r, fits)
	readNone(t, r)
	if got := nums(t, es); !slices.Equal(got, span(0, fits)) {
		t.Fatalf("read %d entries, not the %d appended before the queue filled", len(got), fits)
	}

	// Acking the first hundred frees their segments' room, but no more.
	s.Ack(seqs(es[:100])...)
	if err := s.Append("devices/van-gps/positions", []byte("entry-9999"), false); !errors.Is(err, ErrFull) {
		t.Fatalf("Append with the first segment in use: %v, want ErrFull", err)
	}
	s.Ack(seqs(es)...)
	appendNumbered(t, s, fits, 2*fits-200)
	if got := nums(t, readN(t, r, fits-200)); !slices.Equal(got, span(fits, 2*fits-200)) {
		t.Errorf("after acking: read %v, want %d..%d", got, fits, 2*fits-201)
	}
	if st := s.Stats(); st.Dropped != 3 || st.Items != uint64(fits-200) {
		t.Errorf("Stats = %d dropped, %d items; want 3, %d", st.Dropped, st.Items, fits-200)
	}
}

func TestReaderBlocks(t *testing.T) {
	type result struct {
		e   Entry
		err error
	}
	next := func(ctx context.Context, r *Reader) <-chan result {
		ch := make(chan result, 1)
		go func() {
			e, err := r.Next(ctx)
			ch <- result{e, err}
		}()
		return ch
	}
	blocked := func(ch <-chan result) {
		t.Helper()
		select {
		case res := <-ch:
			t.Fatalf("Next returned %d %q, %v; want it to wait", res.e.Seq, res.e.Payload, res.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	wait := func(ch <-chan result) result {
		t.Helper()
		select {
		case res := <-ch:
			return res
		case <-time.After(10 * time.Second):
			t.Fatal("Next did not return")
			return result{}
		}
	}

	t.Run("append", func(t *testing.T) {
		s := openSpool(t, Config{})
		r := s.NewReader()
		ch := next(context.Background(), r)
		blocked(ch)
		appendNumbered(t, s, 7, 8)
		if res := wait(ch); res.err != nil || res.e.Seq != 0 || string(res.e.Payload) != "entry-0007" {
			t.Errorf("Next = %d %q, %v; want 0 entry-0007", res.e.Seq, res.e.Payload, res.err)
		}
		// Acked before it was read: skipped.
		appendNumbered(t, s, 8, 10)
		s.Ack(1)
		if e := readN(t, r, 1)[0]; e.Seq != 2 {
			t.Errorf("Next = %d %q; want seq 2, 1 being acked", e.Seq, e.Payload)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		s := openSpool(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		ch := next(ctx, s.NewReader())
		blocked(ch)
		cancel()
		if res := wait(ch); !errors.Is(res.err, context.Canceled) {
			t.Errorf("Next = %v, want context.Canceled", res.err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if res := wait(next(ctx, s.NewReader())); !errors.Is(res.err, context.DeadlineExceeded) {
			t.Errorf("Next = %v, want context.DeadlineExceeded", res.err)
		}
	})
	t.Run("close", func(t *testing.T) {
		s := openSpool(t, Config{})
		r := s.NewReader()
		ch := next(context.Background(), r)
		blocked(ch)
		closeSpool(t, s)
		if res := wait(ch); !errors.Is(res.err, ErrClosed) {
			t.Errorf("Next = %v, want ErrClosed", res.err)
		}
		if _, err := r.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Next after Close = %v, want ErrClosed", err)
		}
		if err := s.Append("t", nil, false); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close = %v, want ErrClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	})
}

func TestConcurrent(t *testing.T) {
	const writers, each = 8, 2000
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir, SegmentBytes: 16 << 10, Sync: 5 * time.Millisecond})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			topic := fmt.Sprintf("devices/van-%d/positions", w)
			for i := range each {
				if err := s.Append(topic, fmt.Appendf(nil, "entry-%04d", i), i%7 == 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}

	r := s.NewReader()
	last := map[string]int{}
	var prev Entry
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for n := range writers * each {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d entries: %v", n, err)
		}
		i := entryNum(t, e)
		if l, seen := last[e.Topic]; (seen && i != l+1) || (!seen && i != 0) {
			t.Fatalf("%s: entry %d after %d", e.Topic, i, l)
		}
		if n > 0 && e.Seq <= prev.Seq {
			t.Fatalf("seq %d after %d", e.Seq, prev.Seq)
		}
		if e.Retain != (i%7 == 0) {
			t.Fatalf("%s entry %d: retain %v", e.Topic, i, e.Retain)
		}
		last[e.Topic], prev = i, e
		s.Ack(e.Seq)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	readNone(t, r)
	st := s.Stats()
	if st.Items != 0 || st.Appended != writers*each || st.Acked != writers*each || len(segFiles(t, dir)) != 1 {
		t.Errorf("Stats = %+v with segments %q; want every entry acked, one segment", st, segFiles(t, dir))
	}
}

func TestSyncPolicies(t *testing.T) {
	cases := []struct {
		name string
		sync time.Duration
	}{
		{"always", SyncAlways},
		{"interval", 10 * time.Millisecond},
		{"default: one second", 0},
		{"never", SyncNever},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, Config{Dir: dir, Sync: tc.sync})
			appendNumbered(t, s, 0, 100)
			switch {
			case tc.sync == 0:
				if s.cfg.Sync != time.Second {
					t.Errorf("Sync 0 means %v, want one second", s.cfg.Sync)
				}
			case tc.sync == SyncAlways:
				if st := s.Stats(); st.Syncs == 0 || st.Syncs > 100 {
					t.Errorf("%d syncs for 100 appends", st.Syncs)
				}
			case tc.sync == SyncNever:
				time.Sleep(3 * ackEvery / 2)
				if st := s.Stats(); st.Syncs != 0 {
					t.Errorf("%d syncs, want none", st.Syncs)
				}
			case tc.sync < ackEvery:
				deadline := time.Now().Add(5 * time.Second)
				for s.Stats().Syncs == 0 {
					if time.Now().After(deadline) {
						t.Fatal("no background sync")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if got := nums(t, readAll(t, s)); !slices.Equal(got, span(0, 100)) {
				t.Errorf("read %v, want 0..99", got)
			}
			closeSpool(t, s)
			s = openSpool(t, Config{Dir: dir, Sync: tc.sync})
			if got := nums(t, readAll(t, s)); !slices.Equal(got, span(0, 100)) {
				t.Errorf("reopened: read %v, want 0..99", got)
			}
		})
	}
}

// TestLogsRecovery checks that a quarantine is reported to the logger.
func TestLogsRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, Config{Dir: dir})
	appendNumbered(t, s, 0, 3)
	closeSpool(t, s)
	seg := segFiles(t, dir)[0]
	if err := os.Truncate(seg, 2*numbered(0).recLen()+5); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s = openSpool(t, Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if !strings.Contains(log.String(), "quarantined") || !strings.Contains(log.String(), filepath.Base(seg)) {
		t.Errorf("log %q does not report the quarantine of %s", log.String(), filepath.Base(seg))
	}
	if got := nums(t, readAll(t, s)); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("read %v, want [0 1]", got)
	}
}

// breakWrites makes the next write to s's current segment fail, as a full
// or failing disk would: torn is written to the file, the torn start of a
// record, and the file is reopened read-only under s.
func breakWrites(t *testing.T, s *Spool, torn []byte) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := os.OpenFile(s.f.Name(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(torn); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r, err := os.Open(s.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	s.f.Close()
	s.f = r
}

func TestFailedWrite(t *testing.T) {
	torn := []byte{0, 0, 0, 40, 1, 2, 3}
	cases := []struct {
		name         string
		prev, before int    // entries appended in an earlier run, and in this one before the failure
		torn         []byte // what the failed write left
	}{
		{"first write of a new queue", 0, 0, nil},
		{"first write of a new queue, torn", 0, 0, torn},
		{"first write after a restart", 5, 0, nil},
		{"first write after a restart, torn", 5, 0, torn},
		{"a later write", 0, 5, nil},
		{"a later write, torn", 2, 3, torn},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, Config{Dir: dir})
			appendNumbered(t, s, 0, tc.prev)
			closeSpool(t, s)
			s = openSpool(t, Config{Dir: dir})
			appendNumbered(t, s, tc.prev, tc.prev+tc.before)
			breakWrites(t, s, tc.torn)
			if err := s.Append(numbered(99).topic, numbered(99).payload, false); err == nil {
				t.Fatal("Append to a broken segment succeeded")
			}
			appendNumbered(t, s, tc.prev+tc.before, 10)
			s.Ack(0, 1, 2, 3, 4, 5)
			// On disk, the torn bytes may be left too.
			if st, disk := s.Stats(), segBytes(t, dir); st.Items != 4 || disk < st.Bytes || disk > st.Bytes+int64(len(tc.torn)) {
				t.Errorf("Stats = %d items, %d bytes (%d on disk); want 4 items, the bytes on disk", st.Items, st.Bytes, disk)
			}
			if got := nums(t, readAll(t, s)); !slices.Equal(got, span(6, 10)) {
				t.Errorf("read %v, want 6..9", got)
			}
			closeSpool(t, s)
			s = openSpool(t, Config{Dir: dir})
			if got := nums(t, readAll(t, s)); !slices.Equal(got, span(6, 10)) {
				t.Errorf("reopened: read %v, want 6..9", got)
			}
		})
	}
}
