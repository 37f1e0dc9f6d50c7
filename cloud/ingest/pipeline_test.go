package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"trackgate/internal/position"
)

// waitTimeout bounds every wait for something the pipeline must do.
const waitTimeout = 5 * time.Second

// testNow is the pipeline's fixed clock in these tests.
var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// baseTime is the fix time of goodPayload(…, 0).
var baseTime = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{
		BatchWait:    5 * time.Millisecond,
		RetryMin:     time.Millisecond,
		RetryMax:     5 * time.Millisecond,
		DrainTimeout: 100 * time.Millisecond,
		Now:          func() time.Time { return testNow },
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// goodPayload is a valid single-position payload, distinct for each i.
func goodPayload(i int) string {
	return fmt.Sprintf(`{"time":%q,"lat":%d,"lon":4.5}`, baseTime.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i%90)
}

// goodLine is the line protocol goodPayload(i) must become for device.
func goodLine(device string, i int) string {
	return fmt.Sprintf("position,device=%s lat=%d,lon=4.5 %d\n", device, i%90, baseTime.Add(time.Duration(i)*time.Second).UnixNano())
}

func positionsTopic(device string) string { return "devices/" + device + "/positions" }

// fakeMsg is a Message that records its acknowledgements.
type fakeMsg struct {
	topic   string
	payload []byte
	acks    atomic.Int32
	once    sync.Once
	acked   chan struct{} // closed on the first Ack
	onAck   func()        // called first by each Ack, when set
}

func newMsg(topic, payload string) *fakeMsg {
	return &fakeMsg{topic: topic, payload: []byte(payload), acked: make(chan struct{})}
}

func (m *fakeMsg) Topic() string   { return m.topic }
func (m *fakeMsg) Payload() []byte { return m.payload }
func (m *fakeMsg) Ack() {
	if m.onAck != nil {
		m.onAck()
	}
	m.acks.Add(1)
	m.once.Do(func() { close(m.acked) })
}

func (m *fakeMsg) isAcked() bool { return m.acks.Load() > 0 }

// waitAcked fails the test unless every message is acknowledged within waitTimeout.
func waitAcked(t *testing.T, msgs ...*fakeMsg) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for i, m := range msgs {
		select {
		case <-m.acked:
		case <-deadline.C:
			t.Fatalf("message %d (%s %.40q) not acknowledged within %v", i, m.topic, m.payload, waitTimeout)
		}
	}
}

// checkAcks checks that each message was acknowledged exactly once (want) or
// never (!want).
func checkAcks(t *testing.T, want bool, msgs ...*fakeMsg) {
	t.Helper()
	n := int32(0)
	if want {
		n = 1
	}
	for i, m := range msgs {
		if got := m.acks.Load(); got != n {
			t.Errorf("message %d (%s %.40q) acknowledged %d times, want %d", i, m.topic, m.payload, got, n)
		}
	}
}

// permError is a Writer error with a Permanent method.
type permError struct{ perm bool }

func (e *permError) Error() string   { return fmt.Sprintf("fake write error (permanent=%v)", e.perm) }
func (e *permError) Permanent() bool { return e.perm }

// fakeWriter records every Write and answers with fn (success when nil).
type fakeWriter struct {
	fn     func(ctx context.Context, call int, lines []byte) error
	called chan []byte // each call's lines, sent without blocking when there is room

	mu     sync.Mutex
	calls  [][]byte // lines of every call, in order
	stored [][]byte // lines of the calls that succeeded, in order
}

func newWriter(fn func(ctx context.Context, call int, lines []byte) error) *fakeWriter {
	return &fakeWriter{fn: fn, called: make(chan []byte, 1000)}
}

