package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trackgate/internal/position"
)

// influx is the InfluxDB 1.x HTTP API the harness measures through.
type influx struct {
	url string
	c   *http.Client
}

func newInflux(u string) *influx { return &influx{url: u, c: &http.Client{Timeout: time.Minute}} }

// series is one series of an InfluxQL result.
type series struct {
	Values [][]json.Number `json:"values"`
}

// query runs an InfluxQL statement against db, times in milliseconds.
func (i *influx) query(ctx context.Context, db, q string) ([]series, error) {
	form := url.Values{"db": {db}, "q": {q}, "epoch": {"ms"}}
	req, err := http.NewRequestWithContext(ctx, "POST", i.url+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := i.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("influx query: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Series []series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("influx query %q: %s: %w", q, resp.Status, err)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("influx query %q: %s", q, out.Error)
	}
	if len(out.Results) == 0 {
		return nil, nil
	}
	if e := out.Results[0].Error; e != "" {
		return nil, fmt.Errorf("influx query %q: %s", q, e)
	}
	return out.Results[0].Series, nil
}

// createDB creates (or keeps) a database.
func (i *influx) createDB(ctx context.Context, db string) error {
	_, err := i.query(ctx, "", "CREATE DATABASE "+db)
	return err
}

// where is an InfluxQL condition on the devices matching re (a regular
// expression) within [from, to].
func where(re string, from, to time.Time) string {
	return fmt.Sprintf("device =~ /%s/ AND time >= %d AND time <= %d", re, from.UnixNano(), to.UnixNano())
}

// count counts the points of measurement in db matching cond (one per
// device and time: InfluxDB keeps one point per series and timestamp).
func (i *influx) count(ctx context.Context, db, measurement, cond string) (int64, error) {
	s, err := i.query(ctx, db, fmt.Sprintf("SELECT count(lat) FROM %s WHERE %s", measurement, cond))
	if err != nil || len(s) == 0 || len(s[0].Values) == 0 {
		return 0, err
	}
	return s[0].Values[0][1].Int64()
}

// waitCount polls the count until it reaches want, or stops growing for
// quiet; it returns the last count and when it was first seen.
func (i *influx) waitCount(ctx context.Context, db, measurement, cond string, want int64, quiet time.Duration) (int64, time.Time, error) {
	var last int64 = -1
	var lastAt, grew time.Time
	for {
		at := time.Now()
		n, err := i.count(ctx, db, measurement, cond)
		if err != nil {
			return last, lastAt, err
		}
		if n != last {
			last, lastAt, grew = n, at, at
		}
		if n >= want || time.Since(grew) > quiet {
			return last, lastAt, nil
		}
		select {
		case <-ctx.Done():
			return last, lastAt, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// latency follows when sampled positions become queryable: every interval
// it counts, per 10 ms of position time (each position is stamped with its
// publish time), the points of the sampled devices stored within the last
// window; a bucket's growth since the previous poll became queryable
// between the two polls.
type latency struct {
	inf         *influx
	db, meas    string
	devices     string // regular expression of the sampled devices
	window      time.Duration
	interval    time.Duration
	seen        map[int64]int64 // bucket (ms) → points seen
	samples     []float64       // milliseconds
	sampledSeen int64
	polls       atomic.Int64
	wg          sync.WaitGroup
	cancel      context.CancelFunc
	err         error
}

const latencyBucket = 10 * time.Millisecond

func startLatency(inf *influx, db, meas, devices string, window, interval time.Duration) *latency {
	ctx, cancel := context.WithCancel(context.Background())
	l := &latency{inf: inf, db: db, meas: meas, devices: devices, window: window, interval: interval,
		seen: map[int64]int64{}, cancel: cancel}
	l.wg.Go(func() { l.run(ctx) })
	return l
}

func (l *latency) run(ctx context.Context) {
	prev := time.Now()
	for {
		// Polls at jittered intervals (0.5 to 1.5 of interval): at a fixed
		// one they would lock in phase with periodic sources (receivers'
		// epochs, the ingest's batch timer) and see every position at the
		// same point of its interval.
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.interval/2 + rand.N(l.interval)):
		}
		at := time.Now()
		q := fmt.Sprintf("SELECT count(lat) FROM %s WHERE %s GROUP BY time(%s) fill(none)",
			l.meas, where(l.devices, at.Add(-l.window), at), latencyBucket)
		s, err := l.inf.query(ctx, l.db, q)
		if err != nil {
			if ctx.Err() == nil {
				l.err = err
			}
			return
		}
		l.polls.Add(1)
		// Points seen now were stored after the previous poll began and
		// before this one answered: take the middle of the two starts.
		seenAt := prev.Add(at.Sub(prev) / 2)
		prev = at
		if len(s) == 0 {
			continue
		}
		for _, v := range s[0].Values {
			ms, _ := v[0].Int64()
			n, _ := v[1].Int64()
			if d := n - l.seen[ms]; d > 0 {
				l.seen[ms] = n
				l.sampledSeen += d
				mid := time.UnixMilli(ms).Add(latencyBucket / 2)
				lat := float64(seenAt.Sub(mid)) / 1e6
				for range d {
					l.samples = append(l.samples, lat)
				}
			}
		}
		// Forget buckets that left the window.
		for ms := range l.seen {
			if time.UnixMilli(ms).Before(at.Add(-2 * l.window)) {
				delete(l.seen, ms)
			}
		}
	}
}

// Latency is the publish→queryable distribution of the sampled positions.
type Latency struct {
	Samples int64   `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
	// Beyond is how many sampled positions were not seen within the
	// window (later than it, or lost); they count as the window in the
	// percentiles.
	Beyond int64 `json:"beyond_window"`
	Polls  int64 `json:"polls"`
}

// stop ends polling; total is how many positions of the sampled devices
// are stored in the end.
func (l *latency) stop(total int64) (Latency, error) {
	l.cancel()
	l.wg.Wait()
	out := Latency{Samples: total, Polls: l.polls.Load()}
	if l.err != nil {
		return out, l.err
	}
	s := l.samples
	if beyond := total - l.sampledSeen; beyond > 0 {
		out.Beyond = beyond
		for range beyond {
			s = append(s, float64(l.window)/1e6)
		}
	}
	if len(s) == 0 {
		return out, nil
	}
	slices.Sort(s)
	pct := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	out.P50, out.P99, out.P999, out.Max = pct(0.50), pct(0.99), pct(0.999), s[len(s)-1]
	return out, nil
}

// ceiling writes line protocol straight to influxd from writers goroutines,
// batches of batch points (a position each, as the ingest writes them),
// for d, and returns the points per second InfluxDB accepted.
func (i *influx) ceiling(ctx context.Context, db string, writers, batch int, d time.Duration) (float64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	base := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	var written atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			var buf []byte
			for n := 0; ctx.Err() == nil; n++ {
				buf = buf[:0]
				for k := range batch {
					seq := (n*writers+w)*batch + k
					p := position.Position{Time: base.Add(time.Duration(seq/1000) * time.Millisecond),
						Lat: 52 + float64(seq%9973)/1e5, Lon: 4 + float64(seq%7919)/1e5, Alt: 3, Speed: 8, Course: 90,
						HDOP: 0.9, Sats: 9, Fix: position.Fix3D, Acc: 4.5,
						Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse |
							position.FieldHDOP | position.FieldSats | position.FieldFix | position.FieldAcc}
					buf = p.AppendLineProtocol(buf, fmt.Sprintf("ceil-%04d", seq%1000))
				}
				if err := i.write(ctx, db, buf); err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
				written.Add(int64(batch))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return 0, written.Load(), *e
	}
	return float64(written.Load()) / elapsed.Seconds(), written.Load(), nil
}

// write posts line protocol (nanosecond times) to db.
func (i *influx) write(ctx context.Context, db string, lines []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", i.url+"/write?precision=ns&db="+url.QueryEscape(db), bytes.NewReader(lines))
	if err != nil {
		return err
	}
	resp, err := i.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("influx write: %s: %s", resp.Status, b)
	}
	return nil
}
