package influx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

const allFields = position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse |
	position.FieldHDOP | position.FieldSats | position.FieldFix | position.FieldAcc | position.FieldBatt |
	position.FieldPDOP | position.FieldVDOP | position.FieldGeoid

// ns is the UTC time n nanoseconds after the epoch.
func ns(n int64) time.Time { return time.Unix(0, n).UTC() }

// t0 is a time past 2^53 nanoseconds, so that a float64 would lose it.
var t0 = ns(1_700_000_000_123_456_789)

func newTestClient(t testing.TB, url, bucket, token string) *Client {
	t.Helper()
	c, err := New(Config{URL: url, Bucket: bucket, Token: token, Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// writePositions stores ps as device's, in batches.
func writePositions(t testing.TB, c *Client, device string, ps ...position.Position) {
	t.Helper()
	var buf []byte
	for i := range ps {
		buf = ps[i].AppendLineProtocol(buf, device)
		if i%5000 == 4999 || i == len(ps)-1 {
			if err := c.Write(context.Background(), buf); err != nil {
				t.Fatal(err)
			}
			buf = buf[:0]
		}
	}
}

// writeLines stores raw line protocol.
func writeLines(t testing.TB, c *Client, lines string) {
	t.Helper()
	if err := c.Write(context.Background(), []byte(lines)); err != nil {
		t.Fatal(err)
	}
}

// collect returns copies of the positions Points gives.
func collect(t testing.TB, c *Client, device string, from, to time.Time) []position.Position {
	t.Helper()
	var got []position.Position
	if err := c.Points(context.Background(), device, from, to, func(p *position.Position) error {
		got = append(got, *p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func times(ps []position.Position) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = p.Time.UnixNano()
	}
	return out
}

func minimal(t time.Time, lat, lon float64) position.Position {
	return position.Position{Time: t, Lat: lat, Lon: lon, Set: position.Required}
}

// TestQueryAgainstInfluxDB reads and deletes positions in a real influxd 1.8.
func TestQueryAgainstInfluxDB(t *testing.T) {
	inf := testenv.StartInflux(t)
	c := newTestClient(t, inf.URL, inf.Database+"/autogen", "")
	ctx := context.Background()

	t.Run("version", func(t *testing.T) {
		// This influxd, built by `go install`, says X-Influxdb-Version: unknown.
		if major, err := c.serverMajor(ctx); err != nil || major != 1 {
			t.Fatalf("serverMajor = %d, %v; want 1", major, err)
		}
	})

	t.Run("round trip", func(t *testing.T) {
		full := position.Position{
			Time: t0, Lat: 52.123456789012345, Lon: -4.987654321098765, Alt: -12.5, Speed: 0, Course: 359.99999,
			HDOP: 0.7, Sats: 0, Fix: position.FixRTK, Acc: 1e-7, Batt: 100, PDOP: 1.25, VDOP: 99.9, Geoid: -47.123,
			Set: allFields,
		}
		full2 := position.Position{
			Time: t0.Add(time.Second), Lat: -89.999999999, Lon: 179.999999999, Alt: 99999.75, Speed: 1234.5678, Course: 0,
			HDOP: 100, Sats: 64, Fix: position.Fix3D, Acc: 123456.789, Batt: 0.5, PDOP: 0, VDOP: 3, Geoid: 0,
			Set: allFields,
		}
		want := []position.Position{
			minimal(t0.Add(-time.Nanosecond), 1e-9, -0.1),
			full,
			minimal(t0.Add(time.Nanosecond), 52, 4),
			full2,
			{Time: t0.Add(2 * time.Second), Lat: 1, Lon: 2, Fix: position.FixDR, Speed: 3, Set: position.Required | position.FieldFix | position.FieldSpeed},
		}
		shuffled := append([]position.Position(nil), want...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		writePositions(t, c, "rt", shuffled...)

		got := collect(t, c, "rt", t0.Add(-time.Hour), t0.Add(time.Hour))
		if len(got) != len(want) {
			t.Fatalf("%d positions, want %d: %+v", len(got), len(want), got)
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("position %d:\n got %+v\nwant %+v", i, got[i], want[i])
			}
		}

		last, err := c.Last(ctx, "rt")
		if err != nil || last == nil || !reflect.DeepEqual(*last, want[len(want)-1]) {
			t.Fatalf("Last = %+v, %v; want %+v", last, err, want[len(want)-1])
		}
		if last, err := c.Last(ctx, "nobody"); last != nil || err != nil {
			t.Fatalf("Last of a device without positions = %+v, %v; want nil, nil", last, err)
		}
	})

	t.Run("bounds", func(t *testing.T) {
		t1 := t0.Add(time.Minute)
		var ps []position.Position
		for i, tt := range []time.Time{
			t0.Add(-30 * 24 * time.Hour), // another shard
			t0.Add(-time.Nanosecond), t0, t0.Add(time.Nanosecond), t1.Add(-time.Nanosecond), t1, t1.Add(time.Nanosecond),
			t1.Add(30 * 24 * time.Hour),
		} {
			ps = append(ps, minimal(tt, float64(i), 0))
		}
		writePositions(t, c, "b", ps...)
		writePositions(t, c, "b2", ps...)
		writePositions(t, c, "bb", ps...)
		writePositions(t, c, "B", ps...)

		got := collect(t, c, "b", t0, t1)
		if want := []int64{t0.UnixNano(), t0.UnixNano() + 1, t1.UnixNano() - 1, t1.UnixNano()}; !reflect.DeepEqual(times(got), want) {
			t.Fatalf("times %v, want %v", times(got), want)
		}
		if got := collect(t, c, "b", t0, t0); len(got) != 1 || !got[0].Time.Equal(t0) {
			t.Fatalf("from = to: %+v", got)
		}
		if got := collect(t, c, "b", t1, t0); len(got) != 0 {
			t.Fatalf("to before from: %+v", got)
		}
		if got := collect(t, c, "b", time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); !reflect.DeepEqual(got, ps) {
			t.Fatalf("all time: %+v", got)
		}
		if got := collect(t, c, "b", t0.Add(-60*24*time.Hour), t0.Add(-time.Hour)); len(got) != 1 || got[0].Lat != 0 {
			t.Fatalf("the earlier shard alone: %+v", got)
		}
	})

	t.Run("escaping", func(t *testing.T) {
		writePositions(t, c, `o'k"`, minimal(t0, 1, 1))
		// AppendLineProtocol escapes a backslash in a tag value as \\, which
		// influxd stores as two backslashes; write the tags raw to have
		// device ids with one and with two.
		writeLines(t, c, fmt.Sprintf("position,device=s\\b'c lat=2,lon=2 %d\nposition,device=s\\\\b'c lat=3,lon=3 %d\n",
			t0.UnixNano(), t0.UnixNano()))
		for _, tc := range []struct {
			device string
			lat    float64 // of the one position expected, 0 for none
		}{
			{`o'k"`, 1},
			{`s\b'c`, 2},
			{`s\\b'c`, 3},
			{`o'k`, 0},
			{`x' OR device='rt`, 0},
			{`x\' OR device='rt`, 0},
			{"s\\b'c\n", 0},
		} {
			got := collect(t, c, tc.device, time.Time{}, t0.Add(time.Hour))
			switch {
			case tc.lat == 0 && len(got) != 0:
				t.Errorf("device %q: %+v, want none", tc.device, got)
			case tc.lat != 0 && (len(got) != 1 || got[0].Lat != tc.lat):
				t.Errorf("device %q: %+v, want lat %v", tc.device, got, tc.lat)
			}
			if _, err := c.Last(ctx, tc.device); err != nil {
				t.Errorf("Last(%q): %v", tc.device, err)
			}
		}
	})

	// many holds more points than three chunks.
	const many = 3*queryChunkSize - 4999
	manyAt := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	{
		ps := make([]position.Position, many)
		for i := range ps {
			ps[i] = minimal(manyAt(i), float64(i)/1000, 4)
			if i%2 == 0 {
				ps[i].Sats, ps[i].Set = i%13, ps[i].Set|position.FieldSats
			}
		}
		writePositions(t, c, "many", ps...)
	}

	t.Run("chunks", func(t *testing.T) {
		i := 0
		chunks, err := c.points(ctx, "many", time.Time{}, manyAt(many), func(p *position.Position) error {
			want := minimal(manyAt(i), float64(i)/1000, 4)
			if i%2 == 0 {
				want.Sats, want.Set = i%13, want.Set|position.FieldSats
			}
			if *p != want {
				return fmt.Errorf("position %d: %+v, want %+v", i, *p, want)
			}
			i++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i != many {
			t.Fatalf("%d positions, want %d", i, many)
		}
		if chunks < 3 {
			t.Fatalf("%d chunks for %d positions, want at least 3", chunks, many)
		}
		t.Logf("%d positions in %d chunks", many, chunks)
	})

	t.Run("fn error", func(t *testing.T) {
		errStop := errors.New("stop")
		n := 0
		err := c.Points(ctx, "many", time.Time{}, manyAt(many), func(*position.Position) error {
			if n++; n == 100 {
				return errStop
			}
			return nil
		})
		if err != errStop || n != 100 {
			t.Fatalf("err = %v after %d calls, want errStop after 100", err, n)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		n := 0
		err := c.Points(ctx, "many", time.Time{}, manyAt(many), func(*position.Position) error {
			if n++; n == 100 {
				cancel()
			}
			return nil
		})
		// The context is checked every 256 rows and before each read.
		if !errors.Is(err, context.Canceled) || n > 100+256 {
			t.Fatalf("err = %v after %d calls, want context.Canceled within 356", err, n)
		}
		t.Logf("cancelled after %d of %d positions: %v", n, many, err)
	})

	t.Run("delete", func(t *testing.T) {
		t1 := t0.Add(time.Minute)
		var ps []position.Position
		for i, tt := range []time.Time{
			t0.Add(-30 * 24 * time.Hour),
			t0.Add(-time.Nanosecond), t0, t0.Add(time.Second), t1, t1.Add(time.Nanosecond),
			t1.Add(30 * 24 * time.Hour),
		} {
			ps = append(ps, minimal(tt, float64(i), 0))
		}
		writePositions(t, c, "del", ps...)
		writePositions(t, c, "del2", ps...)
		writePositions(t, c, "del'", ps...)

		if err := c.DeletePoints(ctx, "del", t0, t1); err != nil {
			t.Fatal(err)
		}
		all := func(device string) []position.Position {
			return collect(t, c, device, time.Time{}, t1.Add(365*24*time.Hour))
		}
		if got, want := all("del"), []position.Position{ps[0], ps[1], ps[5], ps[6]}; !reflect.DeepEqual(got, want) {
			t.Fatalf("after the delete: times %v, want %v", times(got), times(want))
		}
		for _, other := range []string{"del2", "del'"} {
			if got := all(other); !reflect.DeepEqual(got, ps) {
				t.Fatalf("device %q after deleting del's: times %v, want %v", other, times(got), times(ps))
			}
		}
		// Everything, then nothing left to delete.
		for range 2 {
			if err := c.DeletePoints(ctx, "del", time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
				t.Fatal(err)
			}
		}
		if got := all("del"); len(got) != 0 {
			t.Fatalf("after deleting all: %+v", got)
		}
		if last, err := c.Last(ctx, "del"); last != nil || err != nil {
			t.Fatalf("Last after deleting all = %+v, %v", last, err)
		}
		if got := all("del2"); len(got) != len(ps) {
			t.Fatalf("del2 after deleting all of del: %d positions", len(got))
		}
	})

	t.Run("empty device", func(t *testing.T) {
		if err := c.Points(ctx, "", time.Time{}, t0, func(*position.Position) error { return nil }); err == nil {
			t.Error("Points with an empty device: no error")
		}
		if _, err := c.Last(ctx, ""); err == nil {
			t.Error("Last with an empty device: no error")
		}
		if err := c.DeletePoints(ctx, "", time.Time{}, t0); err == nil {
			t.Error("DeletePoints with an empty device: no error")
		}
	})

	t.Run("database not found", func(t *testing.T) {
		for _, bucket := range []string{"nodb", inf.Database + "/norp"} {
			c := newTestClient(t, inf.URL, bucket, "")
			var se *ServerError
			err := c.Points(ctx, "rt", time.Time{}, t0, func(*position.Position) error { return nil })
			if !errors.As(err, &se) || !se.NotFound() || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), `"rt"`) {
				t.Errorf("Points from %s: %v, want a not-found *ServerError naming the device", bucket, err)
			}
			if _, err := c.Last(ctx, "rt"); !errors.As(err, &se) || !se.NotFound() {
				t.Errorf("Last from %s: %v, want a not-found *ServerError", bucket, err)
			}
			t.Logf("%s: %v", bucket, err)
		}
		c := newTestClient(t, inf.URL, "nodb", "")
		var se *ServerError
		if err := c.DeletePoints(ctx, "rt", time.Time{}, t0); !errors.As(err, &se) || !se.NotFound() {
			t.Errorf("DeletePoints from nodb: %v, want a not-found *ServerError", err)
		}
	})

	t.Run("influxd down", func(t *testing.T) {
		inf.Kill()
		err := c.Points(ctx, "rt", time.Time{}, t0, func(*position.Position) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("Points with influxd down: %v", err)
		}
		t.Log(err)
	})
}

// fakeInflux is an httptest server answering /ping with version and the
// rest with handler.
func fakeInflux(t *testing.T, version string, pings *atomic.Int32, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			if pings != nil {
				pings.Add(1)
			}
			if version != "" {
				w.Header().Set("X-Influxdb-Version", version)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestParseMajor(t *testing.T) {
	for v, want := range map[string]int{
		"1.8.10": 1, "1.8.10-c1.8.10": 1, "v1.11.8": 1, "v2.7.4": 2, "2.x": 2, "2": 2, "v2.0.0-beta.16": 2,
		"3.0.1": 3, "v3.2.0": 3, "3.x": 3, "4.0.0": 3,
		"unknown": 0, "": 0, "OSS": 0, "0.13.0": 0, "cloud2": 0, "2a": 0, "123456789": 0,
	} {
		got, ok := parseMajor(v)
		if ok != (want != 0) || got != want {
			t.Errorf("parseMajor(%q) = %d, %v; want %d", v, got, ok, want)
		}
	}
}

func TestServerVersionDetection(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		header string
		setup  int // status of GET /api/v2/setup
		want   int
	}{
		{"1.8.10", 0, 1},
		{"v2.7.4", 0, 2},
		{"2.x", 0, 2},
		{"3.0.1", 0, 3},
		{"unknown", http.StatusNotFound, 1}, // influxd 1.x built from source
		{"unknown", http.StatusOK, 2},
		{"", http.StatusNotFound, 1},
	} {
		var pings atomic.Int32
		srv := fakeInflux(t, tc.header, &pings, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/v2/setup" || tc.setup == 0 {
				t.Errorf("header %q: unexpected %s %s", tc.header, r.Method, r.URL)
			}
			w.WriteHeader(tc.setup)
		})
		c := newTestClient(t, srv.URL, "db", "")
		for range 3 {
			if got, err := c.serverMajor(ctx); err != nil || got != tc.want {
				t.Errorf("X-Influxdb-Version %q: major %d, %v; want %d", tc.header, got, err, tc.want)
			}
		}
		if n := pings.Load(); n != 1 {
			t.Errorf("X-Influxdb-Version %q: %d pings, want 1 (cached)", tc.header, n)
		}
	}

	// A failure is not cached: a second call asks again.
	var fail atomic.Bool
	fail.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Influxdb-Version", "v2.7.4")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, "db", "")
	if _, err := c.serverMajor(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unavailable: err = %v", err)
	}
	fail.Store(false)
	if got, err := c.serverMajor(ctx); err != nil || got != 2 {
		t.Fatalf("after recovery: %d, %v", got, err)
	}
}

// TestDeleteV2 checks the request DeletePoints sends to an InfluxDB 2.x, and
// its errors.
func TestDeleteV2(t *testing.T) {
	from, to := t0, t0.Add(time.Hour+time.Nanosecond)
	var calls atomic.Int32
	srv := fakeInflux(t, "v2.7.4", nil, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/delete" {
			t.Errorf("%s %s, want POST /api/v2/delete", r.Method, r.URL.Path)
		}
		if q := r.URL.Query(); q.Get("org") != "acme" || q.Get("bucket") != "tracks" || len(q) != 2 {
			t.Errorf("query %v, want org=acme bucket=tracks", q)
		}
		if got := r.Header.Get("Authorization"); got != "Token s3cr3t==" {
			t.Errorf("Authorization %q", got)
		}
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q", got)
		}
		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("body: %v", err)
		}
		want := map[string]string{
			"start":     "2023-11-14T22:13:20.123456789Z",
			"stop":      "2023-11-14T23:13:20.12345679Z", // inclusive: [start, stop]
			"predicate": `_measurement="position" AND device="a\"b\\c'd"`,
		}
		if !reflect.DeepEqual(body, want) {
			t.Errorf("body %q\nwant %q", body, want)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := newTestClient(t, srv.URL, "tracks", "s3cr3t==")
	if err := c.DeletePoints(context.Background(), `a"b\c'd`, from, to); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d delete requests", calls.Load())
	}

	// Whole time, clamped to what InfluxDB accepts.
	srv = fakeInflux(t, "v2.7.4", nil, func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		if body["start"] != "1677-09-21T00:12:43.145224194Z" || body["stop"] != "2262-04-11T23:47:16.854775806Z" {
			t.Errorf("all time: start %s stop %s", body["start"], body["stop"])
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c = newTestClient(t, srv.URL, "tracks", "tok")
	if err := c.DeletePoints(context.Background(), "d", time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}

	// A missing bucket on 2.x.
	srv = fakeInflux(t, "v2.7.4", nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"code":"not found","message":"bucket \"tracks\" not found"}`)
	})
	c = newTestClient(t, srv.URL, "tracks", "tok")
	err := c.DeletePoints(context.Background(), "d", t0, t0)
	var se *ServerError
	if !errors.As(err, &se) || !se.NotFound() || se.Msg != `bucket "tracks" not found` {
		t.Fatalf("missing bucket: %v", err)
	}
	t.Log(err)

	// InfluxDB 3 has no delete API.
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed} {
		srv = fakeInflux(t, "3.0.1", nil, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		})
		c = newTestClient(t, srv.URL, "tracks", "tok")
		err = c.DeletePoints(context.Background(), "d", t0, t0)
		if err == nil || !strings.Contains(err.Error(), "cannot delete") || !strings.Contains(err.Error(), "3.x") {
			t.Fatalf("3.x, HTTP %d: %v", status, err)
		}
		t.Log(err)
	}
}

// TestQueryRequest checks the InfluxQL requests and their credentials.
func TestQueryRequest(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		version, bucket, token string
		db, rp, auth           string
		pings                  int32
	}{
		{"1.8.10", "trackgate/autogen", "", "trackgate", "autogen", "", 0}, // no token, no need to ask
		{"1.8.10", "trackgate/a/b", "alice:pa:ss", "trackgate", "a/b", "Basic YWxpY2U6cGE6c3M=", 1},
		{"v2.7.4", "tracks", "tok==", "tracks", "", "Token tok==", 1},
		{"3.0.1", "tracks", "apiv3_x", "tracks", "", "Token apiv3_x", 1},
	} {
		var pings atomic.Int32
		srv := fakeInflux(t, tc.version, &pings, func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if r.Method == http.MethodPost {
				r.ParseForm()
				q.Set("q", r.PostForm.Get("q"))
			}
			want := map[string]string{"db": tc.db, "rp": tc.rp, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
			if r.Method == http.MethodPost {
				want["rp"], want["chunked"], want["chunk_size"] = "", "", ""
			}
			if strings.Contains(q.Get("q"), "LIMIT 1") {
				want["chunked"], want["chunk_size"] = "", ""
			}
			for k, v := range want {
				if q.Get(k) != v {
					t.Errorf("%s %s: %s=%q, want %q", tc.version, r.Method, k, q.Get(k), v)
				}
			}
			if got := r.Header.Get("Authorization"); got != tc.auth {
				t.Errorf("%s: Authorization %q, want %q", tc.version, got, tc.auth)
			}
			t.Logf("%s %s q=%s", r.Method, r.URL.Path, q.Get("q"))
			io.WriteString(w, `{"results":[{"statement_id":0}]}`)
		})
		c := newTestClient(t, srv.URL, tc.bucket, tc.token)
		if err := c.Points(ctx, "d'1", t0, t0.Add(time.Second), func(*position.Position) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Last(ctx, "d'1"); err != nil {
			t.Fatal(err)
		}
		if tc.version == "1.8.10" {
			if err := c.DeletePoints(ctx, "d'1", t0, t0); err != nil {
				t.Fatal(err)
			}
			tc.pings = 1
		}
		if pings.Load() != tc.pings {
			t.Errorf("%s: %d pings, want %d", tc.version, pings.Load(), tc.pings)
		}
	}
}

func TestQueryString(t *testing.T) {
	var got []string
	srv := fakeInflux(t, "1.8.10", nil, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got = append(got, r.Form.Get("q"))
		io.WriteString(w, `{"results":[{"statement_id":0}]}`)
	})
	c := newTestClient(t, srv.URL, "db", "")
	ctx := context.Background()
	device := "a'b\\c\"d\ne"
	c.Points(ctx, device, ns(-5), ns(1_700_000_000_123_456_789), func(*position.Position) error { return nil })
	c.Last(ctx, device)
	c.DeletePoints(ctx, device, time.Time{}, ns(5))
	want := []string{
		`SELECT *::field FROM "position" WHERE "device" = 'a\'b\\c"d\ne' AND time >= -5 AND time <= 1700000000123456789 ORDER BY time ASC`,
		`SELECT *::field FROM "position" WHERE "device" = 'a\'b\\c"d\ne' ORDER BY time DESC LIMIT 1`,
		`DELETE FROM "position" WHERE "device" = 'a\'b\\c"d\ne' AND time >= -9223372036854775806 AND time <= 5`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("queries\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestQueryErrors maps InfluxDB's errors and malformed answers.
func TestQueryErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		status      int
		body        string
		server      bool // a *ServerError
		malformed   bool
		contains    string
		notFound    bool
		rowsBefore  int
		description string
	}{
		{400, `{"error":"error parsing query: found zz"}`, true, false, "HTTP 400 Bad Request: error parsing query: found zz", false, 0, "1.x parse error"},
		{401, `{"error":"authorization failed"}`, true, false, "HTTP 401", false, 0, "1.x auth"},
		{404, `{"code":"not found","message":"database \"x\" not found"}`, true, false, `database "x" not found`, true, 0, "2.x dbrp"},
		{500, "oops\n", true, false, "HTTP 500 Internal Server Error: oops", false, 0, "text body"},
		{200, `{"results":[{"statement_id":0,"error":"database not found: nodb"}]}`, true, false, "InfluxDB: database not found: nodb", true, 0, "in the answer"},
		{200, `{"error":"timeout"}`, true, false, "InfluxDB: timeout", false, 0, "top-level"},
		{200, `{"results":[{"statement_id":0,"series":[{"columns":["time","lat"],"values":[[1,2]],"partial":true}],"partial":true}]}
{"results":[{"statement_id":0,"error":"max-select-point limit exceeded"}]}`, true, false, "max-select-point", false, 1, "after a chunk"},
		{200, ``, false, true, "empty answer", false, 0, "empty"},
		{200, `<html>`, false, true, "want an object", false, 0, "html"},
		{200, `{"results":[{"series":[{"columns":["time","lat"],"values":[[1,2],[3,`, false, true, "unexpected end", false, 1, "truncated"},
		{200, `{"results":[{"series":[{"columns":["time","lat"],"values":[[1,"x"]]}]}]}`, false, true, "lat is not a number", false, 0, "type"},
		{200, `{"results":[{"series":[{"columns":["lat"],"values":[[1]]}]}]}`, false, true, "row without time", false, 0, "no time"},
		{200, `{"results":[{"series":[{"columns":["time","lat"],"values":[[1.5,1]]}]}]}`, false, true, "not an integer", false, 0, "fractional time"},
		{200, `{"results":[{"series":[{"columns":["time","lat"],"values":[[1]]}]}]}`, false, true, "1 values for 2 columns", false, 0, "short row"},
		{200, `{"results":[{"series":[{"values":[[1]],"columns":["time"]}]}]}`, false, true, "values before columns", false, 0, "order"},
	} {
		srv := fakeInflux(t, "1.8.10", nil, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		})
		c := newTestClient(t, srv.URL, "db", "")
		rows := 0
		err := c.Points(ctx, "d", t0, t0, func(*position.Position) error { rows++; return nil })
		var se *ServerError
		switch {
		case err == nil:
			t.Errorf("%s: no error", tc.description)
		case errors.As(err, &se) != tc.server || errors.Is(err, ErrMalformed) != tc.malformed:
			t.Errorf("%s: %v (%T): want server %v, malformed %v", tc.description, err, errors.Unwrap(err), tc.server, tc.malformed)
		case !strings.Contains(err.Error(), tc.contains) || !strings.Contains(err.Error(), `influx: points of device "d"`):
			t.Errorf("%s: %q does not say %q", tc.description, err, tc.contains)
		case se != nil && se.NotFound() != tc.notFound:
			t.Errorf("%s: NotFound() = %v", tc.description, se.NotFound())
		case rows != tc.rowsBefore:
			t.Errorf("%s: %d rows before the error, want %d", tc.description, rows, tc.rowsBefore)
		}
		t.Logf("%s: %v", tc.description, err)
	}
}

// TestCancelWhileWaiting stops a query whose answer stalls after a first chunk.
func TestCancelWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := fakeInflux(t, "1.8.10", nil, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"results":[{"statement_id":0,"series":[{"columns":["time","lat"],"values":[[1,2]],"partial":true}],"partial":true}]}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c := newTestClient(t, srv.URL, "db", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var began time.Time
	err := c.Points(ctx, "d", t0, t0, func(*position.Position) error {
		began = time.Now()
		time.AfterFunc(50*time.Millisecond, cancel)
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("Points returned %v after the first row, want promptly after the cancel", d)
	}
}

// TestParseStrings checks escapes, and exact timestamps beyond 2^53.
func TestParseStrings(t *testing.T) {
	body := `{"results":[{"statement_id":0,"series":[{"name":"position","tags":{"x":"y"},"columns":["time","device","fix","lat","lon"],` +
		`"values":[[9007199254740993,"\u00e9\"\\\/\ud83d\ude00","\u0033\u0064",1,2],[-1,null,"\ud800x\udc00",3,4],["2023-11-14T22:13:20.123456789+01:00",1,"",5,6]]}]}]}`
	for _, n := range []int{1, 3, 1 << 20} {
		rows, chunks, err := parseAll(chunkedReader{strings.NewReader(body), n})
		if err != nil {
			t.Fatal(err)
		}
		want := []position.Position{
			{Time: ns(9007199254740993), Fix: position.Fix3D, Lat: 1, Lon: 2, Set: position.Required | position.FieldFix},
			{Time: ns(-1), Fix: "\uFFFDx\uFFFD", Lat: 3, Lon: 4, Set: position.Required | position.FieldFix},
			{Time: ns(1_699_996_400_123_456_789), Fix: "", Lat: 5, Lon: 6, Set: position.Required | position.FieldFix},
		}
		if chunks != 1 || !reflect.DeepEqual(rows, want) {
			t.Fatalf("reads of %d: %d chunks\n got %+v\nwant %+v", n, chunks, rows, want)
		}
	}
}