// heldWriter returns a writer whose writes succeed once release is closed,
// and fail with the context's error if it ends first.
func heldWriter(release <-chan struct{}) *fakeWriter {
	return newWriter(func(ctx context.Context, _ int, _ []byte) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func (w *fakeWriter) Write(ctx context.Context, lines []byte) error {
	lines = bytes.Clone(lines)
	w.mu.Lock()
	w.calls = append(w.calls, lines)
	call := len(w.calls)
	w.mu.Unlock()
	select {
	case w.called <- lines:
	default:
	}
	var err error
	if w.fn != nil {
		err = w.fn(ctx, call, lines)
	}
	if err == nil {
		w.mu.Lock()
		w.stored = append(w.stored, lines)
		w.mu.Unlock()
	}
	return err
}

func (w *fakeWriter) snapshot() (calls, stored [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls), slices.Clone(w.stored)
}

// storedLines returns every line of every successful call, sorted.
func (w *fakeWriter) storedLines() []string {
	_, stored := w.snapshot()
	var lines []string
	for _, b := range stored {
		lines = append(lines, splitLines(b)...)
	}
	slices.Sort(lines)
	return lines
}

// waitCall returns the lines of the next Write call, failing after waitTimeout.
func (w *fakeWriter) waitCall(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-w.called:
		return b
	case <-time.After(waitTimeout):
		t.Fatalf("no Write call within %v", waitTimeout)
		return nil
	}
}

// splitLines splits line protocol into lines, each keeping its '\n'.
func splitLines(b []byte) []string {
	var lines []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, string(b))
			break
		}
		lines = append(lines, string(b[:i+1]))
		b = b[i+1:]
	}
	return lines
}

// fixture runs a Pipeline with fresh metrics.
type fixture struct {
	t      *testing.T
	p      *Pipeline
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

func start(t *testing.T, cfg Config, w Writer) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := NewPipeline(cfg, w, NewMetrics(reg))
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{t: t, p: p, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = p.Run(ctx)
	}()
	t.Cleanup(func() { f.stop() })
	return f
}

// stop cancels Run's context and waits for Run to return, reporting how long
// that took. Only the first call waits.
func (f *fixture) stop() time.Duration {
	f.t.Helper()
	var elapsed time.Duration
	f.once.Do(func() {
		t0 := time.Now()
		f.cancel()
		select {
		case <-f.done:
		case <-time.After(waitTimeout):
			f.t.Fatalf("Run did not return within %v of its context ending", waitTimeout)
		}
		elapsed = time.Since(t0)
		if f.err != nil {
			f.t.Errorf("Run returned %v", f.err)
		}
	})
	return elapsed
}

// handle calls Handle and fails the test if it does not return within waitTimeout.
func (f *fixture) handle(ctx context.Context, msgs ...*fakeMsg) {
	f.t.Helper()
	for i, m := range msgs {
		done := make(chan bool, 1)
		go func() { done <- f.p.Handle(ctx, m) }()
		select {
		case ok := <-done:
			if !ok {
				f.t.Fatalf("Handle(message %d) = false, want true", i)
			}
		case <-time.After(waitTimeout):
			f.t.Fatalf("Handle(message %d) blocked for %v", i, waitTimeout)
		}
	}
}

// deliver hands msgs to the pipeline, waits until each is acknowledged, stops
// the pipeline, and checks that each was acknowledged exactly once.
func (f *fixture) deliver(msgs ...*fakeMsg) {
	f.t.Helper()
	f.handle(f.t.Context(), msgs...)
	waitAcked(f.t, msgs...)
	f.stop()
	checkAcks(f.t, true, msgs...)
}

// metric returns the value of a counter or gauge, or the sample count of a
// histogram, registered with f.reg under name with the given label pairs.
func (f *fixture) metric(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	f.t.Fatalf("metric %s%v not registered", name, labels)
	return 0
}

