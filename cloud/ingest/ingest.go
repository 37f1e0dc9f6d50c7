// Package ingest is the cloud's MQTT → InfluxDB bridge. It subscribes to every
// device's positions on a shared subscription at QoS 1 with a persistent
// session and manual acknowledgement, validates each payload, batches the
// positions (bounded by count and time), writes each batch to InfluxDB, and
// acknowledges a message only after the batch holding it was accepted, so
// that nothing is lost to a crash or an outage: unacknowledged messages are
// redelivered, and writing a position twice stores it once.
//
// With a Config.OnStored hook, a message is acknowledged only once its
// positions were also passed to the hook. The hook is called from one
// goroutine on everything written since its previous call, at most about
// once every Config.StoredWait, so that its cost follows the rate of calls
// rather than the rate of batches.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// Message is one received MQTT message. paho's mqtt.Message satisfies it.
type Message interface {
	Topic() string
	Payload() []byte
	Ack()
}

// Writer stores a batch of line-protocol lines. Its errors tell whether
// retrying can help through a Permanent() bool method or an errors.As-able
// type with that method; an error without one is retried.
type Writer interface {
	Write(ctx context.Context, lines []byte) error
}

// Config tunes the pipeline. Zero fields take the defaults shown.
type Config struct {
	BatchSize  int           // positions per write, default 5000
	BatchWait  time.Duration // longest wait to fill a batch, default 100 ms
	MaxUnacked int           // messages held unacknowledged at most, default 50000
	Writers    int           // concurrent writes to InfluxDB, default 2
	RetryMin   time.Duration // first retry delay after a failed write, default 100 ms
	RetryMax   time.Duration // longest retry delay, default 10 s
	// DrainTimeout bounds how long Run keeps writing what it holds, and
	// passing it to OnStored, after its context ends; what is not done by
	// then stays unacknowledged and the broker delivers it again. Default
	// 10 s.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Now          func() time.Time // clock for validation, default time.Now
	// OnStored, if set, is given positions once InfluxDB accepted them,
	// before their messages are acknowledged (so a crash in between delivers
	// them again: OnStored must be idempotent). Calls come one at a time,
	// each with the positions of every batch written since the previous
	// call; batch is reused once OnStored returns. A call waits until
	// StoredWait after the start of the previous one (so the first batch
	// after a quiet period goes at once), or until StoredMax positions or
	// half of MaxUnacked messages wait for it.
	OnStored   func(ctx context.Context, batch []Stored)
	StoredWait time.Duration // least time between OnStored calls under load, default 250 ms
	StoredMax  int           // positions that make OnStored be called without waiting, default 50000
}

// Stored is a position stored under its device.
type Stored struct {
	Device string
	position.Position
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 100 * time.Millisecond
	}
	if c.MaxUnacked <= 0 {
		c.MaxUnacked = 50000
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.StoredWait <= 0 {
		c.StoredWait = 250 * time.Millisecond
	}
	if c.StoredMax <= 0 {
		c.StoredMax = 50000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Pipeline validates, batches, writes and acknowledges messages handed to
// Handle. It knows nothing of MQTT connections; Bridge feeds it.
type Pipeline struct {
	cfg     Config
	w       Writer
	m       *Metrics
	log     *slog.Logger
	slots   chan struct{} // one per unacknowledged message
	in      chan Message
	batches chan *batch
	// written carries the batches InfluxDB accepted to storeLoop; nil
	// without Config.OnStored.
	written chan *batch
	free    sync.Pool // of *batch, reused once acknowledged
	logBad  rate.Sometimes
}

// NewPipeline returns a pipeline writing to w. It does no I/O.
func NewPipeline(cfg Config, w Writer, m *Metrics) *Pipeline {
	cfg.defaults()
	p := &Pipeline{
		cfg:     cfg,
		w:       w,
		m:       m,
		log:     cfg.Logger,
		slots:   make(chan struct{}, cfg.MaxUnacked),
		in:      make(chan Message, cfg.BatchSize),
		batches: make(chan *batch, cfg.Writers),
		logBad:  rate.Sometimes{First: 5, Interval: 10 * time.Second},
	}
	if cfg.OnStored != nil {
		// Room for a full OnStored call of full batches, so that the writers
		// go on while OnStored runs.
		p.written = make(chan *batch, cfg.StoredMax/cfg.BatchSize+cfg.Writers)
	}
	return p
}

// Handle takes one message into the pipeline, blocking while MaxUnacked
// messages are unacknowledged. It returns false, leaving the message
// unacknowledged, if ctx ends first.
func (p *Pipeline) Handle(ctx context.Context, msg Message) bool {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	if ctx.Err() != nil { // select picks at random when both are ready: ctx wins
		<-p.slots
		return false
	}
	p.m.messages.Inc()
	p.m.unacked.Inc()
	select {
	case p.in <- msg:
		return true
	case <-ctx.Done():
		p.release(1)
		return false
	}
}

func (p *Pipeline) release(n int) {
	for range n {
		<-p.slots
	}
	p.m.unacked.Sub(float64(n))
}

// Run batches and writes until ctx ends, then writes what it already took in
// and passes it to OnStored (within DrainTimeout) and returns. Messages
// Handle accepts after ctx ended are left unacknowledged. Run may be called
// once.
func (p *Pipeline) Run(ctx context.Context) error {
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	// Once ctx ends, writes go on against drain for DrainTimeout at most.
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.DrainTimeout, cancelDrain) })
	defer stop()

	var storing sync.WaitGroup
	if p.written != nil {
		storing.Go(func() { p.storeLoop(ctx, drain) })
	}
	var wg sync.WaitGroup
	for range p.cfg.Writers {
		wg.Go(func() {
			for b := range p.batches {
				p.writeBatch(drain, b)
			}
		})
	}
	p.batchLoop(ctx)
	close(p.batches)
	wg.Wait()
	if p.written != nil {
		close(p.written)
	}
	storing.Wait()
	return nil
}

