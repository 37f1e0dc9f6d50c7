// Package spool is the gateway's on-disk store-and-forward queue: every
// message bound for the upstream broker is appended to it before the
// publisher is acknowledged, and leaves it only once the upstream broker has
// acknowledged it (Ack).
//
// # On disk
//
// The queue is a directory of append-only segment files, each named after
// the sequence number of its first entry (00000000000000000042.seg), and
// a file "acked" holding the sequence number of the first entry not yet
// acknowledged. Each entry is one record:
//
//	length   uint32, big endian: the length of the body
//	crc      uint32: CRC-32C (Castagnoli) of the body
//	body     seq uint64 | appended unix nanoseconds int64 | flags uint8 |
//	         topic length uint16 | topic | payload
//
// A new segment starts when the current one passes SegmentBytes, and at
// every Open (appends never follow a record that a crash may have torn). A
// segment is deleted once all its entries are acknowledged. The "acked" file
// is rewritten atomically at most every quarter second and at Close, so a
// crash makes at most that much already delivered data be sent again:
// delivery is at least once, and the receiver's writes are idempotent.
//
// # Durability (Config.Sync)
//
// Every Append is one write(2) before it returns, so an entry survives the
// process being killed (SIGKILL, a crash, the OOM killer) as soon as Append
// returns. Surviving a power cut needs the data on the storage device:
//
//   - Sync == SyncAlways: each Append returns only after fdatasync(2);
//     concurrent appends share one sync (group commit).
//   - Sync > 0 (the default, one second, when 0): a background sync every Sync; a
//     power cut loses at most the entries of the last interval.
//   - Sync == SyncNever: the kernel writes back when it likes.
//
// # Bounded size (Config.MaxBytes, Config.Full)
//
// The segments may hold at most MaxBytes. When an append would pass it,
// DropOldest (the default) deletes the oldest segments, unsent entries and
// all, until it fits; DropNew refuses the new entry with ErrFull (the
// gateway's broker then refuses the publisher's message, which an MQTT
// client keeps and sends again). Either way the entries lost are counted in
// Stats.Dropped.
//
// # Corruption
//
// Open reads every segment and checks every record. A record that fails
// its check (a torn write after a power cut, a flipped bit) is moved, with
// the bytes up to the next valid record, into quarantine/ as a file named
// after the segment and offset, and counted; the good records around it
// are kept.
package spool

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"trackgate/internal/atomicfile"
)

// FullPolicy says what an append does when the queue is at its limit.
type FullPolicy int

// Full policies.
const (
	// DropOldest deletes the oldest segments to make room.
	DropOldest FullPolicy = iota
	// DropNew refuses the new entry with ErrFull.
	DropNew
)

// String returns the policy's flag value.
func (p FullPolicy) String() string {
	if p == DropNew {
		return "drop-new"
	}
	return "drop-oldest"
}

// ParseFullPolicy parses "drop-oldest" or "drop-new".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "drop-oldest":
		return DropOldest, nil
	case "drop-new":
		return DropNew, nil
	}
	return 0, fmt.Errorf("queue full policy %q: want drop-oldest or drop-new", s)
}

// Sync policies besides an interval.
const (
	// SyncAlways syncs before every Append returns.
	SyncAlways time.Duration = -1
	// SyncNever never syncs but at rotation and Close.
	SyncNever time.Duration = -2
)

// Config configures a Spool.
type Config struct {
	// Dir holds the segments; created 0700 when missing.
	Dir string
	// MaxBytes bounds the segments' total size; default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size past which a new segment starts; default
	// 8 MiB, and at most a quarter of MaxBytes.
	SegmentBytes int64
	// Full is the policy when an append would pass MaxBytes.
	Full FullPolicy
	// Sync is SyncAlways, SyncNever, or the interval of background syncs;
	// default one second.
	Sync time.Duration
	// Logger receives recovery and quarantine reports; default
	// slog.Default().
	Logger *slog.Logger
}

// ErrFull is returned by Append under DropNew when the queue is full.
var ErrFull = errors.New("spool: queue full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool: closed")

// MaxEntry is the largest topic plus payload an entry may hold.
const MaxEntry = 1 << 20