func (f *fixture) checkMetric(want float64, name string, labels ...string) {
	f.t.Helper()
	if got := f.metric(name, labels...); got != want {
		f.t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

const (
	mReceived  = "trackgate_ingest_messages_received_total"
	mWritten   = "trackgate_ingest_positions_written_total"
	mRejected  = "trackgate_ingest_positions_rejected_total"
	mBatch     = "trackgate_ingest_batch_positions"
	mWriteSecs = "trackgate_ingest_write_duration_seconds"
	mWriteErrs = "trackgate_ingest_write_errors_total"
	mUnacked   = "trackgate_ingest_unacked_messages"
)

// allReasons is every reason label of the rejected counter.
func allReasons() []string {
	var rs []string
	for _, r := range position.Reasons {
		rs = append(rs, string(r))
	}
	return append(rs, ReasonTopic, ReasonStore)
}

// checkRejected checks the rejected counter for every reason: want[reason],
// zero when absent.
func (f *fixture) checkRejected(want map[string]float64) {
	f.t.Helper()
	for _, r := range allReasons() {
		f.checkMetric(want[r], mRejected, "reason", r)
	}
}

// TestPipelineWritesGoodMessages checks the exact line protocol of valid
// payloads and that a message is acknowledged only once the Write holding it
// has returned success.
func TestPipelineWritesGoodMessages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		topic   string
		payload string
		want    string
	}{
		{
			name:    "single object",
			topic:   "devices/van-1/positions",
			payload: `{"time":"2026-11-21T09:59:00Z","lat":52.37,"lon":4.89,"alt":12.3,"sats":9,"fix":"3d","extra":"ignored"}`,
			want:    "position,device=van-1 lat=52.37,lon=4.89,alt=12.3,sats=9i,fix=\"3d\" 1795255140000000000\n",
		},
		{
			name:    "array",
			topic:   "devices/alice:phone/positions",
			payload: `[{"time":"2026-11-21T09:59:00Z","lat":1,"lon":2},{"time":"2026-11-21T10:59:01.5+01:00","lat":-3.25,"lon":4,"speed":0}]`,
			want: "position,device=alice:phone lat=1,lon=2 1795255140000000000\n" +
				"position,device=alice:phone lat=-3.25,lon=4,speed=0 1795255141500000000\n",
		},
		{
			name:    "time up to MaxFuture ahead is accepted",
			topic:   "devices/358240051111110/positions",
			payload: `{"time":"2026-11-21T10:05:00Z","lat":0,"lon":0}`,
			want:    fmt.Sprintf("position,device=358240051111110 lat=0,lon=0 %d\n", testNow.Add(position.MaxFuture).UnixNano()),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			w := heldWriter(release)
			f := start(t, testConfig(), w)
			msg := newMsg(tc.topic, tc.payload)
			f.handle(t.Context(), msg)

			got := w.waitCall(t)
			if string(got) != tc.want {
				t.Errorf("Write got\n%q\nwant\n%q", got, tc.want)
			}
			// The Write is in progress: nothing may be acknowledged yet.
			if msg.isAcked() {
				t.Fatal("message acknowledged while its Write had not returned")
			}
			f.checkMetric(1, mUnacked)
			f.checkMetric(0, mWritten)

			close(release)
			waitAcked(t, msg)
			f.stop()

			checkAcks(t, true, msg)
			calls, _ := w.snapshot()
			if len(calls) != 1 {
				t.Errorf("%d Write calls, want 1", len(calls))
			}
			n := float64(len(splitLines([]byte(tc.want))))
			f.checkMetric(1, mReceived)
			f.checkMetric(n, mWritten)
			f.checkMetric(0, mUnacked)
			f.checkMetric(1, mBatch)
			f.checkMetric(1, mWriteSecs)
			f.checkMetric(0, mWriteErrs, "kind", "transient")
			f.checkMetric(0, mWriteErrs, "kind", "permanent")
			f.checkRejected(nil)
		})
	}
}

