package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// sessionStore is the broker's persistence: Mochi's Pebble store keeps the
// sessions, subscriptions and retained messages, and an inflightLog the
// QoS 1 and 2 messages in flight, which come and go with every message and
// which the Pebble store would write as JSON, update and delete one key at
// a time.
//
// Messages in flight in the Pebble store of an earlier version are loaded
// with the others, and deleted from it once done.
type sessionStore struct {
	*pebble.Hook
	dir  string // of the inflight log
	sync bool   // sync every write of the inflight log to disk
	log  *slog.Logger

	inflight *inflightLog

	hasLegacy atomic.Bool
	legacyMu  sync.Mutex
	legacy    map[inflightKey]bool // in flight in the Pebble store
}

// ID names the hook.
func (s *sessionStore) ID() string { return "session-store" }

// Init opens the Pebble store (config is its *pebble.Options) and the
// inflight log.
func (s *sessionStore) Init(config any) error {
	if err := s.Hook.Init(config); err != nil {
		return err
	}
	l, err := openInflightLog(s.dir, s.sync, s.log)
	if err != nil {
		s.Hook.Stop()
		return err
	}
	s.inflight = l
	return nil
}

// Stop closes the inflight log and the Pebble store.
func (s *sessionStore) Stop() error {
	return errors.Join(s.inflight.Close(), s.Hook.Stop())
}

// OnQosPublish records a message in flight. A QoS 1 PUBACK the broker
// owes a publisher is not: it is sent and done at once, and a publisher
// that misses it sends its message again.
func (s *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type == packets.Puback {
		return
	}
	s.inflight.put(cl.ID, pk, sent)
}