const (
	headerLen  = 8             // length, crc
	fixedBody  = 8 + 8 + 1 + 2 // seq, time, flags, topic length
	flagRetain = 1 << 0        // the message is retained
	ackedFile  = "acked"       // the first unacknowledged sequence number
	segSuffix  = ".seg"        // segment file name suffix
	ackEvery   = 250 * time.Millisecond
	sampleMask = 63 // every 64th entry's time is kept for OldestAge
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is one queued message.
type Entry struct {
	Seq      uint64
	Appended time.Time
	Topic    string
	Payload  []byte
	Retain   bool
}

// Stats are the queue's counters and backlog.
type Stats struct {
	Items       uint64    `json:"items"`    // entries not yet acknowledged
	Bytes       int64     `json:"bytes"`    // size of the segments on disk
	Oldest      time.Time `json:"oldest"`   // when the oldest unacknowledged entry was appended (zero when empty)
	Appended    uint64    `json:"appended"` // entries appended since Open
	Acked       uint64    `json:"acked"`    // entries acknowledged since Open
	Dropped     uint64    `json:"dropped"`  // entries lost to the size limit since Open
	DropBytes   uint64    `json:"dropped_bytes"`
	Quarantined uint64    `json:"quarantined"` // corrupt regions moved to quarantine/ since Open
	QuarBytes   uint64    `json:"quarantined_bytes"`
	Syncs       uint64    `json:"syncs"` // fdatasync calls since Open
}

// segment is one segment file.
type segment struct {
	first, last uint64 // sequence numbers; last < first when empty
	size        int64
	path        string
}

// sample is the append time of one entry.
type sample struct {
	seq uint64
	at  int64
}

// Spool is an on-disk queue. Its methods are safe for concurrent use.
type Spool struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond // signalled on append, drop and close
	segs     []*segment // oldest first; the last is being appended to
	f        *os.File   // the last segment, open for appending
	buf      []byte
	next     uint64              // the next entry's sequence number
	cursor   uint64              // every entry below it is acknowledged
	acked    map[uint64]struct{} // acknowledged entries at or above cursor
	total    int64               // bytes of all segments
	samples  []sample            // append times, increasing seq
	written  uint64              // bytes written since Open, all segments
	savedCur uint64              // the cursor the acked file holds
	gaps     [][2]uint64         // while recovering: sequence numbers missing, [from, to)
	skips    [][2]uint64         // sequence numbers missing at or above cursor, [from, to), in order
	closed   bool
	st       Stats

	syncMu sync.Mutex // serializes syncs
	synced uint64     // bytes of written that are synced

	stop chan struct{}
	done chan struct{}
}

