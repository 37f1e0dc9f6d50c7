package uplink

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"trackgate/gateway/spool"
)

// Drain states: a drain is the backlog of an outage being sent, tracked as a
// sync job.
const (
	DrainIdle        = "idle"        // no backlog
	DrainRunning     = "running"     // a backlog is being sent
	DrainCompleted   = "completed"   // the last backlog was sent
	DrainInterrupted = "interrupted" // the connection went while sending a backlog
)

// drainStart and drainEnd are the backlog ages that start and end a drain:
// live traffic is never older than a moment.
const (
	drainStart = 2 * time.Second
	drainEnd   = time.Second
)

// drain is the current or last drain.
type drain struct {
	state      string
	started    time.Time
	ended      time.Time
	ackedStart uint64 // the forwarder's acked count when it started
	atStart    uint64 // backlog items when it started
	processed  uint64
	remaining  uint64
}

// interrupt marks a running drain interrupted; f.mu held.
func (d *drain) interrupt(now time.Time) {
	if d.state == DrainRunning {
		d.state, d.ended = DrainInterrupted, now
	}
}

// Drain is the state of the current (or last) backlog drain, as a sync job.
type Drain struct {
	State string `json:"state"`
	// Started and Ended bound it (Ended zero while running).
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// TotalItems is the backlog when it started plus what was queued
	// since; ProcessedItems how many of them are delivered.
	TotalItems     uint64  `json:"total_items"`
	ProcessedItems uint64  `json:"processed_items"`
	Progress       float64 `json:"progress"` // percent
	// Rate is the delivery rate now, entries per second over the last 5 s;
	// AverageRate over the whole drain.
	Rate        float64 `json:"rate_per_second"`
	AverageRate float64 `json:"average_rate_per_second"`
	// ETASeconds estimates the time to an empty backlog at Rate, net of
	// what is queued meanwhile (-1 when it is not shrinking).
	ETASeconds float64 `json:"eta_seconds"`
}

// Status is the forwarder's state for the gateway's /status.
type Status struct {
	URL       string     `json:"url"`
	State     string     `json:"state"`
	Error     string     `json:"error,omitempty"`
	Since     time.Time  `json:"since"`
	Connects  uint64     `json:"connects"`
	LastAck   *time.Time `json:"last_ack,omitempty"`
	Sent      uint64     `json:"messages_sent"`
	Acked     uint64     `json:"entries_acked"`
	Positions uint64     `json:"positions_acked"`
	Retried   uint64     `json:"publishes_retried"`
	// Refused counts entries the upstream broker refused for good, by
	// reason (kept in refused.jsonl).
	Refused map[string]uint64 `json:"refused,omitempty"`
	Backlog Backlog           `json:"backlog"`
	Drain   Drain             `json:"drain"`
}

// Backlog is the queue's content.
type Backlog struct {
	Items            uint64     `json:"items"`
	Bytes            int64      `json:"bytes"`
	Oldest           *time.Time `json:"oldest,omitempty"`
	OldestAgeSeconds float64    `json:"oldest_age_seconds"`
	spool.Stats      `json:"queue"`
}

// Status returns the forwarder's state.
func (f *Forwarder) Status() Status {
	now := time.Now()
	qs := f.cfg.Spool.Stats()
	f.mu.Lock()
	st := Status{URL: f.url.Redacted(), State: f.state, Error: f.lastErr, Since: f.since, Connects: f.connects}
	if !f.lastAck.IsZero() {
		t := f.lastAck
		st.LastAck = &t
	}
	d, appendRate := f.drain, f.appendRate
	f.mu.Unlock()
	st.Sent, st.Acked, st.Positions, st.Retried = f.sent.Load(), f.acked.Load(), f.positions.Load(), f.retried.Load()
	f.refused.Range(func(k, v any) bool {
		if st.Refused == nil {
			st.Refused = map[string]uint64{}
		}
		st.Refused[k.(string)] = v.(interface{ Load() uint64 }).Load()
		return true
	})
	st.Backlog = Backlog{Items: qs.Items, Bytes: qs.Bytes, Stats: qs}
	if !qs.Oldest.IsZero() {
		t := qs.Oldest
		st.Backlog.Oldest = &t
		st.Backlog.OldestAgeSeconds = now.Sub(t).Seconds()
	}
	st.Drain = Drain{State: cmpState(d.state), TotalItems: d.processed + d.remaining, ProcessedItems: d.processed, ETASeconds: -1}
	if !d.started.IsZero() {
		t := d.started
		st.Drain.Started = &t
		end := now
		if !d.ended.IsZero() {
			e := d.ended
			st.Drain.Ended, end = &e, e
		}
		if secs := end.Sub(d.started).Seconds(); secs > 0 {
			st.Drain.AverageRate = float64(d.processed) / secs
		}
	}
	if st.Drain.TotalItems > 0 {
		st.Drain.Progress = 100 * float64(d.processed) / float64(st.Drain.TotalItems)
	}
	st.Drain.Rate = f.rate.perSecond(now)
	if d.state == DrainRunning {
		if net := st.Drain.Rate - appendRate; net > 0 {
			st.Drain.ETASeconds = float64(d.remaining) / net
		}
	} else if d.state == DrainCompleted || d.state == DrainIdle {
		st.Drain.ETASeconds = 0
	}
	return st
}