// batch is a run of messages and the line protocol of their valid positions.
type batch struct {
	msgs   []Message
	lines  []byte
	starts []int    // offset of each line in lines
	stored []Stored // the positions, when Config.OnStored wants them
}

func (b *batch) points() int { return len(b.starts) }

// batchLoop reads messages into batches and hands them to the writers.
func (p *Pipeline) batchLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var cur *batch
	var scratch []position.Position
	flush := func() {
		if cur != nil {
			p.batches <- cur
			cur = nil
		}
		timer.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			// Take what already arrived, then stop.
			for {
				select {
				case msg := <-p.in:
					cur, scratch = p.add(cur, msg, scratch)
					if cur.points() >= p.cfg.BatchSize {
						flush()
					}
				default:
					flush()
					return
				}
			}
		case msg := <-p.in:
			if cur == nil {
				timer.Reset(p.cfg.BatchWait)
			}
			cur, scratch = p.add(cur, msg, scratch)
			if cur.points() >= p.cfg.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// add decodes msg and appends its valid positions to b (new when nil).
func (p *Pipeline) add(b *batch, msg Message, scratch []position.Position) (*batch, []position.Position) {
	if b == nil {
		b, _ = p.free.Get().(*batch)
		if b == nil {
			b = &batch{}
		}
	}
	b.msgs = append(b.msgs, msg)
	device, kind, err := topic.Parse(msg.Topic())
	if err == nil && kind != topic.Positions {
		err = fmt.Errorf("topic %q: not a positions topic", msg.Topic())
	}
	if err != nil {
		p.m.rejected.WithLabelValues(ReasonTopic).Inc()
		p.logBad.Do(func() { p.log.Warn("rejected message", "topic", msg.Topic(), "err", err) })
		return b, scratch
	}
	var errs []*position.Error
	scratch, errs = position.Accept(msg.Payload(), p.cfg.Now(), scratch[:0])
	for _, e := range errs {
		p.m.rejected.WithLabelValues(string(e.Reason)).Inc()
		p.logBad.Do(func() { p.log.Warn("rejected position", "device", device, "err", e) })
	}
	for i := range scratch {
		b.starts = append(b.starts, len(b.lines))
		b.lines = scratch[i].AppendLineProtocol(b.lines, device)
		if p.cfg.OnStored != nil {
			b.stored = append(b.stored, Stored{Device: device, Position: scratch[i]})
		}
	}
	return b, scratch
}

// writeBatch writes b until it is stored or ctx ends, then hands it to
// storeLoop when OnStored wants its positions, and else acknowledges its
// messages (only when stored).
func (p *Pipeline) writeBatch(ctx context.Context, b *batch) {
	if b.points() > 0 {
		p.m.batchSize.Observe(float64(b.points()))
		if !p.writeLines(ctx, b.lines, b.starts) {
			p.log.Warn("stopped before a batch was stored; its messages stay unacknowledged for redelivery",
				"messages", len(b.msgs), "positions", b.points())
			p.release(len(b.msgs))
			return
		}
		if p.written != nil {
			p.written <- b
			return
		}
	}
	p.ack(b)
}

// storeLoop passes the positions of the written batches to OnStored (with
// drain) and then acknowledges their messages, until p.written is closed and
// drained. A call takes a batch, then gathers the batches written until
// StoredWait after the previous call started, or until StoredMax positions or
// half of MaxUnacked messages are gathered (so that Handle is not held up
// while it waits). Once ctx ends, it takes only what is already queued.
func (p *Pipeline) storeLoop(ctx, drain context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		held   []*batch
		all    []Stored
		called time.Time // when the previous OnStored call started
	)
	for b := range p.written {
		held = append(held[:0], b)
		positions, msgs := b.points(), len(b.msgs)
		timer.Reset(time.Until(called.Add(p.cfg.StoredWait)))
		for positions < p.cfg.StoredMax && msgs < p.cfg.MaxUnacked/2 {
			next := p.nextWritten(timer.C, ctx.Done())
			if next == nil {
				break
			}
			held = append(held, next)
			positions, msgs = positions+next.points(), msgs+len(next.msgs)
		}
		timer.Stop()
		called = time.Now()
		all = p.passOn(drain, held, all[:0])
		clear(held)
	}
}

