package ingest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const mOnStored = "trackgate_ingest_on_stored_positions"

// hook is an OnStored that records the positions it was given and checks
// that its calls never overlap and that no message is acknowledged before a
// call holding its position returned. Its messages (see msg) carry one
// position each, of a device of their own.
type hook struct {
	t *testing.T
	// hold, when set, runs at the start of the first call, with release.
	hold    func(ctx context.Context, release <-chan struct{})
	release chan struct{}
	started chan int // each call's number, sent without blocking when there is room

	running atomic.Int32
	mu      sync.Mutex
	sizes   []int          // positions of each call, in order
	given   map[string]int // storedKey → calls that returned with that position
}

func newHook(t *testing.T, hold func(ctx context.Context, release <-chan struct{})) *hook {
	return &hook{t: t, hold: hold, release: make(chan struct{}), started: make(chan int, 1000), given: map[string]int{}}
}

func storedKey(device string, at time.Time) string { return device + " " + at.Format(time.RFC3339) }

// OnStored is the hook, for Config.OnStored.
func (h *hook) OnStored(ctx context.Context, batch []Stored) {
	if h.running.Add(1) > 1 {
		h.t.Error("OnStored called while a call is running")
	}
	defer h.running.Add(-1)
	h.mu.Lock()
	h.sizes = append(h.sizes, len(batch))
	call := len(h.sizes)
	h.mu.Unlock()
	select {
	case h.started <- call:
	default:
	}
	if call == 1 && h.hold != nil {
		h.hold(ctx, h.release)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range batch {
		h.given[storedKey(s.Device, s.Time)]++
	}
}

// msg returns a message holding goodPayload(i) for device dev-i; its Ack
// fails the test unless an OnStored call holding that position returned.
func (h *hook) msg(i int) *fakeMsg {
	device := fmt.Sprintf("dev-%d", i)
	m := newMsg(positionsTopic(device), goodPayload(i))
	m.onAck = func() {
		if h.timesGiven(i) == 0 {
			h.t.Errorf("message %d acknowledged before OnStored returned with its position", i)
		}
	}
	return m
}

// timesGiven is how many OnStored calls returned with the position of msg(i).
func (h *hook) timesGiven(i int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.given[storedKey(fmt.Sprintf("dev-%d", i), baseTime.Add(time.Duration(i)*time.Second))]
}

func (h *hook) calls() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

// waitStarted waits for OnStored call number n to start.
func (h *hook) waitStarted(t *testing.T, n int) {
	t.Helper()
	for {
		select {
		case call := <-h.started:
			if call >= n {
				return
			}
		case <-time.After(waitTimeout):
			t.Fatalf("OnStored call %d not started within %v", n, waitTimeout)
		}
	}
}

// waitFor fails the test unless cond holds within waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// writesDone returns a condition for waitFor: w stored n writes or more.
func writesDone(w *fakeWriter, n int) func() bool {
	return func() bool {
		_, stored := w.snapshot()
		return len(stored) >= n
	}
}

// TestPipelineCoalescesOnStored checks that OnStored is called once for many
// written batches, at most once per StoredWait unless StoredMax positions or
// half of MaxUnacked messages wait, and that every message is acknowledged
// once, after its position went to OnStored.
func TestPipelineCoalescesOnStored(t *testing.T) {
	for _, tc := range []struct {
		name       string
		messages   int           // after a first one on its own
		pace       time.Duration // between messages
		storedWait time.Duration
		storedMax  int
		maxUnacked int
		full       int // positions of every call after the first, when a cap ends them
	}{
		{name: "by time", messages: 300, pace: time.Millisecond, storedWait: 50 * time.Millisecond},
		{name: "by StoredMax", messages: 90, storedWait: time.Hour, storedMax: 10, full: 10},
		{name: "by half of MaxUnacked", messages: 88, storedWait: time.Hour, maxUnacked: 16, full: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, nil)
			w := newWriter(nil)
			cfg := testConfig()
			cfg.BatchSize = 1 // a batch per message
			cfg.BatchWait = time.Hour
			cfg.StoredWait = tc.storedWait
			cfg.StoredMax = tc.storedMax
			cfg.MaxUnacked = tc.maxUnacked
			cfg.OnStored = h.OnStored
			f := start(t, cfg, w)
			var msgs []*fakeMsg
			for i := range tc.messages + 1 {
				msgs = append(msgs, h.msg(i))
			}

			t0 := time.Now()
			// The first call after a quiet time goes at once, with the first
			// message alone.
			f.handle(t.Context(), msgs[0])
			waitAcked(t, msgs[0])
			for _, m := range msgs[1:] {
				f.handle(t.Context(), m)
				time.Sleep(tc.pace)
			}
			waitAcked(t, msgs...)
			elapsed := time.Since(t0)
			f.stop()

			checkAcks(t, true, msgs...)
			for i := range msgs {
				if n := h.timesGiven(i); n != 1 {
					t.Errorf("position of message %d given to OnStored %d times, want 1", i, n)
				}
			}
			calls := h.calls()
			if calls[0] != 1 {
				t.Errorf("first OnStored call had %d positions, want 1", calls[0])
			}
			if tc.full > 0 {
				for i, n := range calls[1:] {
					if n != tc.full {
						t.Errorf("OnStored call %d had %d positions, want %d: %v", i+2, n, tc.full, calls)
					}
				}
			} else {
				// Without a cap, calls start StoredWait apart at least, and
				// a stream longer than that takes several.
				if limit := 1 + int(elapsed/tc.storedWait); len(calls) > limit {
					t.Errorf("%d OnStored calls in %v, want at most %d with StoredWait %v: %v", len(calls), elapsed, limit, tc.storedWait, calls)
				}
				if len(calls) < 3 {
					t.Errorf("%d OnStored calls in %v with StoredWait %v, want a few: %v", len(calls), elapsed, tc.storedWait, calls)
				}
			}
			writes, _ := w.snapshot()
			if len(writes) != len(msgs) {
				t.Errorf("%d writes, want one per message: %d", len(writes), len(msgs))
			}
			if len(calls)*4 > len(writes) {
				t.Errorf("%d OnStored calls for %d written batches, want far fewer: %v", len(calls), len(writes), calls)
			}
			f.checkMetric(float64(len(calls)), mOnStored)
			f.checkMetric(float64(len(msgs)), mWritten)
			f.checkMetric(0, mUnacked)
		})
	}
}