func cmpState(s string) string {
	if s == "" {
		return DrainIdle
	}
	return s
}

// watch updates the drain job twice a second until ctx ends.
func (f *Forwarder) watch(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.updateDrain(now)
		}
	}
}

// updateDrain starts, advances or ends the drain job.
func (f *Forwarder) updateDrain(now time.Time) {
	qs := f.cfg.Spool.Stats()
	age := time.Duration(0)
	if !qs.Oldest.IsZero() {
		age = now.Sub(qs.Oldest)
	}
	acked := f.acked.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.lastTick.IsZero() {
		secs := now.Sub(f.lastTick).Seconds()
		r := float64(qs.Appended-f.lastAppended) / secs
		f.appendRate = 0.8*f.appendRate + 0.2*r
	}
	f.lastTick, f.lastAppended = now, qs.Appended
	d := &f.drain
	switch {
	case d.state != DrainRunning && f.state == StateConnected && qs.Items > 0 && age >= drainStart:
		*d = drain{state: DrainRunning, started: now, ackedStart: acked, atStart: qs.Items, remaining: qs.Items}
		f.log.Info("uplink: sending the backlog", "items", qs.Items, "bytes", qs.Bytes, "oldest_age", age.Round(time.Second).String())
	case d.state == DrainRunning:
		d.processed, d.remaining = acked-d.ackedStart, qs.Items
		if qs.Items == 0 || age < drainEnd {
			d.state, d.ended = DrainCompleted, now
			secs := now.Sub(d.started).Seconds()
			f.log.Info("uplink: backlog sent", "items", d.processed, "seconds", secs, "per_second", float64(d.processed)/max(secs, 1e-3))
		}
	}
}

// rateMeter counts events per second over the last few seconds.
type rateMeter struct {
	mu      sync.Mutex
	buckets [6]struct {
		sec int64
		n   int
	}
}

func (m *rateMeter) add(now time.Time, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec := now.Unix()
	b := &m.buckets[sec%int64(len(m.buckets))]
	if b.sec != sec {
		b.sec, b.n = sec, 0
	}
	b.n += n
}

// perSecond is the rate over the last 5 whole seconds.
func (m *rateMeter) perSecond(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec := now.Unix()
	total := 0
	for _, b := range m.buckets {
		if b.sec < sec && b.sec >= sec-5 {
			total += b.n
		}
	}
	return float64(total) / 5
}

// Collector returns the forwarder's Prometheus metrics.
func (f *Forwarder) Collector() prometheus.Collector { return &collector{f: f} }