// OnQosComplete forgets a message delivered.
func (s *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { s.done(cl, pk) }

// OnQosDropped forgets a message given up.
func (s *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { s.done(cl, pk) }

func (s *sessionStore) done(cl *mqtt.Client, pk packets.Packet) {
	k := inflightKey{cl.ID, pk.PacketID}
	s.inflight.del(k)
	if !s.hasLegacy.Load() {
		return
	}
	s.legacyMu.Lock()
	old := s.legacy[k]
	delete(s.legacy, k)
	s.hasLegacy.Store(len(s.legacy) > 0)
	s.legacyMu.Unlock()
	if old {
		s.Hook.OnQosComplete(cl, pk)
	}
}

// OnClientExpired forgets an expired session and its messages in flight.
func (s *sessionStore) OnClientExpired(cl *mqtt.Client) {
	s.Hook.OnClientExpired(cl)
	s.inflight.dropClient(cl.ID)
}

// StoredInflightMessages returns the messages in flight when the broker
// last stopped.
func (s *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	old, err := s.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		s.legacy = make(map[inflightKey]bool, len(old))
		for _, m := range old {
			s.legacy[inflightKey{m.Client, m.PacketID}] = true
		}
		s.hasLegacy.Store(true)
		s.log.Info("loaded messages in flight from the store of an earlier version", "messages", len(old))
	}
	return append(old, s.inflight.messages()...), nil
}

// inflightKey names a message in flight: its client and packet id.
type inflightKey struct {
	client string
	id     uint16
}

// inflightEntry is a message in flight.
type inflightEntry struct {
	pk   packets.Packet
	sent int64
}

// An inflightLog keeps the messages in flight in an append-only file, log,
// in its directory. Each put or delete appends a record:
//
//	length  uint32, big endian: the length of the body
//	crc     uint32: CRC-32C (Castagnoli) of the body
//	body    op uint8 (1 put, 2 delete) | client id (uvarint length, bytes) |
//	        packet id uint16 | for a put, the message (see appendMessage)
//
// Records are written by one goroutine, as soon as it is free, many at a
// time, so a record reaches the kernel (and survives the process being
// killed) microseconds after it was made. With sync, each write is also
// synced to disk, and a put returns only once it is: it survives a power
// cut.
//
// The file is rewritten with only the messages still in flight when it
// passes maxInflightLog, and at every open, where a record that does not
// check (a write torn by a power cut) ends what is read.
type inflightLog struct {
	dir    string
	sync   bool
	limit  int64 // size at which the file is rewritten
	log    *slog.Logger
	logErr rate.Sometimes

	mu       sync.Mutex
	cond     *sync.Cond                    // signalled when a write ends
	live     map[inflightKey]inflightEntry // what the records say is in flight
	buf      []byte                        // records not yet written
	appended uint64                        // records appended
	written  uint64                        // records written (and synced, with sync)
	size     int64                         // bytes in the file
	rewrite  bool                          // the next write rewrites the file
	closing  bool
	kick     chan struct{} // wakes the writer
	done     chan struct{} // closed when the writer has stopped
	f        *os.File
}

const (
	inflightFile   = "log"
	maxInflightLog = 64 << 20
	opPut          = 1
	opDel          = 2
	recordHeader   = 8
	maxRecord      = 16 << 20 // a larger length is corruption: packets are at most a few MiB
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openInflightLog opens (creating it if need be) the log in dir, reads
// what is in flight, and rewrites the file with that alone.
func openInflightLog(dir string, syncWrites bool, log *slog.Logger) (*inflightLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("inflight log: %w", err)
	}
	l := &inflightLog{dir: dir, sync: syncWrites, limit: maxInflightLog, log: log, logErr: rate.Sometimes{First: 3, Interval: 10 * time.Second},
		live: map[inflightKey]inflightEntry{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	path := filepath.Join(dir, inflightFile)
	f, err := os.Open(path)
	switch {
	case err == nil:
		// Read record by record: the file may be tens of MB of messages
		// long delivered, and only those still in flight are kept.
		n, err := replayFrom(bufio.NewReaderSize(f, 64<<10), l.live)
		f.Close()
		if err != nil {
			log.Warn("inflight log: ends in a record that does not check (a write torn by a crash); what follows it is dropped",
				"path", path, "offset", n, "err", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("inflight log: %w", err)
	}
	if err := l.writeSnapshot(l.snapshot()); err != nil {
		return nil, err
	}
	go l.writer()
	return l, nil
}

// replayFrom applies the records read from r to live. It returns how many
// bytes of good records it read, and an error if a record does not check
// or cannot be read whole.
func replayFrom(r io.Reader, live map[inflightKey]inflightEntry) (int, error) {
	var buf []byte
	off := 0
	for {
		var h [recordHeader]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if err == io.EOF {
				return off, nil
			}
			return off, errors.New("short record header")
		}
		n := binary.BigEndian.Uint32(h[:])
		if n > maxRecord {
			return off, fmt.Errorf("record length %d", n)
		}
		buf = append(append(buf[:0], h[:]...), make([]byte, n)...)
		if _, err := io.ReadFull(r, buf[recordHeader:]); err != nil {
			return off, fmt.Errorf("record length %d past the end", n)
		}
		m, err := applyRecord(buf, live)
		if err != nil {
			return off, err
		}
		off += m
	}
}

// applyRecord applies the record at the start of b to live and returns
// its length.
func applyRecord(b []byte, live map[inflightKey]inflightEntry) (int, error) {
	if len(b) < recordHeader {
		return 0, errors.New("short record header")
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxRecord || int(n) > len(b)-recordHeader {
		return 0, fmt.Errorf("record length %d past the end", n)
	}
	body := b[recordHeader : recordHeader+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return 0, errors.New("checksum mismatch")
	}
	r := reader{b: body}
	op := r.byte()
	k := inflightKey{client: r.string(), id: r.uint16()}
	switch op {
	case opPut:
		e := r.message()
		if r.err != nil {
			return 0, r.err
		}
		e.pk.PacketID = k.id
		live[k] = e
	case opDel:
		delete(live, k)
	default:
		return 0, fmt.Errorf("unknown record type %d", op)
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("data after the record")
	}
	return recordHeader + int(n), r.err
}

// appendRecord appends a record to dst; e is nil for a delete.
func appendRecord(dst []byte, k inflightKey, e *inflightEntry) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeader)...)
	if e != nil {
		dst = append(dst, opPut)
	} else {
		dst = append(dst, opDel)
	}
	dst = appendString(dst, k.client)
	dst = binary.BigEndian.AppendUint16(dst, k.id)
	if e != nil {
		dst = appendMessage(dst, e)
	}
	body := dst[start+recordHeader:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// put records a message in flight to or from client.
func (l *inflightLog) put(client string, pk packets.Packet, sent int64) {
	k, e := inflightKey{client, pk.PacketID}, inflightEntry{pk: pk, sent: sent}
	l.mu.Lock()
	l.live[k] = e
	l.buf = appendRecord(l.buf, k, &e)
	l.appended++
	seq := l.appended
	l.mu.Unlock()
	l.wake()
	if l.sync {
		l.wait(seq)
	}
}

// del records that a message is no longer in flight. It does not wait for
// the write: a delete lost to a crash only makes the message be sent again.
func (l *inflightLog) del(k inflightKey) {
	l.mu.Lock()
	if _, ok := l.live[k]; !ok {
		l.mu.Unlock()
		return
	}
	delete(l.live, k)
	l.buf = appendRecord(l.buf, k, nil)
	l.appended++
	l.mu.Unlock()
	l.wake()
}

// dropClient deletes every message in flight to or from client.
func (l *inflightLog) dropClient(client string) {
	l.mu.Lock()
	for k := range l.live {
		if k.client == client {
			delete(l.live, k)
			l.buf = appendRecord(l.buf, k, nil)
			l.appended++
		}
	}
	l.mu.Unlock()
	l.wake()
}

// messages returns what is in flight, for Mochi to restore.
func (l *inflightLog) messages() []storage.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]storage.Message, 0, len(l.live))
	for k, e := range l.live {
		out = append(out, e.storage(k.client))
	}
	return out
}

func (l *inflightLog) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// wait returns once record seq is written.
func (l *inflightLog) wait(seq uint64) {
	l.mu.Lock()
	for l.written < seq && !l.closing {
		l.cond.Wait()
	}
	l.mu.Unlock()
}

// writer writes what was appended, until Close.
func (l *inflightLog) writer() {
	defer close(l.done)
	var spare []byte
	for {
		<-l.kick
		l.mu.Lock()
		closing := l.closing
		buf, upto := l.buf, l.appended
		l.buf = spare[:0]
		rewrite := l.rewrite || l.size+int64(len(buf)) > l.limit
		var snap []byte
		if rewrite {
			l.rewrite = false
			snap = l.snapshot()
		}
		l.mu.Unlock()

		var err error
		if rewrite {
			err = l.writeSnapshot(snap)
		} else if len(buf) > 0 {
			err = l.write(buf)
		}
		spare = buf
		l.mu.Lock()
		if err != nil {
			l.rewrite = true // the file may lack records: rewrite it whole next time
			l.logErr.Do(func() {
				l.log.Error("inflight log: write failed; messages in flight may not survive a restart", "err", err)
			})
		}
		l.written = upto
		l.cond.Broadcast()
		l.mu.Unlock()
		if closing {
			return
		}
	}
}

// write appends buf to the file; only the writer calls it.
func (l *inflightLog) write(buf []byte) error {
	n, err := l.f.Write(buf)
	l.size += int64(n)
	if err == nil && l.sync {
		err = unix.Fdatasync(int(l.f.Fd()))
	}
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	return nil
}

// snapshot returns a put record of every message in flight; l.mu held.
func (l *inflightLog) snapshot() []byte {
	n := 0
	for k, e := range l.live {
		n += recordHeader + 32 + len(k.client) + len(e.pk.TopicName) + len(e.pk.Origin) + len(e.pk.Payload)
	}
	b := make([]byte, 0, n+n/8)
	for k, e := range l.live {
		b = appendRecord(b, k, &e)
	}
	return b
}

// writeSnapshot replaces the file with snap, through a temporary file
// renamed over it, and keeps the new file open for appending.
func (l *inflightLog) writeSnapshot(snap []byte) error {
	path := filepath.Join(l.dir, inflightFile)
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("inflight log: %w", err)
	}
	_, err = f.Write(snap)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("inflight log: rewrite %s: %w", path, err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.size = f, int64(len(snap))
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close writes what is left and closes the file.
func (l *inflightLog) Close() error {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.wake()
	<-l.done
	if l.f == nil {
		return nil
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("inflight log: %w", err)
	}
	return nil
}

// Message encoding: the fields Mochi restores a message in flight from
// (storage.Message).
//
//	type uint8 | qos uint8 | flags uint8 (1 dup, 2 retain, 4 payload format set) |
//	created varint | sent varint | topic | origin | payload |
//	payload format uint8 | message expiry uvarint | content type |
//	response topic | correlation data | subscription ids (uvarint count, uvarints) |
//	topic alias uvarint | user properties (uvarint count, key, value)
//
// where every string and byte slice is a uvarint length and the bytes.
const (
	flagDup = 1 << iota
	flagRetain
	flagPayloadFormat
)

func appendMessage(dst []byte, e *inflightEntry) []byte {
	pk := &e.pk
	var flags byte
	if pk.FixedHeader.Dup {
		flags |= flagDup
	}
	if pk.FixedHeader.Retain {
		flags |= flagRetain
	}
	if pk.Properties.PayloadFormatFlag {
		flags |= flagPayloadFormat
	}
	dst = append(dst, pk.FixedHeader.Type, pk.FixedHeader.Qos, flags)
	dst = binary.AppendVarint(dst, pk.Created)
	dst = binary.AppendVarint(dst, e.sent)
	dst = appendString(dst, pk.TopicName)
	dst = appendString(dst, pk.Origin)
	dst = appendBytes(dst, pk.Payload)
	p := &pk.Properties
	dst = append(dst, p.PayloadFormat)
	dst = binary.AppendUvarint(dst, uint64(p.MessageExpiryInterval))
	dst = appendString(dst, p.ContentType)
	dst = appendString(dst, p.ResponseTopic)
	dst = appendBytes(dst, p.CorrelationData)
	dst = binary.AppendUvarint(dst, uint64(len(p.SubscriptionIdentifier)))
	for _, id := range p.SubscriptionIdentifier {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	dst = binary.AppendUvarint(dst, uint64(p.TopicAlias))
	dst = binary.AppendUvarint(dst, uint64(len(p.User)))
	for _, u := range p.User {
		dst = appendString(dst, u.Key)
		dst = appendString(dst, u.Val)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// storage returns the message as Mochi restores it.
func (e *inflightEntry) storage(client string) storage.Message {
	pk := &e.pk
	p := &pk.Properties
	return storage.Message{
		T: storage.InflightKey, Client: client, Origin: pk.Origin, PacketID: pk.PacketID,
		FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Sent: e.sent, Created: pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat: p.PayloadFormat, PayloadFormatFlag: p.PayloadFormatFlag,
			MessageExpiryInterval: p.MessageExpiryInterval, ContentType: p.ContentType,
			ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData,
			SubscriptionIdentifier: p.SubscriptionIdentifier, TopicAlias: p.TopicAlias, User: p.User,
		},
	}
}

// reader decodes a record body; the first error sticks and zero values
// follow it.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = errors.New("bad " + what)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail("record")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uint16() uint16 {
	if len(r.b) < 2 {
		r.fail("packet id")
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail("number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint(1 << 32)
	if n > uint64(len(r.b)) {
		r.fail("length")
	}
	if r.err != nil {
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) string() string { return string(r.bytes()) }

// message decodes what appendMessage wrote.
func (r *reader) message() inflightEntry {
	var e inflightEntry
	pk := &e.pk
	pk.FixedHeader.Type, pk.FixedHeader.Qos = r.byte(), r.byte()
	flags := r.byte()
	pk.FixedHeader.Dup, pk.FixedHeader.Retain = flags&flagDup != 0, flags&flagRetain != 0
	pk.Created, e.sent = r.varint(), r.varint()
	pk.TopicName, pk.Origin = r.string(), r.string()
	if b := r.bytes(); len(b) > 0 {
		pk.Payload = append([]byte(nil), b...)
	}
	p := &pk.Properties
	p.PayloadFormatFlag = flags&flagPayloadFormat != 0
	p.PayloadFormat = r.byte()
	p.MessageExpiryInterval = uint32(r.uvarint(1<<32 - 1))
	p.ContentType, p.ResponseTopic = r.string(), r.string()
	if b := r.bytes(); len(b) > 0 {
		p.CorrelationData = append([]byte(nil), b...)
	}
	if n := r.uvarint(uint64(len(r.b))); n > 0 {
		p.SubscriptionIdentifier = make([]int, n)
		for i := range p.SubscriptionIdentifier {
			p.SubscriptionIdentifier[i] = int(r.uvarint(1<<28 - 1))
		}
	}
	p.TopicAlias = uint16(r.uvarint(1<<16 - 1))
	if n := r.uvarint(uint64(len(r.b)) / 2); n > 0 {
		p.User = make([]packets.UserProperty, n)
		for i := range p.User {
			p.User[i] = packets.UserProperty{Key: r.string(), Val: r.string()}
		}
	}
	if pk.FixedHeader.Qos > 2 || pk.FixedHeader.Type == 0 || pk.FixedHeader.Type > packets.Auth {
		r.fail("packet type")
	}
	return e
}