// TestPipelineRejectsInvalid checks that invalid payloads are never written,
// are counted by reason and are still acknowledged, and that the good
// messages around them are written.
func TestPipelineRejectsInvalid(t *testing.T) {
	var big strings.Builder
	big.WriteString("[")
	for i := 0; big.Len() <= position.MaxPayload; i++ {
		if i > 0 {
			big.WriteString(",")
		}
		big.WriteString(goodPayload(i))
	}
	big.WriteString("]")

	for _, tc := range []struct {
		name      string
		topic     string
		payload   string
		wantLines []string // written for the bad message itself
		rejected  map[string]float64
	}{
		{name: "not JSON", payload: `lat=1,lon=2`, rejected: map[string]float64{"syntax": 1}},
		{name: "truncated JSON", payload: `{"time":"2026-11-21T09:00:00Z","lat":1`, rejected: map[string]float64{"syntax": 1}},
		{name: "empty payload", payload: ``, rejected: map[string]float64{"syntax": 1}},
		{name: "lat 91", payload: `{"time":"2026-11-21T09:00:00Z","lat":91,"lon":2}`, rejected: map[string]float64{"range": 1}},
		{name: "time in 2090", payload: `{"time":"2090-01-01T00:00:00Z","lat":1,"lon":2}`, rejected: map[string]float64{"future": 1}},
		{name: "time before 2000", payload: `{"time":"1999-12-31T23:59:59Z","lat":1,"lon":2}`, rejected: map[string]float64{"past": 1}},
		{name: "missing lon", payload: `{"time":"2026-11-21T09:00:00Z","lat":1}`, rejected: map[string]float64{"missing": 1}},
		{name: "lat as string", payload: `{"time":"2026-11-21T09:00:00Z","lat":"1","lon":2}`, rejected: map[string]float64{"type": 1}},
		{name: "payload over 64 KiB", payload: big.String(), rejected: map[string]float64{"too_large": 1}},
		{name: "topic with too many levels", topic: "devices/a/b/c", payload: goodPayload(50), rejected: map[string]float64{"topic": 1}},
		{name: "status topic", topic: "devices/x/status", payload: goodPayload(50), rejected: map[string]float64{"topic": 1}},
		{name: "not a devices topic", topic: "owntracks/alice/phone", payload: goodPayload(50), rejected: map[string]float64{"topic": 1}},
		{name: "device id with a wildcard", topic: "devices/+/positions", payload: goodPayload(50), rejected: map[string]float64{"topic": 1}},
		{
			name:      "array keeps its good elements",
			payload:   `[` + goodPayload(50) + `,{"time":"2026-11-21T09:00:00Z","lat":91,"lon":2},7,` + goodPayload(51) + `]`,
			wantLines: []string{goodLine("bad-1", 50), goodLine("bad-1", 51)},
			rejected:  map[string]float64{"range": 1, "type": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.topic == "" {
				tc.topic = positionsTopic("bad-1")
			}
			w := newWriter(nil)
			f := start(t, testConfig(), w)
			before := newMsg(positionsTopic("good-1"), goodPayload(1))
			bad := newMsg(tc.topic, tc.payload)
			after := newMsg(positionsTopic("good-2"), goodPayload(2))
			f.handle(t.Context(), before, bad, after)
			waitAcked(t, before, bad, after)
			f.stop()

			checkAcks(t, true, before, bad, after)
			want := append([]string{goodLine("good-1", 1), goodLine("good-2", 2)}, tc.wantLines...)
			slices.Sort(want)
			if got := w.storedLines(); !slices.Equal(got, want) {
				t.Errorf("written lines:\n%q\nwant:\n%q", got, want)
			}
			f.checkRejected(tc.rejected)
			f.checkMetric(3, mReceived)
			f.checkMetric(float64(len(want)), mWritten)
			f.checkMetric(0, mUnacked)
		})
	}

	t.Run("only invalid messages", func(t *testing.T) {
		w := newWriter(nil)
		f := start(t, testConfig(), w)
		msgs := []*fakeMsg{newMsg(positionsTopic("a"), `nope`), newMsg("devices/a/status", `online`)}
		f.deliver(msgs...)
		if calls, _ := w.snapshot(); len(calls) != 0 {
			t.Errorf("%d Write calls for a batch without valid positions, want none: %q", len(calls), calls)
		}
		f.checkRejected(map[string]float64{"syntax": 1, "topic": 1})
		f.checkMetric(0, mBatch)
		f.checkMetric(0, mUnacked)
	})
}