// Open opens (or creates) the queue in cfg.Dir, checking every record and
// quarantining bad ones.
func Open(cfg Config) (*Spool, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 8 << 20
	}
	cfg.SegmentBytes = min(cfg.SegmentBytes, max(cfg.MaxBytes/4, 4<<10))
	if cfg.Sync == 0 {
		cfg.Sync = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{cfg: cfg, log: cfg.Logger, acked: map[uint64]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	if err := s.recover(); err != nil {
		return nil, err
	}
	if err := s.startSegment(); err != nil {
		return nil, err
	}
	go s.background()
	return s, nil
}

// recover loads the acked cursor and checks every segment.
func (s *Spool) recover() error {
	if b, err := os.ReadFile(filepath.Join(s.cfg.Dir, ackedFile)); err == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			s.log.Warn("uplink queue: acked cursor unreadable; every queued entry will be sent again", "err", err)
		} else {
			s.cursor = n
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	s.savedCur = s.cursor
	names, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*"+segSuffix))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	slices.Sort(names) // fixed-width names sort by first sequence number
	s.next = s.cursor
	for _, name := range names {
		seg, err := s.check(name)
		if err != nil {
			return err
		}
		if seg == nil {
			continue
		}
		if seg.last < s.cursor { // all acknowledged: a crash came before its deletion
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
		s.next = max(s.next, seg.last+1)
	}
	if len(s.segs) > 0 && s.segs[0].first > s.cursor {
		s.cursor = s.segs[0].first
	}
	// Entries missing between segments, or quarantined inside one, will
	// never be acknowledged: count them as done.
	for i := 1; i < len(s.segs); i++ {
		if s.segs[i].first > s.segs[i-1].last+1 {
			s.gaps = append(s.gaps, [2]uint64{s.segs[i-1].last + 1, s.segs[i].first})
		}
	}
	slices.SortFunc(s.gaps, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	for _, g := range s.gaps {
		if g[1] > s.cursor {
			s.skips = append(s.skips, [2]uint64{max(g[0], s.cursor), g[1]})
		}
	}
	s.gaps = nil
	s.advance()
	return nil
}

// check reads one segment, quarantining bad regions (and rewriting the
// segment without them); it returns nil for a segment left empty, which
// it deletes. It also collects time samples.
func (s *Spool) check(path string) (*segment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	seg := &segment{path: path, first: 1, last: 0}
	var good []byte // the records kept, when some are not
	bad := false
	var prev uint64
	havePrev := false
	for off := 0; off < len(data); {
		n, e, ok := parseRecord(data[off:])
		if ok && (!havePrev || e.Seq > prev) {
			if havePrev && e.Seq > prev+1 { // entries lost in between
				s.gaps = append(s.gaps, [2]uint64{prev + 1, e.Seq})
			}
			s.noteRecord(seg, e)
			prev, havePrev = e.Seq, true
			if bad {
				good = append(good, data[off:off+n]...)
			}
			off += n
			continue
		}
		// Find the next record that checks and follows in sequence.
		end := len(data)
		for p := off + 1; p < len(data); p++ {
			if _, e, ok := parseRecord(data[p:]); ok && (!havePrev || e.Seq > prev) {
				end = p
				break
			}
		}
		if !bad {
			good = append([]byte(nil), data[:off]...)
			bad = true
		}
		if err := s.quarantine(path, off, data[off:end]); err != nil {
			return nil, err
		}
		off = end
	}
	if bad {
		if len(good) > 0 {
			if err := atomicfile.Write(path, good); err != nil {
				return nil, fmt.Errorf("spool: rewrite %s: %w", path, err)
			}
		}
		data = good
	}
	if len(data) == 0 {
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		return nil, nil
	}
	seg.size = int64(len(data))
	return seg, nil
}

// noteRecord adds a checked record to seg's range and the time samples.
func (s *Spool) noteRecord(seg *segment, e Entry) {
	if seg.last < seg.first {
		seg.first = e.Seq
	}
	seg.last = e.Seq
	if e.Seq >= s.cursor && (e.Seq&sampleMask == 0 || len(s.samples) == 0) {
		s.samples = append(s.samples, sample{e.Seq, e.Appended.UnixNano()})
	}
}

// quarantine saves a bad region of a segment.
func (s *Spool) quarantine(path string, off int, b []byte) error {
	dir := filepath.Join(s.cfg.Dir, "quarantine")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%d.bad", strings.TrimSuffix(filepath.Base(path), segSuffix), off))
	if err := atomicfile.Write(name, b); err != nil {
		return fmt.Errorf("spool: quarantine: %w", err)
	}
	s.st.Quarantined++
	s.st.QuarBytes += uint64(len(b))
	s.log.Warn("uplink queue: corrupt entries quarantined", "segment", filepath.Base(path), "offset", off, "bytes", len(b), "file", name)
	return nil
}

// parseRecord parses the record at the start of b: its length, the entry
// (Payload aliasing b), and whether it checks.
func parseRecord(b []byte) (int, Entry, bool) {
	if len(b) < headerLen+fixedBody {
		return 0, Entry{}, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < fixedBody || n > fixedBody+MaxEntry || headerLen+n > len(b) {
		return 0, Entry{}, false
	}
	body := b[headerLen : headerLen+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return 0, Entry{}, false
	}
	e, ok := decodeBody(body)
	return headerLen + n, e, ok
}

// decodeBody decodes a record body whose checksum matched.
func decodeBody(body []byte) (Entry, bool) {
	tl := int(binary.BigEndian.Uint16(body[17:]))
	if fixedBody+tl > len(body) {
		return Entry{}, false
	}
	return Entry{
		Seq:      binary.BigEndian.Uint64(body),
		Appended: time.Unix(0, int64(binary.BigEndian.Uint64(body[8:]))),
		Retain:   body[16]&flagRetain != 0,
		Topic:    string(body[fixedBody : fixedBody+tl]),
		Payload:  body[fixedBody+tl:],
	}, true
}

// startSegment opens a new segment for appending; s.mu held or not yet
// shared.
func (s *Spool) startSegment() error {
	if s.f != nil {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("spool: sync: %w", err)
		}
		s.st.Syncs++
		if err := s.f.Close(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.f = nil
	}
	path := filepath.Join(s.cfg.Dir, fmt.Sprintf("%020d%s", s.next, segSuffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		f.Close()
		return err
	}
	s.f = f
	// A segment never written to (its first write failed) is the file
	// just truncated: drop it, or deleting it would delete the new one.
	if n := len(s.segs); n > 0 && s.segs[n-1].size == 0 {
		s.segs = s.segs[:n-1]
	}
	s.segs = append(s.segs, &segment{first: s.next, last: s.next - 1, path: path})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", dir, err)
	}
	return nil
}

// Append queues a message. It returns once the entry is written (and
// synced, under SyncAlways); ErrFull under DropNew when there is no room.
func (s *Spool) Append(topic string, payload []byte, retain bool) error {
	if len(topic) > 0xffff || len(topic)+len(payload) > MaxEntry {
		return fmt.Errorf("spool: entry of %d bytes is over the %d byte limit", len(topic)+len(payload), MaxEntry)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	n := int64(headerLen + fixedBody + len(topic) + len(payload))
	if s.total+n > s.cfg.MaxBytes {
		if err := s.makeRoom(n); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	cur := s.segs[len(s.segs)-1]
	if cur.size > 0 && cur.size+n > s.cfg.SegmentBytes {
		if err := s.startSegment(); err != nil {
			s.mu.Unlock()
			return err
		}
		cur = s.segs[len(s.segs)-1]
		s.synced = s.written
	}
	now := time.Now()
	seq := s.next
	b := slices.Grow(s.buf[:0], int(n))[:n]
	binary.BigEndian.PutUint32(b, uint32(n-headerLen))
	body := b[headerLen:]
	binary.BigEndian.PutUint64(body, seq)
	binary.BigEndian.PutUint64(body[8:], uint64(now.UnixNano()))
	body[16] = 0
	if retain {
		body[16] = flagRetain
	}
	binary.BigEndian.PutUint16(body[17:], uint16(len(topic)))
	copy(body[fixedBody:], topic)
	copy(body[fixedBody+len(topic):], payload)
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(body, castagnoli))
	s.buf = b
	if _, err := s.f.Write(b); err != nil {
		// A short write leaves a torn record, which the next Open
		// quarantines; later appends go to a new segment.
		err = fmt.Errorf("spool: append: %w", err)
		if serr := s.startSegment(); serr != nil {
			s.log.Error("uplink queue: no new segment after a failed write", "err", serr)
		}
		s.mu.Unlock()
		return err
	}
	s.next++
	cur.last, cur.size = seq, cur.size+n
	s.total += n
	s.written += uint64(n)
	if seq == s.cursor { // the queue was empty: the samples are of acked entries
		s.samples = s.samples[:0]
	}
	if seq&sampleMask == 0 || len(s.samples) == 0 {
		s.samples = append(s.samples, sample{seq, now.UnixNano()})
	}
	s.st.Appended++
	target := s.written
	s.cond.Broadcast()
	s.mu.Unlock()
	if s.cfg.Sync == SyncAlways {
		return s.syncTo(target)
	}
	return nil
}

// makeRoom applies the full policy for an entry of n bytes; s.mu held.
func (s *Spool) makeRoom(n int64) error {
	if s.cfg.Full == DropNew {
		s.st.Dropped++
		s.st.DropBytes += uint64(n)
		return ErrFull
	}
	for s.total+n > s.cfg.MaxBytes {
		if len(s.segs) == 1 { // only the current one: start another and drop it
			if s.segs[0].size == 0 {
				break // an entry larger than the limit: let it in
			}
			if err := s.startSegment(); err != nil {
				return err
			}
			s.synced = s.written
		}
		old := s.segs[0]
		lost := uint64(0)
		for q := max(old.first, s.cursor); q <= old.last && old.last >= old.first; q++ {
			if _, ok := s.acked[q]; ok {
				delete(s.acked, q)
			} else {
				lost++
			}
		}
		s.st.Dropped += lost
		s.st.DropBytes += uint64(old.size)
		if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: drop %s: %w", old.path, err)
		}
		s.total -= old.size
		s.segs = s.segs[1:]
		if old.last+1 > s.cursor {
			s.cursor = old.last + 1
			s.advance()
		}
		s.log.Warn("uplink queue full: oldest entries dropped", "entries", lost, "bytes", old.size, "limit", s.cfg.MaxBytes)
	}
	return nil
}

// syncTo returns once the first target bytes written are synced.
func (s *Spool) syncTo(target uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.synced >= target || s.f == nil {
		s.mu.Unlock()
		return nil
	}
	f, upto := s.f, s.written
	s.mu.Unlock()
	err := f.Sync() // fsync: os.File has no fdatasync; on an append-only file the difference is the size
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, os.ErrClosed) { // rotated meanwhile, and synced then
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	s.st.Syncs++
	s.synced = max(s.synced, upto)
	return nil
}

// Ack marks entries as delivered. Segments all of whose entries are
// delivered are deleted.
func (s *Spool) Ack(seqs ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		if q >= s.cursor && q < s.next {
			if _, dup := s.acked[q]; !dup {
				s.acked[q] = struct{}{}
				s.st.Acked++
			}
		}
	}
	s.advance()
}

// advance moves the cursor past acknowledged entries and deletes the
// segments behind it; s.mu held.
func (s *Spool) advance() {
	for {
		if _, ok := s.acked[s.cursor]; ok {
			delete(s.acked, s.cursor)
			s.cursor++
		} else if len(s.skips) > 0 && s.cursor >= s.skips[0][0] {
			s.cursor = max(s.cursor, s.skips[0][1])
			s.skips = s.skips[1:]
		} else {
			break
		}
	}
	for len(s.segs) > 1 && s.segs[0].last < s.cursor {
		old := s.segs[0]
		if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("uplink queue: delivered segment not deleted", "segment", old.path, "err", err)
			break
		}
		s.total -= old.size
		s.segs = s.segs[1:]
	}
	i := 0
	for i+1 < len(s.samples) && s.samples[i+1].seq <= s.cursor {
		i++
	}
	s.samples = s.samples[i:]
	s.cond.Broadcast()
}

// Stats returns the queue's state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Items = s.next - s.cursor - uint64(len(s.acked))
	for _, g := range s.skips {
		st.Items -= g[1] - max(g[0], s.cursor)
	}
	st.Bytes = s.total
	if st.Items > 0 && len(s.samples) > 0 {
		st.Oldest = time.Unix(0, s.samples[0].at)
	}
	return st
}

// background syncs every cfg.Sync and saves the acked cursor.
func (s *Spool) background() {
	defer close(s.done)
	every := ackEvery
	if s.cfg.Sync > 0 {
		every = min(every, s.cfg.Sync)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if s.cfg.Sync > 0 && now.Sub(lastSync) >= s.cfg.Sync {
				s.mu.Lock()
				target := s.written
				s.mu.Unlock()
				if err := s.syncTo(target); err != nil {
					s.log.Error("uplink queue: sync failed", "err", err)
				}
				lastSync = now
			}
			if err := s.saveCursor(); err != nil {
				s.log.Error("uplink queue: acked cursor not saved", "err", err)
			}
		}
	}
}

