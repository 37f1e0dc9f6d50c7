package uplink

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/gateway/spool"
	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

// fakeJWT is a token the forwarder can read its subject and expiry from;
// the test brokers accept every client, so it is never verified.
func fakeJWT(sub string, exp time.Time) string {
	body, _ := json.Marshal(map[string]any{"sub": sub, "iat": time.Now().Unix(), "exp": exp.Unix()})
	return "e30." + base64.RawURLEncoding.EncodeToString(body) + ".c2ln"
}

// received records what an upstream broker accepted, position by position.
type received struct {
	mu       sync.Mutex
	messages int
	byDevice map[string][]time.Time
}

func (r *received) tap(t string, payload []byte, _ bool) error {
	ps, errs := position.Decode(payload, nil)
	if len(errs) > 0 {
		return fmt.Errorf("upstream got a bad payload on %s: %v", t, errs[0])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages++
	for _, p := range ps {
		r.byDevice[t] = append(r.byDevice[t], p.Time)
	}
	return nil
}

// upstream runs an allow-all broker on addr whose tap records into rec.
func upstream(t *testing.T, addr string, rec *received) *brokertest.Broker {
	t.Helper()
	return brokertest.Start(t, broker.Config{TCP: addr, Tap: rec.tap})
}

func positionJSON(tm time.Time, i int) []byte {
	p := position.Position{Time: tm, Lat: 52 + float64(i)*1e-5, Lon: 4.9, Set: position.FieldTime | position.FieldLat | position.FieldLon}
	return p.AppendJSON(nil)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardThroughOutage queues a backlog, forwards it, cuts the
// upstream broker mid-stream and brings it back: every position arrives,
// each device's in order, and the backlog went in batches.
func TestForwardThroughOutage(t *testing.T) {
	dir := t.TempDir()
	q, err := spool.Open(spool.Config{Dir: dir, Sync: spool.SyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const devices, backlog = 10, 2000
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			for d := range devices {
				if err := q.Append(fmt.Sprintf("devices/dev%d/positions", d), positionJSON(base.Add(time.Duration(i)*100*time.Millisecond), i), false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	appendN(0, backlog)

	addr := testenv.FreeAddr(t)
	rec := &received{byDevice: map[string][]time.Time{}}
	up := upstream(t, addr, rec)
	f, err := New(Config{URL: "mqtt://" + addr, Spool: q, Dir: dir, Logger: quiet,
		Token: func(context.Context, bool) (string, error) { return fakeJWT("usr:ann", time.Now().Add(time.Hour)), nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "the backlog to be sent", time.Minute, func() bool { return q.Stats().Items == 0 })
	if st := f.Status(); st.State != StateConnected || st.Positions != devices*backlog {
		t.Fatalf("status after the backlog: %+v", st)
	}
	if rec.messages >= devices*backlog/10 {
		t.Errorf("%d messages for %d positions: not batched", rec.messages, devices*backlog)
	}

	// Live positions while the upstream broker goes away and comes back.
	up.Stop()
	appendN(backlog, 500)
	waitFor(t, "the forwarder to notice", 30*time.Second, func() bool { return f.Status().State != StateConnected })
	if st := q.Stats(); st.Items != devices*500 {
		t.Fatalf("queued during the outage: %d, want %d", st.Items, devices*500)
	}
	upstream(t, addr, rec)
	appendN(backlog+500, 500)
	waitFor(t, "the rest to be sent", time.Minute, func() bool { return q.Stats().Items == 0 })

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for d := range devices {
		got := rec.byDevice[fmt.Sprintf("devices/dev%d/positions", d)]
		if len(got) < backlog+1000 {
			t.Errorf("dev%d: %d positions upstream, want %d", d, len(got), backlog+1000)
			continue
		}
		// Each time at least once; after the outage a resent one may
		// repeat, but never out of order among first arrivals.
		seen := map[time.Time]bool{}
		last := time.Time{}
		for _, tm := range got {
			if seen[tm] {
				continue
			}
			if tm.Before(last) {
				t.Fatalf("dev%d: %s arrived after %s", d, tm, last)
			}
			seen[tm], last = true, tm
		}
		if len(seen) != backlog+1000 {
			t.Errorf("dev%d: %d distinct positions, want %d", d, len(seen), backlog+1000)
		}
	}
}
