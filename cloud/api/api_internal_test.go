package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"trackgate/cloud/tracks"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, tr := range []cursor{
		{ID: tracks.NewID(), At: time.Date(2026, 11, 21, 10, 0, 0, 123, time.UTC)},
		{ID: tracks.NewID(), At: time.Unix(0, 0).UTC()},
		{ID: tracks.NewID(), At: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		c, err := decodeCursor(encodeCursor(tr))
		if err != nil || c.ID != tr.ID || !c.At.Equal(tr.At) {
			t.Errorf("%v %s: got %+v, %v", tr.At, tr.ID, c, err)
		}
	}
	for _, bad := range []string{"", "!!", "MTIz", "MTIzLg", "eC5hYmNkZWZnaGlqa2xtbm9w", strings.Repeat("QUFB", 40)} {
		if c, err := decodeCursor(bad); err == nil {
			t.Errorf("decodeCursor(%q) = %+v, want an error", bad, c)
		}
	}
}

// FuzzCursor: any string decodes to a valid cursor or an error, never a
// panic, and a valid cursor encodes back to an equivalent one.
func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(cursor{ID: "abcdefghijklmnop", At: time.Unix(1700000000, 5)}))
	f.Add("MTIzLmFiY2RlZmdoaWprbG1ub3A")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if !tracks.ValidID(c.ID) {
			t.Fatalf("cursor %q gave id %q", s, c.ID)
		}
		again, err := decodeCursor(encodeCursor(*c))
		if err != nil || *again != *c {
			t.Fatalf("cursor %q: %+v, re-encoded %+v %v", s, c, again, err)
		}
	})
}

// TestWriteEvent: an event is one SSE block whose data line holds the
// compacted JSON (no newline inside), or null when the data is not JSON.
func TestWriteEvent(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		data string
		want string
	}{
		{`{"lat": 52.1,` + "\n" + ` "lon": 4}`, `{"device":"van","time":"2026-11-21T10:00:00Z","position":{"lat":52.1,"lon":4}}`},
		{`not json`, `{"device":"van","time":"2026-11-21T10:00:00Z","position":null}`},
	} {
		var buf bytes.Buffer
		writeEvent(&buf, tracks.Event{Device: "van", Kind: "position", Time: at, Data: json.RawMessage(tc.data)})
		want := "event: position\ndata: " + tc.want + "\n\n"
		if buf.String() != want {
			t.Errorf("got %q, want %q", buf.String(), want)
		}
	}
}