// TestPipelineRetriesTransientErrors checks that a failed Write is retried
// until it succeeds, and that nothing is acknowledged before.
func TestPipelineRetriesTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		err      error
	}{
		{"plain error once", 1, errors.New("connection refused")},
		{"plain error 4 times", 4, errors.New("503 service unavailable")},
		{"Permanent() false", 2, &permError{perm: false}},
		{"wrapped Permanent() false", 2, fmt.Errorf("write: %w", &permError{perm: false})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := []*fakeMsg{
				newMsg(positionsTopic("van-1"), goodPayload(1)),
				newMsg(positionsTopic("van-2"), goodPayload(2)),
				newMsg(positionsTopic("van-3"), goodPayload(3)),
			}
			var ackedEarly atomic.Int32
			w := newWriter(func(_ context.Context, call int, _ []byte) error {
				if call > tc.failures {
					return nil
				}
				for _, m := range msgs {
					if m.isAcked() {
						ackedEarly.Add(1)
					}
				}
				return tc.err
			})
			cfg := testConfig()
			cfg.Writers = 1
			cfg.BatchSize = len(msgs) // one batch, flushed by count
			cfg.BatchWait = time.Hour
			f := start(t, cfg, w)
			f.handle(t.Context(), msgs...)
			waitAcked(t, msgs...)
			f.stop()

			if n := ackedEarly.Load(); n != 0 {
				t.Errorf("%d acknowledgements seen during failed Writes, want 0", n)
			}
			checkAcks(t, true, msgs...)
			calls, stored := w.snapshot()
			if len(calls) != tc.failures+1 || len(stored) != 1 {
				t.Fatalf("%d Write calls (%d successful), want %d (1)", len(calls), len(stored), tc.failures+1)
			}
			want := goodLine("van-1", 1) + goodLine("van-2", 2) + goodLine("van-3", 3)
			for i, c := range calls {
				if string(c) != want {
					t.Errorf("Write call %d: %q, want the same batch %q", i+1, c, want)
				}
			}
			f.checkMetric(float64(tc.failures), mWriteErrs, "kind", "transient")
			f.checkMetric(0, mWriteErrs, "kind", "permanent")
			f.checkMetric(3, mWritten)
			f.checkMetric(1, mBatch)
			f.checkMetric(float64(tc.failures+1), mWriteSecs)
			f.checkMetric(0, mUnacked)
			f.checkRejected(nil)
		})
	}
}

// TestPipelineIsolatesPermanentErrors checks that a point the store refuses
// for good is dropped alone while the rest of its batch is written.
func TestPipelineIsolatesPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		devices []string // one single-position message each, in order
		wrap    bool
	}{
		{"9 good then 1 bad", []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "bad"}, false},
		{"bad first", []string{"bad", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9"}, false},
		{"bad in the middle, wrapped error", []string{"g0", "g1", "g2", "g3", "bad", "g5", "g6", "g7", "g8", "g9"}, true},
		{"two bad", []string{"g0", "bad", "g2", "g3", "g4", "g5", "g6", "bad", "g8"}, false},
		{"all bad", []string{"bad", "bad", "bad"}, false},
		{"single bad", []string{"bad"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var permCalls atomic.Int32
			w := newWriter(func(_ context.Context, _ int, lines []byte) error {
				if !bytes.Contains(lines, []byte("device=bad ")) {
					return nil
				}
				permCalls.Add(1)
				var err error = &permError{perm: true}
				if tc.wrap {
					err = fmt.Errorf("influx: 422: %w", err)
				}
				return err
			})
			cfg := testConfig()
			cfg.BatchSize = len(tc.devices) // one batch, flushed by count
			cfg.BatchWait = time.Hour
			f := start(t, cfg, w)

			var msgs []*fakeMsg
			var want []string
			nbad := 0
			for i, d := range tc.devices {
				msgs = append(msgs, newMsg(positionsTopic(d), goodPayload(i)))
				if d == "bad" {
					nbad++
				} else {
					want = append(want, goodLine(d, i))
				}
			}
			slices.Sort(want)
			f.deliver(msgs...)
			if got := w.storedLines(); !slices.Equal(got, want) {
				t.Errorf("written lines (each must appear once):\n%q\nwant:\n%q", got, want)
			}
			f.checkMetric(float64(len(want)), mWritten)
			f.checkRejected(map[string]float64{ReasonStore: float64(nbad)})
			f.checkMetric(float64(permCalls.Load()), mWriteErrs, "kind", "permanent")
			f.checkMetric(0, mWriteErrs, "kind", "transient")
			f.checkMetric(1, mBatch)
			f.checkMetric(0, mUnacked)
		})
	}
}