// saveCursor writes the acked cursor when it moved.
func (s *Spool) saveCursor() error {
	s.mu.Lock()
	c := s.cursor
	s.mu.Unlock()
	if c == s.savedCur {
		return nil
	}
	if err := atomicfile.Write(filepath.Join(s.cfg.Dir, ackedFile), []byte(strconv.FormatUint(c, 10)+"\n")); err != nil {
		return err
	}
	s.savedCur = c
	return nil
}

// Close syncs the queue, saves the acked cursor and closes it. Readers
// blocked in Next return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.syncMu.Lock()
	s.mu.Lock()
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	s.mu.Unlock()
	s.syncMu.Unlock()
	if serr := s.saveCursor(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// Reader reads the queue's entries in order, from the first one not yet
// acknowledged. Create one with NewReader; it is not safe for concurrent
// use, and entries it returns are valid until the next call.
type Reader struct {
	s    *Spool
	next uint64 // the sequence number wanted next
	seg  *segment
	f    *os.File
	br   *bufio.Reader
	off  int64 // offset in seg of the next record
	src  gated
	buf  []byte
}

// gated reads a segment file up to lim, the bytes known to be written
// whole, never into a record being appended.
type gated struct {
	f        *os.File
	pos, lim int64
}

func (g *gated) Read(p []byte) (int, error) {
	if g.pos >= g.lim {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.lim-g.pos)]
	n, err := g.f.ReadAt(p, g.pos)
	g.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// NewReader returns a reader positioned at the first unacknowledged entry.
func (s *Spool) NewReader() *Reader {
	r := &Reader{s: s}
	r.Rewind()
	return r
}

// Rewind moves the reader back to the first unacknowledged entry (after a
// lost connection, to send again what was not acknowledged).
func (r *Reader) Rewind() {
	r.s.mu.Lock()
	r.next = r.s.cursor
	r.s.mu.Unlock()
	r.closeFile()
}

// Close releases the reader's file.
func (r *Reader) Close() { r.closeFile() }

func (r *Reader) closeFile() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.seg, r.br, r.off = nil, nil, nil, 0
}

