package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"trackgate/cloud/ingest"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/position"
)

// benchStack is a cloud with user ann and her device van (no broker: the
// API does not need one), an API token of ann's, and a second handle on the
// cloud's SQL store.
func benchStack(b *testing.B) (*stack, string, *store.Store) {
	b.Helper()
	s := newStack(b, ingest.Config{}, "tcp://127.0.0.1:1")
	s.launchCloud(b)
	ctx := context.Background()
	a := s.openAuth(b)
	if err := a.AddUser(ctx, "ann", "correct horse battery staple"); err != nil {
		b.Fatal(err)
	}
	if _, err := a.AddDevice(ctx, "ann", "van", "", nil); err != nil {
		b.Fatal(err)
	}
	tok := s.userToken(b, "ann", "correct horse battery staple", "tracks:read", "tracks:write")
	st, err := store.Open(ctx, s.cfg.Data)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return s, tok, st
}

// BenchmarkTrackList10k lists the tracks of a user who has 10,000, a page
// of 50 at a time, following the cursor from the newest to page 40 and
// again: each op is one request. It reports the latency percentiles.
func BenchmarkTrackList10k(b *testing.B) {
	s, tok, st := benchStack(b)
	ctx := context.Background()
	d, err := st.Device(ctx, "van")
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Add(-10000 * time.Hour)
	for i := range 10000 {
		start := base.Add(time.Duration(i) * time.Hour)
		stop := start.Add(30 * time.Minute)
		if err := st.SaveTrack(ctx, &store.Track{ID: tracks.NewID(), OwnerID: d.OwnerID, Device: "van", Started: start, Stopped: &stop}); err != nil {
			b.Fatal(err)
		}
	}
	get := func(q string) (cursor string) {
		req, _ := http.NewRequest("GET", s.httpURL+"/api/v1/tracks?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%d %s", resp.StatusCode, body)
		}
		if i := strings.Index(string(body), `"next_cursor":"`); i >= 0 {
			rest := string(body)[i+len(`"next_cursor":"`):]
			return rest[:strings.IndexByte(rest, '"')]
		}
		return ""
	}
	get("limit=50") // warm up
	lat := make([]time.Duration, 0, b.N)
	cursor, page := "", 0
	b.ResetTimer()
	for range b.N {
		q := "limit=50"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		t0 := time.Now()
		cursor = get(q)
		lat = append(lat, time.Since(t0))
		if page++; page == 40 || cursor == "" {
			cursor, page = "", 0
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// BenchmarkTrackExport100k exports a track of 100,000 points (every field
// set) as GeoJSON and GPX through the API: each op is one whole export. It
// reports the time to the first byte, the total time, and the growth of
// the process's peak resident memory while exporting (the cloud runs in
// the benchmark's process; the client discards what it reads).
func BenchmarkTrackExport100k(b *testing.B) {
	s, tok, st := benchStack(b)
	ctx := context.Background()
	const n = 100_000
	start := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	var lines []byte
	for i := range n {
		p := position.Position{Time: start.Add(time.Duration(i) * time.Second), Lat: 52 + float64(i)*1e-5, Lon: 5 + float64(i%1000)*1e-5,
			Alt: 10 + float64(i%50), Speed: 12.5, Course: 45, HDOP: 0.8, Sats: 11, Fix: position.Fix3D, Acc: 3, Batt: 80,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldHDOP | position.FieldSats | position.FieldFix | position.FieldAcc | position.FieldBatt}
		lines = p.AppendLineProtocol(lines, "van")
		if len(lines) > 1<<20 || i == n-1 {
			if err := s.store.Write(ctx, lines); err != nil {
				b.Fatal(err)
			}
			lines = lines[:0]
		}
	}
	d, err := st.Device(ctx, "van")
	if err != nil {
		b.Fatal(err)
	}
	stop := start.Add(n * time.Second)
	tr := &store.Track{ID: tracks.NewID(), OwnerID: d.OwnerID, Device: "van", Name: "long", Started: start, Stopped: &stop}
	if err := st.SaveTrack(ctx, tr); err != nil {
		b.Fatal(err)
	}
	for _, format := range []string{"geojson", "gpx"} {
		b.Run(format, func(b *testing.B) {
			var ttfb, total time.Duration
			var growth int64
			for range b.N {
				runtime.GC()
				debug.FreeOSMemory()
				before := procStatus(b, "VmRSS")
				resetPeakRSS(b)
				req, _ := http.NewRequest("GET", s.httpURL+"/api/v1/tracks/"+tr.ID+"/points?format="+format, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				t0 := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				br := bufio.NewReader(resp.Body)
				if _, err := br.Peek(1); err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%d %v", resp.StatusCode, err)
				}
				first := time.Since(t0)
				body, err := io.Copy(io.Discard, br)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				whole := time.Since(t0)
				if body < n*20 {
					b.Fatalf("only %d bytes for %d points", body, n)
				}
				ttfb, total = ttfb+first, total+whole
				growth = max(growth, procStatus(b, "VmHWM")-before)
			}
			b.ReportMetric(ms(ttfb/time.Duration(b.N)), "ttfb-ms")
			b.ReportMetric(ms(total/time.Duration(b.N)), "total-ms")
			b.ReportMetric(float64(growth)/(1<<20), "rss-growth-MB")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// procStatus reads a memory figure of this process from /proc/self/status,
// in bytes.
func procStatus(b *testing.B, field string) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status:", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeakRSS makes VmHWM start again from the current resident size.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skip("cannot reset the peak RSS:", err)
	}
}

// BenchmarkImportGPX100k imports a 100,000-point GPX file through the API
// (upload, validation pass, InfluxDB writes, track) and waits for its job
// to complete; each op is one import of the same file (the points are
// overwritten with the same values). It reports the job's throughput
// (positions per second from its start to its end, as the job records
// them) and the whole call's, upload included.
func BenchmarkImportGPX100k(b *testing.B) {
	s, tok, _ := benchStack(b)
	const n = 100_000
	path := b.TempDir() + "/big.gpx"
	writeGPX(b, path, time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC), n)
	var jobTime, wall time.Duration
	b.ResetTimer()
	for b.Loop() {
		began := time.Now()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest("POST", s.httpURL+"/api/v1/imports?device=van", f)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		var j struct {
			ID        string     `json:"id"`
			State     string     `json:"state"`
			Processed int        `json:"processed_items"`
			Error     string     `json:"error"`
			Started   *time.Time `json:"started"`
			Ended     *time.Time `json:"ended"`
		}
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			b.Fatalf("import: %s %v", resp.Status, err)
		}
		for j.State == "pending" || j.State == "running" {
			time.Sleep(20 * time.Millisecond)
			req, _ := http.NewRequest("GET", s.httpURL+"/api/v1/jobs/"+j.ID, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&j)
			resp.Body.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		if j.State != "completed" || j.Processed != n {
			b.Fatalf("job %s: %s, %d positions: %s", j.ID, j.State, j.Processed, j.Error)
		}
		wall += time.Since(began)
		jobTime += j.Ended.Sub(*j.Started)
	}
	b.ReportMetric(float64(n*b.N)/jobTime.Seconds(), "positions/s")
	b.ReportMetric(float64(n*b.N)/wall.Seconds(), "positions/s-with-upload")
}