// TestPipelineShutdownDuringOutage checks that Run gives up on an unreachable
// store after DrainTimeout, leaving the messages unacknowledged for
// redelivery, and that what it holds is still written when the store works.
func TestPipelineShutdownDuringOutage(t *testing.T) {
	failing := func(context.Context, int, []byte) error { return errors.New("connection refused") }
	hanging := func(ctx context.Context, _ int, _ []byte) error { <-ctx.Done(); return ctx.Err() }
	for _, tc := range []struct {
		name      string
		write     func(context.Context, int, []byte) error
		batchSize int
		batchWait time.Duration
		inFlight  bool // wait for the first Write before cancelling
		wantAcked bool
	}{
		{name: "failing store, batch in flight", write: failing, batchSize: 100, batchWait: 5 * time.Millisecond, inFlight: true},
		{name: "failing store, batch not yet flushed", write: failing, batchSize: 100, batchWait: time.Hour},
		{name: "failing store, batches queued behind", write: failing, batchSize: 1, batchWait: time.Hour, inFlight: true},
		{name: "hanging store", write: hanging, batchSize: 100, batchWait: 5 * time.Millisecond, inFlight: true},
		{name: "working store, batch not yet flushed", write: nil, batchSize: 100, batchWait: time.Hour, wantAcked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriter(tc.write)
			cfg := testConfig()
			cfg.Writers = 1
			cfg.BatchSize = tc.batchSize
			cfg.BatchWait = tc.batchWait
			cfg.DrainTimeout = 100 * time.Millisecond
			f := start(t, cfg, w)
			msgs := []*fakeMsg{
				newMsg(positionsTopic("van-1"), goodPayload(1)),
				newMsg(positionsTopic("van-2"), goodPayload(2)),
				newMsg(positionsTopic("van-3"), goodPayload(3)),
			}
			f.handle(t.Context(), msgs...)
			if tc.inFlight {
				w.waitCall(t)
			}
			elapsed := f.stop()

			if limit := cfg.DrainTimeout + 2*time.Second; elapsed > limit {
				t.Errorf("Run returned %v after its context ended, want at most DrainTimeout+margin = %v", elapsed, limit)
			}
			checkAcks(t, tc.wantAcked, msgs...)
			f.checkMetric(3, mReceived)
			f.checkMetric(0, mUnacked)
			if tc.wantAcked {
				f.checkMetric(3, mWritten)
				return
			}
			if elapsed < cfg.DrainTimeout {
				t.Errorf("Run returned %v after its context ended, before DrainTimeout %v: it did not keep trying", elapsed, cfg.DrainTimeout)
			}
			f.checkMetric(0, mWritten)
			if calls, _ := w.snapshot(); len(calls) == 0 {
				t.Error("no Write was attempted")
			}
			if got := f.metric(mWriteErrs, "kind", "transient"); got < 1 {
				t.Errorf("write_errors{kind=transient} = %v, want at least 1", got)
			}
			f.checkRejected(nil)
		})
	}
}