// Next returns the next entry not acknowledged, waiting for one until ctx
// ends. Entries acknowledged out of order are skipped; entries dropped to
// the size limit are skipped over.
func (r *Reader) Next(ctx context.Context) (Entry, error) {
	for {
		e, err := r.next1(ctx)
		if err != nil {
			return Entry{}, err
		}
		r.s.mu.Lock()
		_, done := r.s.acked[e.Seq]
		done = done || e.Seq < r.s.cursor
		r.s.mu.Unlock()
		if !done {
			return e, nil
		}
	}
}

// next1 returns the next record at or after r.next.
func (r *Reader) next1(ctx context.Context) (Entry, error) {
	for {
		s := r.s
		s.mu.Lock()
		for !s.closed && r.next >= s.next && ctx.Err() == nil {
			stop := context.AfterFunc(ctx, func() {
				s.mu.Lock()
				s.cond.Broadcast()
				s.mu.Unlock()
			})
			s.cond.Wait()
			stop()
		}
		if s.closed {
			s.mu.Unlock()
			return Entry{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return Entry{}, err
		}
		if r.next < s.cursor {
			r.next = s.cursor
		}
		// The segment holding r.next, and how much of it is written.
		var seg *segment
		for _, g := range s.segs {
			if g.last >= r.next && g.last >= g.first {
				seg = g
				break
			}
		}
		if seg == nil { // a gap (entries lost to the size limit): skip it
			r.next = s.next
			s.mu.Unlock()
			continue
		}
		limit := seg.size
		s.mu.Unlock()
		if r.seg != seg {
			r.closeFile()
			f, err := os.Open(seg.path)
			if errors.Is(err, os.ErrNotExist) { // dropped meanwhile
				continue
			}
			if err != nil {
				return Entry{}, fmt.Errorf("spool: %w", err)
			}
			r.f, r.seg, r.off = f, seg, 0
			r.src = gated{f: f}
			r.br = bufio.NewReaderSize(&r.src, 64<<10)
		}
		r.src.lim = limit
		if r.off >= limit {
			// Read all of this segment: the entry wanted is in a later one.
			r.closeFile()
			r.s.mu.Lock()
			if r.next <= seg.last {
				r.next = seg.last + 1
			}
			r.s.mu.Unlock()
			continue
		}
		e, err := r.read(limit)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return Entry{}, err
		}
		if e.Seq < r.next {
			continue
		}
		r.next = e.Seq + 1
		return e, nil
	}
}