// passOn calls OnStored with the positions of held, appended to all, then
// acknowledges their messages; if ctx already ended, it leaves them
// unacknowledged. Either way it frees their slots and recycles held. It
// returns all for reuse.
func (p *Pipeline) passOn(ctx context.Context, held []*batch, all []Stored) []Stored {
	for _, b := range held {
		all = append(all, b.stored...)
	}
	if ctx.Err() != nil {
		msgs := 0
		for _, b := range held {
			msgs += len(b.msgs)
			p.release(len(b.msgs))
			p.recycle(b)
		}
		p.log.Warn("stopped before stored positions were passed on; their messages stay unacknowledged for redelivery",
			"messages", msgs, "positions", len(all))
		return all
	}
	p.m.storedPositions.Observe(float64(len(all)))
	p.cfg.OnStored(ctx, all)
	for _, b := range held {
		p.ack(b)
	}
	return all
}

// nextWritten returns a written batch already queued, else the first to come
// before expired fires or stop is closed; nil when none comes or p.written is
// closed.
func (p *Pipeline) nextWritten(expired <-chan time.Time, stop <-chan struct{}) *batch {
	select {
	case b := <-p.written:
		return b
	default:
	}
	select {
	case b := <-p.written:
		return b
	case <-expired:
	case <-stop:
	}
	return nil
}

// ack acknowledges b's messages, frees their slots and recycles b.
func (p *Pipeline) ack(b *batch) {
	for _, msg := range b.msgs {
		msg.Ack()
	}
	p.release(len(b.msgs))
	p.recycle(b)
}

// recycle keeps b's buffers for a later batch.
func (p *Pipeline) recycle(b *batch) {
	clear(b.msgs)
	b.msgs, b.lines, b.starts, b.stored = b.msgs[:0], b.lines[:0], b.starts[:0], b.stored[:0]
	p.free.Put(b)
}

// writeLines writes lines (line i starting at starts[i]), retrying transient
// failures with backoff. A permanent failure splits the lines in halves and
// writes each, so that one bad point cannot keep the good ones out; a single
// line refused for good is counted and dropped. It returns false if ctx ended
// before everything was stored or dropped.
func (p *Pipeline) writeLines(ctx context.Context, lines []byte, starts []int) bool {
	delay := p.cfg.RetryMin
	for {
		t0 := time.Now()
		err := p.w.Write(ctx, lines)
		p.m.writeSeconds.Observe(time.Since(t0).Seconds())
		if err == nil {
			p.m.written.Add(float64(len(starts)))
			return true
		}
		if permanent(err) {
			p.m.writeErrors.WithLabelValues("permanent").Inc()
			if len(starts) == 1 {
				p.m.rejected.WithLabelValues(ReasonStore).Inc()
				p.log.Warn("InfluxDB refused a position", "line", string(lines), "err", err)
				return true
			}
			mid := len(starts) / 2
			off := starts[mid]
			second := make([]int, len(starts)-mid)
			for i, s := range starts[mid:] {
				second[i] = s - off
			}
			return p.writeLines(ctx, lines[:off], starts[:mid]) && p.writeLines(ctx, lines[off:], second)
		}
		p.m.writeErrors.WithLabelValues("transient").Inc()
		p.log.Warn("InfluxDB write failed; retrying", "positions", len(starts), "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay + rand.N(delay/2+1)):
		}
		delay = min(delay*2, p.cfg.RetryMax)
	}
}

// permanent reports whether err says that the same data will be refused again.
func permanent(err error) bool {
	var pe interface {
		error
		Permanent() bool
	}
	if errors.As(err, &pe) {
		return pe.Permanent()
	}
	return false
}
