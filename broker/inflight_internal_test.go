package broker

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"
)

// inflightPacket is a QoS 1 PUBLISH in flight, with every field the log
// keeps set when full.
func inflightPacket(id uint16, full bool) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		PacketID:    id, TopicName: "devices/van-1/positions", Origin: "van-1", Created: 1763700000,
		Payload: []byte(`{"time":"2026-11-21T10:00:00Z","lat":52.37,"lon":4.89}`),
	}
	if full {
		pk.FixedHeader.Dup, pk.FixedHeader.Retain, pk.FixedHeader.Qos = true, true, 2
		pk.Properties = packets.Properties{
			PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: 3600,
			ContentType: "application/json", ResponseTopic: "devices/van-1/replies",
			CorrelationData: []byte{1, 2, 3}, SubscriptionIdentifier: []int{7, 268435455}, TopicAlias: 12,
			User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "", Val: "é"}},
		}
	}
	return pk
}

func openTestLog(t *testing.T, dir string) *inflightLog {
	t.Helper()
	l, err := openInflightLog(dir, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// byKey sorts restored messages for comparison.
func byKey(ms []storage.Message) []storage.Message {
	slices.SortFunc(ms, func(a, b storage.Message) int {
		if c := strings.Compare(a.Client, b.Client); c != 0 {
			return c
		}
		return int(a.PacketID) - int(b.PacketID)
	})
	return ms
}

// TestInflightLogReopen: what is in flight when the log closes is what it
// restores, through puts, deletes, a client dropped and a rewrite.
func TestInflightLogReopen(t *testing.T) {
	tests := []struct {
		name  string
		limit int64 // rewrite threshold (0: the default)
		sync  bool
		ops   func(l *inflightLog)
		want  []storage.Message
	}{
		{name: "empty", ops: func(*inflightLog) {}},
		{
			name: "puts and deletes",
			ops: func(l *inflightLog) {
				l.put("svc:cloud/ingest", inflightPacket(1, false), 100)
				l.put("svc:cloud/ingest", inflightPacket(2, true), 101)
				l.put("svc:cloud/ingest", inflightPacket(3, false), 102)
				l.del(inflightKey{"svc:cloud/ingest", 1})
				l.del(inflightKey{"nobody", 9})
			},
			want: []storage.Message{
				(&inflightEntry{pk: inflightPacket(2, true), sent: 101}).storage("svc:cloud/ingest"),
				(&inflightEntry{pk: inflightPacket(3, false), sent: 102}).storage("svc:cloud/ingest"),
			},
		},
		{
			name: "a packet id used again",
			sync: true,
			ops: func(l *inflightLog) {
				l.put("a", inflightPacket(5, false), 1)
				l.del(inflightKey{"a", 5})
				l.put("a", inflightPacket(5, true), 2)
			},
			want: []storage.Message{(&inflightEntry{pk: inflightPacket(5, true), sent: 2}).storage("a")},
		},
		{
			name: "a client dropped",
			ops: func(l *inflightLog) {
				l.put("a", inflightPacket(1, false), 1)
				l.put("b", inflightPacket(1, false), 1)
				l.put("a", inflightPacket(2, false), 1)
				l.dropClient("a")
			},
			want: []storage.Message{(&inflightEntry{pk: inflightPacket(1, false), sent: 1}).storage("b")},
		},
		{
			name:  "rewritten while running",
			limit: 2048,
			ops: func(l *inflightLog) {
				for i := range uint16(200) {
					l.put("a", inflightPacket(i, i%2 == 0), int64(i))
					if i > 0 {
						l.del(inflightKey{"a", i - 1})
					}
				}
			},
			want: []storage.Message{(&inflightEntry{pk: inflightPacket(199, false), sent: 199}).storage("a")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTestLog(t, dir)
			l.sync = tt.sync
			if tt.limit > 0 {
				l.limit = tt.limit
			}
			tt.ops(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.limit > 0 {
				if fi, err := os.Stat(filepath.Join(dir, inflightFile)); err != nil || fi.Size() > 4*tt.limit {
					t.Fatalf("log not rewritten: %v, %v", fi.Size(), err)
				}
			}
			l = openTestLog(t, dir)
			defer l.Close()
			got := byKey(l.messages())
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, byKey(tt.want))) {
				t.Fatalf("restored\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, m := range got { // Mochi restores them with this
				if pk := m.ToPacket(); pk.PacketID != m.PacketID || !bytes.Equal(pk.Payload, m.Payload) {
					t.Fatalf("ToPacket: %+v", pk)
				}
			}
		})
	}
}

// TestInflightLogTornTail: a record cut short by a crash, or with a flipped
// bit, ends what is read; the records before it are restored, and the log
// is usable after.
func TestInflightLogTornTail(t *testing.T) {
	for _, damage := range []string{"cut", "flip"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			l := openTestLog(t, dir)
			l.put("a", inflightPacket(1, false), 1)
			l.put("a", inflightPacket(2, false), 1)
			l.Close()
			path := filepath.Join(dir, inflightFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if damage == "cut" {
				b = b[:len(b)-5]
			} else {
				b[len(b)-3] ^= 0x40
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			l = openTestLog(t, dir)
			if got := l.messages(); len(got) != 1 || got[0].PacketID != 1 {
				t.Fatalf("restored %+v, want packet 1 alone", got)
			}
			l.put("a", inflightPacket(3, false), 1)
			l.Close()
			l = openTestLog(t, dir)
			defer l.Close()
			if got := byKey(l.messages()); len(got) != 2 || got[1].PacketID != 3 {
				t.Fatalf("after more writes, restored %+v", got)
			}
		})
	}
}

// TestSessionStoreLegacyInflight: messages in flight in the Pebble store
// of an earlier version are restored, and deleted from it once done.
func TestSessionStoreLegacyInflight(t *testing.T) {
	data := t.TempDir()
	open := func() *sessionStore {
		s := &sessionStore{Hook: new(pebble.Hook), dir: filepath.Join(data, "mqtt-inflight"), log: slog.New(slog.DiscardHandler)}
		s.Hook.SetOpts(slog.New(slog.DiscardHandler), nil)
		if err := s.Init(&pebble.Options{Path: filepath.Join(data, "mqtt"), Options: storeOptions()}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cl := &mqtt.Client{ID: "svc:cloud/ingest"}
	s := open()
	s.Hook.OnQosPublish(cl, inflightPacket(1, false), 5, 0) // as the earlier version stored it
	s.OnQosPublish(cl, inflightPacket(2, false), 6, 0)
	s.OnQosPublish(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 3}, 6, 0)
	s.Stop()

	s = open()
	got, err := s.StoredInflightMessages()
	if err != nil {
		t.Fatal(err)
	}
	if ids := packetIDs(got); !slices.Equal(ids, []uint16{1, 2}) {
		t.Fatalf("restored packets %v, want 1 (earlier store) and 2 (log); a PUBACK owed is not kept", ids)
	}
	s.OnQosComplete(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 1})
	s.Stop()

	s = open()
	defer s.Stop()
	got, err = s.StoredInflightMessages()
	if err != nil {
		t.Fatal(err)
	}
	if ids := packetIDs(got); !slices.Equal(ids, []uint16{2}) {
		t.Fatalf("restored packets %v after 1 was acknowledged, want 2", ids)
	}
}

func packetIDs(ms []storage.Message) []uint16 {
	var ids []uint16
	for _, m := range byKey(ms) {
		ids = append(ids, m.PacketID)
	}
	return ids
}

// FuzzInflightReplay: any file content replays without a panic, and a
// record that replays, encoded again, replays to the same message.
func FuzzInflightReplay(f *testing.F) {
	for _, full := range []bool{false, true} {
		e := inflightEntry{pk: inflightPacket(4, full), sent: 9}
		f.Add(appendRecord(nil, inflightKey{"c", 4}, &e))
	}
	f.Add(appendRecord(nil, inflightKey{"c", 4}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		live := map[inflightKey]inflightEntry{}
		n, err := replayFrom(bytes.NewReader(data), live)
		if n < 0 || n > len(data) || (err == nil && n != len(data)) {
			t.Fatalf("replay read %d of %d bytes, err %v", n, len(data), err)
		}
		// The same bytes as a record body with a good checksum, so that
		// the fuzzer explores the decoder behind it.
		if len(data) >= recordHeader {
			body := data[recordHeader:]
			framed := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
			framed = binary.BigEndian.AppendUint32(framed, crc32.Checksum(body, castagnoli))
			replayFrom(bytes.NewReader(append(framed, body...)), live)
		}
		for k, e := range live {
			again := map[inflightKey]inflightEntry{}
			if _, err := applyRecord(appendRecord(nil, k, &e), again); err != nil {
				t.Fatalf("re-encoded record: %v", err)
			}
			if !reflect.DeepEqual(again[k], e) {
				t.Fatalf("re-encoded\n%+v\nread\n%+v", again[k], e)
			}
		}
	})
}