// read reads the record at r.off of r.seg, which holds limit bytes.
func (r *Reader) read(limit int64) (Entry, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return Entry{}, r.broken(fmt.Errorf("read header: %w", err))
	}
	n := int64(binary.BigEndian.Uint32(h[:]))
	if n < fixedBody || n > fixedBody+MaxEntry || r.off+headerLen+n > limit {
		return Entry{}, r.broken(fmt.Errorf("record length %d at offset %d", n, r.off))
	}
	r.buf = slices.Grow(r.buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return Entry{}, r.broken(fmt.Errorf("read record: %w", err))
	}
	if crc32.Checksum(r.buf, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return Entry{}, r.broken(fmt.Errorf("checksum mismatch at offset %d", r.off))
	}
	e, ok := decodeBody(r.buf)
	if !ok {
		return Entry{}, r.broken(fmt.Errorf("bad topic length at offset %d", r.off))
	}
	r.off += headerLen + n
	return e, nil
}

// errSkip tells next1 that the reader skipped a damaged segment's rest.
var errSkip = errors.New("spool: skipped")

// broken reports a segment that went bad after Open checked it (the disk
// changed under the gateway): the rest of it is skipped, and quarantined at
// the next Open.
func (r *Reader) broken(err error) error {
	seg := r.seg
	r.s.log.Error("uplink queue: segment damaged while in use; skipping the rest of it", "segment", seg.path, "err", err)
	r.closeFile()
	r.s.mu.Lock()
	if r.next <= seg.last {
		r.next = seg.last + 1
	}
	r.s.mu.Unlock()
	return errSkip
}

// Policy returns the queue's full policy.
func (s *Spool) Policy() FullPolicy { return s.cfg.Full }