// storedScene is a pipeline with an OnStored hook, brought to the state a
// shutdown test cancels it in.
type storedScene struct {
	f      *fixture
	h      *hook
	w      *fakeWriter
	writes chan struct{} // a send lets one Write succeed, for a held writer
	msgs   []*fakeMsg
}

// TestPipelineOnStoredShutdown checks that after its context ends Run passes
// the written batches it holds to OnStored and acknowledges them, leaves the
// others unacknowledged, and never acknowledges a message whose position did
// not go to OnStored.
func TestPipelineOnStoredShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heldWrite bool // writes wait for a send on writes, else succeed at once
		hold      func(ctx context.Context, release <-chan struct{})
		// before brings the pipeline to the state of the test; the scene's
		// pipeline is cancelled after it returns.
		before    func(t *testing.T, s *storedScene)
		wantAcked []bool // per message
		slow      bool   // Run must wait for DrainTimeout
	}{
		{
			name: "written batches waiting for StoredWait",
			before: func(t *testing.T, s *storedScene) {
				s.f.handle(t.Context(), s.msgs[0])
				waitAcked(t, s.msgs[0])
				s.f.handle(t.Context(), s.msgs[1:]...)
				waitFor(t, "written", writesDone(s.w, len(s.msgs)))
			},
			wantAcked: []bool{true, true, true, true},
		},
		{
			name:      "a write in flight",
			heldWrite: true,
			before: func(t *testing.T, s *storedScene) {
				s.f.handle(t.Context(), s.msgs[0])
				releaseOne(t, s.writes)
				waitAcked(t, s.msgs[0])
				s.f.handle(t.Context(), s.msgs[1])
				releaseOne(t, s.writes)
				waitFor(t, "written", writesDone(s.w, 2))
				s.f.handle(t.Context(), s.msgs[2:]...)
				waitFor(t, "writing", func() bool { calls, _ := s.w.snapshot(); return len(calls) == 3 })
			},
			wantAcked: []bool{true, true, false, false},
			slow:      true,
		},
		{
			name: "OnStored running, returning within DrainTimeout",
			hold: func(_ context.Context, release <-chan struct{}) { <-release },
			before: func(t *testing.T, s *storedScene) {
				s.f.handle(t.Context(), s.msgs[0])
				s.h.waitStarted(t, 1)
				s.f.handle(t.Context(), s.msgs[1:]...)
				waitFor(t, "written", writesDone(s.w, len(s.msgs)))
				s.f.cancel()
				close(s.h.release)
			},
			wantAcked: []bool{true, true, true, true},
		},
		{
			name: "OnStored running past DrainTimeout",
			hold: func(ctx context.Context, _ <-chan struct{}) { <-ctx.Done() },
			before: func(t *testing.T, s *storedScene) {
				s.f.handle(t.Context(), s.msgs[0])
				s.h.waitStarted(t, 1)
				s.f.handle(t.Context(), s.msgs[1:]...)
				waitFor(t, "written", writesDone(s.w, len(s.msgs)))
			},
			wantAcked: []bool{true, false, false, false},
			slow:      true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &storedScene{h: newHook(t, tc.hold), writes: make(chan struct{})}
			s.w = newWriter(nil)
			if tc.heldWrite {
				s.w = heldWriter(s.writes)
			}
			cfg := testConfig()
			cfg.BatchSize = 1 // a batch per message
			cfg.BatchWait = time.Hour
			cfg.Writers = 1
			cfg.StoredWait = time.Hour
			cfg.DrainTimeout = 300 * time.Millisecond
			cfg.OnStored = s.h.OnStored
			s.f = start(t, cfg, s.w)
			for i := range tc.wantAcked {
				s.msgs = append(s.msgs, s.h.msg(i))
			}
			tc.before(t, s)
			elapsed := s.f.stop()

			if tc.slow && elapsed < cfg.DrainTimeout {
				t.Errorf("Run returned %v after its context ended, before DrainTimeout %v", elapsed, cfg.DrainTimeout)
			}
			if !tc.slow && elapsed >= cfg.DrainTimeout {
				t.Errorf("Run returned %v after its context ended, want before DrainTimeout %v", elapsed, cfg.DrainTimeout)
			}
			for i, m := range s.msgs {
				checkAcks(t, tc.wantAcked[i], m)
				given := 0
				if tc.wantAcked[i] {
					given = 1
				}
				if n := s.h.timesGiven(i); n != given {
					t.Errorf("position of message %d given to OnStored %d times, want %d", i, n, given)
				}
			}
			s.f.checkMetric(0, mUnacked)
		})
	}
}