// TestPipelineBackpressure checks that Handle blocks while MaxUnacked
// messages are unacknowledged, until one is, or until its context ends.
func TestPipelineBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cancelHandle bool
	}{
		{"unblocked by an acknowledgement", false},
		{"unblocked by its context", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			w := heldWriter(release)
			cfg := testConfig()
			cfg.MaxUnacked = 3
			cfg.BatchSize = 1 // a batch per message
			cfg.Writers = 1
			f := start(t, cfg, w)
			msgs := []*fakeMsg{
				newMsg(positionsTopic("van-1"), goodPayload(1)),
				newMsg(positionsTopic("van-2"), goodPayload(2)),
				newMsg(positionsTopic("van-3"), goodPayload(3)),
				newMsg(positionsTopic("van-4"), goodPayload(4)),
			}
			f.handle(t.Context(), msgs[:3]...)
			if got := w.waitCall(t); string(got) != goodLine("van-1", 1) {
				t.Fatalf("first Write %q, want the first message's batch", got)
			}

			hctx, hcancel := context.WithCancel(t.Context())
			defer hcancel()
			result := make(chan bool, 1)
			go func() { result <- f.p.Handle(hctx, msgs[3]) }()
			// A non-event cannot be waited for; give Handle a moment to
			// (wrongly) return.
			select {
			case ok := <-result:
				t.Fatalf("4th Handle returned %v with 3 messages unacknowledged and MaxUnacked 3; want it to block", ok)
			case <-time.After(50 * time.Millisecond):
			}
			f.checkMetric(3, mUnacked)

			if tc.cancelHandle {
				hcancel()
				select {
				case ok := <-result:
					if ok {
						t.Fatal("4th Handle returned true after its context ended, want false")
					}
				case <-time.After(waitTimeout):
					t.Fatalf("4th Handle still blocked %v after its context ended", waitTimeout)
				}
				checkAcks(t, false, msgs...)
				f.checkMetric(3, mUnacked)
				f.checkMetric(3, mReceived)
				for range 3 {
					releaseOne(t, release)
				}
				waitAcked(t, msgs[:3]...)
				f.stop()
				checkAcks(t, true, msgs[:3]...)
				checkAcks(t, false, msgs[3])
				f.checkMetric(3, mWritten)
				f.checkMetric(3, mReceived)
				f.checkMetric(0, mUnacked)
				return
			}

			releaseOne(t, release) // the first batch is stored
			waitAcked(t, msgs[0])
			select {
			case ok := <-result:
				if !ok {
					t.Fatal("4th Handle returned false, want true")
				}
			case <-time.After(waitTimeout):
				t.Fatalf("4th Handle still blocked %v after the first message was acknowledged", waitTimeout)
			}
			checkAcks(t, false, msgs[1:]...)
			for range 3 {
				releaseOne(t, release)
			}
			waitAcked(t, msgs...)
			f.stop()
			checkAcks(t, true, msgs...)
			f.checkMetric(4, mWritten)
			f.checkMetric(4, mReceived)
			f.checkMetric(0, mUnacked)
		})
	}
}

// releaseOne lets one blocked Write succeed.
func releaseOne(t *testing.T, release chan<- struct{}) {
	t.Helper()
	select {
	case release <- struct{}{}:
	case <-time.After(waitTimeout):
		t.Fatalf("no Write waiting to be released within %v", waitTimeout)
	}
}

// TestPipelineBatching checks that batches are bounded by BatchSize and
// flushed after BatchWait.
func TestPipelineBatching(t *testing.T) {
	for _, tc := range []struct {
		name      string
		batchSize int
		batchWait time.Duration
		messages  int
		want      []int // exact batch sizes in order, when the timer cannot split batches
	}{
		{name: "by count only", batchSize: 10, batchWait: time.Hour, messages: 20, want: []int{10, 10}},
		{name: "by count and time", batchSize: 10, batchWait: 5 * time.Millisecond, messages: 25},
		{name: "by time only", batchSize: 1000, batchWait: 5 * time.Millisecond, messages: 3},
		{name: "batch size 1", batchSize: 1, batchWait: time.Hour, messages: 5, want: []int{1, 1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriter(nil)
			cfg := testConfig()
			cfg.BatchSize = tc.batchSize
			cfg.BatchWait = tc.batchWait
			cfg.Writers = 1 // batches are written in order
			f := start(t, cfg, w)
			var msgs []*fakeMsg
			var want []string
			for i := range tc.messages {
				d := fmt.Sprintf("dev-%d", i)
				msgs = append(msgs, newMsg(positionsTopic(d), goodPayload(i)))
				want = append(want, goodLine(d, i))
			}
			slices.Sort(want)
			f.deliver(msgs...)
			calls, _ := w.snapshot()
			var sizes []int
			for _, c := range calls {
				sizes = append(sizes, len(splitLines(c)))
			}
			for i, n := range sizes {
				if n > tc.batchSize {
					t.Errorf("Write call %d has %d positions, more than BatchSize %d", i+1, n, tc.batchSize)
				}
			}
			if tc.want != nil && !slices.Equal(sizes, tc.want) {
				t.Errorf("batch sizes %v, want %v", sizes, tc.want)
			}
			if got := w.storedLines(); !slices.Equal(got, want) {
				t.Errorf("written lines:\n%q\nwant each of:\n%q", got, want)
			}
			f.checkMetric(float64(len(calls)), mBatch)
			f.checkMetric(float64(tc.messages), mWritten)
			f.checkMetric(0, mUnacked)
		})
	}
}