var (
	descItems     = prometheus.NewDesc("trackgate_uplink_queue_items", "Entries queued for the upstream broker, not yet acknowledged.", nil, nil)
	descBytes     = prometheus.NewDesc("trackgate_uplink_queue_bytes", "Size of the queue's segments on disk.", nil, nil)
	descAge       = prometheus.NewDesc("trackgate_uplink_queue_oldest_age_seconds", "Age of the oldest entry not yet acknowledged (0 when empty).", nil, nil)
	descAppended  = prometheus.NewDesc("trackgate_uplink_queue_appended_total", "Entries appended to the queue.", nil, nil)
	descDropped   = prometheus.NewDesc("trackgate_uplink_queue_dropped_total", "Entries lost to the queue's size limit (--uplink-queue-max, by --uplink-queue-full policy).", []string{"policy"}, nil)
	descDropBytes = prometheus.NewDesc("trackgate_uplink_queue_dropped_bytes_total", "Bytes of entries lost to the queue's size limit.", []string{"policy"}, nil)
	descQuar      = prometheus.NewDesc("trackgate_uplink_queue_quarantined_total", "Corrupt regions of the queue moved to quarantine/.", nil, nil)
	descQuarBytes = prometheus.NewDesc("trackgate_uplink_queue_quarantined_bytes_total", "Bytes moved to quarantine/.", nil, nil)
	descSyncs     = prometheus.NewDesc("trackgate_uplink_queue_syncs_total", "fsync calls of the queue.", nil, nil)
	descAcked     = prometheus.NewDesc("trackgate_uplink_acked_total", "Entries the upstream broker acknowledged.", nil, nil)
	descPositions = prometheus.NewDesc("trackgate_uplink_positions_acked_total", "Positions the upstream broker acknowledged.", nil, nil)
	descSent      = prometheus.NewDesc("trackgate_uplink_messages_sent_total", "MQTT messages published upstream (a batch of positions is one).", nil, nil)
	descRetried   = prometheus.NewDesc("trackgate_uplink_publishes_retried_total", "Publishes retried after the upstream broker answered quota exceeded or busy.", nil, nil)
	descRefused   = prometheus.NewDesc("trackgate_uplink_refused_total", "Entries the upstream broker refused for good, kept in refused.jsonl.", []string{"reason"}, nil)
	descConnects  = prometheus.NewDesc("trackgate_uplink_connects_total", "Connections made to the upstream broker.", nil, nil)
	descState     = prometheus.NewDesc("trackgate_uplink_state", "1 for the uplink's current state, 0 for the others.", []string{"state"}, nil)
	descRate      = prometheus.NewDesc("trackgate_uplink_drain_rate", "Entries acknowledged upstream per second, over the last 5 s.", nil, nil)
	descETA       = prometheus.NewDesc("trackgate_uplink_drain_eta_seconds", "Estimated seconds to an empty backlog (-1 when it is not shrinking).", nil, nil)
	descDrain     = prometheus.NewDesc("trackgate_uplink_drain_state", "1 for the backlog drain's current state, 0 for the others.", []string{"state"}, nil)
)

type collector struct{ f *Forwarder }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descItems, descBytes, descAge, descAppended, descDropped, descDropBytes, descQuar, descQuarBytes,
		descSyncs, descAcked, descPositions, descSent, descRetried, descRefused, descConnects, descState, descRate, descETA, descDrain} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Status()
	q := st.Backlog.Stats
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descItems, float64(q.Items))
	gauge(descBytes, float64(q.Bytes))
	gauge(descAge, st.Backlog.OldestAgeSeconds)
	counter(descAppended, q.Appended)
	policy := c.f.cfg.Spool.Policy().String()
	counter(descDropped, q.Dropped, policy)
	counter(descDropBytes, q.DropBytes, policy)
	counter(descQuar, q.Quarantined)
	counter(descQuarBytes, q.QuarBytes)
	counter(descSyncs, q.Syncs)
	counter(descAcked, st.Acked)
	counter(descPositions, st.Positions)
	counter(descSent, st.Sent)
	counter(descRetried, st.Retried)
	for _, r := range []string{"not_authorized", "payload_invalid", "topic_invalid", "packet_too_large", "other"} {
		counter(descRefused, st.Refused[r], r)
	}
	counter(descConnects, st.Connects)
	for _, s := range []string{StateConnecting, StateConnected, StateDisconnected, StateRevoked, StateUnauthorized, StateStopped} {
		v := 0.0
		if s == st.State {
			v = 1
		}
		gauge(descState, v, s)
	}
	gauge(descRate, st.Drain.Rate)
	gauge(descETA, st.Drain.ETASeconds)
	for _, s := range []string{DrainIdle, DrainRunning, DrainCompleted, DrainInterrupted} {
		v := 0.0
		if s == st.Drain.State {
			v = 1
		}
		gauge(descDrain, v, s)
	}
}
