// Package loadgen drives a broker with simulated devices for benchmarks:
// phones that publish positions over MQTT at QoS 1 (each with its own
// credentials, at a fixed total rate or as fast as the broker acknowledges,
// one position or a JSON array of several per message), connections that
// authenticate and then stay idle, and GPS receivers on pseudo-terminals
// (hw/gpssim) for a gateway to read. It is bounded in connections and time
// and talks to loopback brokers only.
//
// Every position is stamped with the time it is published (microseconds,
// strictly increasing per device), so that whoever reads the store can tell
// how long it took to become queryable, and (device, time) identifies it.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/time/rate"

	"trackgate/hw/gpssim"
	"trackgate/hw/phonesim"
	"trackgate/internal/topic"
)

// Limits of a run.
const (
	MaxConnections = 20000            // phones and idle connections together
	MaxReceivers   = 200              // simulated serial receivers
	MaxDuration    = time.Hour        // longest run
	MaxBatch       = 1000             // positions per message
	MaxInflight    = 1000             // unacknowledged messages per phone
	ackTimeout     = 30 * time.Second // how long the end of a run waits for PUBACKs
)

// Device is a simulated device's identity on the broker: its id (the
// topic's {device}) and the user name and password it connects with (the
// device id and its token on trackgate; empty on an anonymous broker).
type Device struct {
	ID, Username, Password string
}

// Config configures a run. Phones publish from the start for Duration;
// Idle connections are all up (and stay up) before they start.
type Config struct {
	Broker string   // broker URL on loopback, tcp://127.0.0.1:1883
	Phones []Device // publishing phones
	Idle   []Device // connections that authenticate and stay idle
	// Rate is the positions per second all phones publish together, spread
	// evenly; 0 publishes as fast as the broker acknowledges, each phone
	// keeping Inflight messages unacknowledged.
	Rate     float64
	Batch    int           // positions per message, a JSON array when > 1; default 1
	Inflight int           // unacknowledged messages per phone, default 20
	Duration time.Duration // how long phones publish (required)
	// ConnectRate bounds new connections per second (default 2000) so that
	// a run measures the broker, not a connection storm.
	ConnectRate float64
	// Receivers is how many simulated receivers to run, each on a
	// pseudo-terminal linked at PtyDir/gpsN, at ReceiverRate epochs a
	// second (default 10).
	Receivers    int
	ReceiverRate float64
	PtyDir       string
	// IdleHold is how long the idle connections are held, once all are up,
	// before the phones start.
	IdleHold time.Duration
	// OnEvent, if set, is told of the run's stages: "idle-connected" once
	// every idle connection is up, "phones-connected" once every phone is.
	OnEvent func(event string, at time.Time)
	Logger  *slog.Logger
}

// Report is what a run did.
type Report struct {
	Phones    int `json:"phones"`
	Idle      int `json:"idle"`
	Receivers int `json:"receivers"`
	// Messages and Positions were acknowledged by the broker; Unacked were
	// sent but not acknowledged by the end (they may or may not be stored).
	Messages  int64 `json:"messages"`
	Positions int64 `json:"positions"`
	Unacked   int64 `json:"unacked_positions"`
	// Epochs is how many receiver epochs were written to the
	// pseudo-terminals.
	Epochs int64 `json:"epochs"`
	// Late is how many messages went out more than a period after their
	// schedule (the generator could not keep the rate).
	Late            int64     `json:"late_messages"`
	ConnectFailures int64     `json:"connect_failures"`
	ConnectSeconds  float64   `json:"connect_seconds"` // until every connection was up
	Started         time.Time `json:"started"`         // first publish
	Ended           time.Time `json:"ended"`           // last acknowledgement
	// First and Last bound the positions' times.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

func (c *Config) check() error {
	u, err := url.Parse(c.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("loadgen: broker %q: want a URL such as tcp://127.0.0.1:1883", c.Broker)
	}
	if err := loopback(u.Hostname()); err != nil {
		return fmt.Errorf("loadgen: broker %s: %w", c.Broker, err)
	}
	if n := len(c.Phones) + len(c.Idle); n > MaxConnections {
		return fmt.Errorf("loadgen: %d connections: at most %d", n, MaxConnections)
	}
	if c.Receivers < 0 || c.Receivers > MaxReceivers {
		return fmt.Errorf("loadgen: %d receivers: want 0 to %d", c.Receivers, MaxReceivers)
	}
	if c.Receivers > 0 && c.PtyDir == "" {
		return errors.New("loadgen: receivers need a directory for their pseudo-terminal links")
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		return fmt.Errorf("loadgen: duration %v: want more than 0 and at most %v", c.Duration, MaxDuration)
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Batch < 1 || c.Batch > MaxBatch {
		return fmt.Errorf("loadgen: batch %d: want 1 to %d", c.Batch, MaxBatch)
	}
	if c.Inflight == 0 {
		c.Inflight = 20
	}
	if c.Inflight < 1 || c.Inflight > MaxInflight {
		return fmt.Errorf("loadgen: inflight %d: want 1 to %d", c.Inflight, MaxInflight)
	}
	if c.Rate < 0 {
		return fmt.Errorf("loadgen: rate %v: want 0 (as fast as acknowledged) or more", c.Rate)
	}
	if c.ConnectRate <= 0 {
		c.ConnectRate = 2000
	}
	if c.ReceiverRate == 0 {
		c.ReceiverRate = 10
	}
	for _, d := range append(c.Phones[:len(c.Phones):len(c.Phones)], c.Idle...) {
		if err := topic.ValidDevice(d.ID); err != nil {
			return fmt.Errorf("loadgen: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// loopback checks that host is, or resolves only to, loopback addresses.
func loopback(host string) error {
	ips, err := net.LookupIP(host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address: loadgen drives local brokers only", ip)
		}
	}
	return nil
}

// Run connects the idle connections, holds them IdleHold, connects the
// phones and publishes for Duration, then waits (up to 30 s) for the last
// acknowledgements and disconnects. Receivers run from the start until the
// phones are done (or for Duration when there are none). It returns early,
// with what was done, when ctx ends.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.check(); err != nil {
		return Report{}, err
	}
	r := &run{cfg: cfg, limiter: rate.NewLimiter(rate.Limit(cfg.ConnectRate), 100)}
	rep := Report{Phones: len(cfg.Phones), Idle: len(cfg.Idle), Receivers: cfg.Receivers}

	rxCtx, stopRx := context.WithCancel(ctx)
	defer stopRx()
	rxDone := r.startReceivers(rxCtx)

	t0 := time.Now()
	idle, err := r.connectAll(ctx, cfg.Idle)
	defer disconnectAll(idle)
	if err != nil {
		return r.report(rep), err
	}
	if len(idle) > 0 {
		r.event("idle-connected")
		select {
		case <-ctx.Done():
			return r.report(rep), nil
		case <-time.After(cfg.IdleHold):
		}
	}
	phones, err := r.connectAll(ctx, cfg.Phones)
	defer disconnectAll(phones)
	if err != nil {
		return r.report(rep), err
	}
	rep.ConnectSeconds = time.Since(t0).Seconds()
	if len(phones) > 0 {
		r.event("phones-connected")
	}

	pubCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range phones {
		wg.Go(func() { r.publish(pubCtx, i, c) })
	}
	wg.Wait()
	if len(phones) == 0 {
		<-pubCtx.Done()
	}
	stopRx()
	<-rxDone
	return r.report(rep), nil
}

// run is the state of one Run.
type run struct {
	cfg     Config
	limiter *rate.Limiter

	messages, positions, unacked, epochs, late, connectFailures atomic.Int64

	mu                sync.Mutex
	started, ended    time.Time
	firstPos, lastPos time.Time
}

func (r *run) event(name string) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(name, time.Now())
	}
}

func (r *run) report(rep Report) Report {
	rep.Messages, rep.Positions, rep.Unacked = r.messages.Load(), r.positions.Load(), r.unacked.Load()
	rep.Epochs, rep.Late, rep.ConnectFailures = r.epochs.Load(), r.late.Load(), r.connectFailures.Load()
	r.mu.Lock()
	rep.Started, rep.Ended, rep.First, rep.Last = r.started, r.ended, r.firstPos, r.lastPos
	r.mu.Unlock()
	return rep
}

// span widens the run's times to cover a message's.
func (r *run) span(sent, acked, first, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started.IsZero() || sent.Before(r.started) {
		r.started = sent
	}
	if acked.After(r.ended) {
		r.ended = acked
	}
	if r.firstPos.IsZero() || first.Before(r.firstPos) {
		r.firstPos = first
	}
	if last.After(r.lastPos) {
		r.lastPos = last
	}
}

// connectAll connects a client per device, ConnectRate a second, with up to
// 64 connecting at once.
func (r *run) connectAll(ctx context.Context, devs []Device) ([]paho.Client, error) {
	clients := make([]paho.Client, len(devs))
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i, d := range devs {
		if err := r.limiter.Wait(ctx); err != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c := paho.NewClient(paho.NewClientOptions().AddBroker(r.cfg.Broker).
				SetClientID(d.ID).SetUsername(d.Username).SetPassword(d.Password).
				SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(5 * time.Minute).
				SetConnectTimeout(30 * time.Second).SetWriteTimeout(30 * time.Second))
			tok := c.Connect()
			if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
				r.connectFailures.Add(1)
				err := fmt.Errorf("loadgen: connect %s: %v", d.ID, tok.Error())
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			clients[i] = c
		})
	}
	wg.Wait()
	var ok []paho.Client
	for _, c := range clients {
		if c != nil {
			ok = append(ok, c)
		}
	}
	if e := firstErr.Load(); e != nil {
		return ok, fmt.Errorf("%w (%d of %d failed)", *e, len(devs)-len(ok), len(devs))
	}
	if err := ctx.Err(); err != nil {
		return ok, err
	}
	return ok, nil
}

func disconnectAll(cs []paho.Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.Disconnect(100) })
	}
	wg.Wait()
}

// publish sends phone i's positions until ctx ends, keeping at most
// Inflight messages unacknowledged, then waits for the last PUBACKs.
func (r *run) publish(ctx context.Context, i int, c paho.Client) {
	dev := r.cfg.Phones[i]
	tp := topic.Device(dev.ID, topic.Positions)
	route := phonesim.Route{Lat: 52 + float64(i%97)*0.01, Lon: 4 + float64(i/97%97)*0.01, Radius: 300 + float64(i%7)*50, Speed: 8, Alt: 3}
	// PUBACKs come back in order: one goroutine waits for them in turn,
	// and the window of unacknowledged messages is its queue.
	window := make(chan sent, r.cfg.Inflight)
	acks := make(chan struct{})
	go func() {
		defer close(acks)
		for m := range window {
			if m.tok.WaitTimeout(ackTimeout) && m.tok.Error() == nil {
				r.messages.Add(1)
				r.positions.Add(int64(r.cfg.Batch))
				r.span(m.at, time.Now(), m.first, m.last)
				continue
			}
			r.unacked.Add(int64(r.cfg.Batch))
		}
	}()
	defer func() { close(window); <-acks }()
	var period time.Duration
	if r.cfg.Rate > 0 {
		period = time.Duration(float64(time.Second) * float64(len(r.cfg.Phones)*r.cfg.Batch) / r.cfg.Rate)
	}
	start := time.Now()
	// Phones start spread over one period, so that a fixed rate is smooth.
	next := start
	if period > 0 {
		next = start.Add(period * time.Duration(i) / time.Duration(len(r.cfg.Phones)))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time
	buf := make([]byte, 0, 256*r.cfg.Batch)
	for ctx.Err() == nil {
		if period > 0 {
			if wait := time.Until(next); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			} else if -wait > period {
				r.late.Add(1)
			}
			next = next.Add(period)
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		first := now.Add(-time.Duration(r.cfg.Batch-1) * time.Microsecond)
		if !first.After(last) {
			first = last.Add(time.Microsecond)
		}
		buf = buf[:0]
		if r.cfg.Batch > 1 {
			buf = append(buf, '[')
		}
		t := first
		for k := range r.cfg.Batch {
			if k > 0 {
				buf = append(buf, ',')
				t = t.Add(time.Microsecond)
			}
			p := route.At(t.Sub(start), t)
			p.Time = t // At keeps milliseconds
			buf = p.AppendJSON(buf)
		}
		if r.cfg.Batch > 1 {
			buf = append(buf, ']')
		}
		last = t
		m := sent{at: time.Now(), first: first, last: t}
		// paho keeps the payload until it is written: give it its own copy.
		m.tok = c.Publish(tp, 1, false, append([]byte(nil), buf...))
		select {
		case window <- m: // blocks while Inflight messages are unacknowledged
		case <-ctx.Done():
			window <- m // the last one is still waited for
			return
		}
	}
}

// sent is a message published and not yet acknowledged.
type sent struct {
	tok         paho.Token
	at          time.Time
	first, last time.Time
}

// startReceivers starts the simulated receivers; the channel is closed once
// they have all stopped (after ctx ends).
func (r *run) startReceivers(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range r.cfg.Receivers {
		sim, err := gpssim.New(gpssim.Config{
			Link: filepath.Join(r.cfg.PtyDir, fmt.Sprintf("gps%d", i)), Rate: r.cfg.ReceiverRate,
			Lat: 52 + float64(i)*0.01, Lon: 5, Speed: 14, Seed: int64(i + 1), Logger: r.cfg.Logger,
			OnEpoch: func(_ gpssim.Fix, _ time.Time) { r.epochs.Add(1) },
			Linger:  time.Second, // the gateway reads the last epoch before the pty hangs up
		})
		if err != nil {
			r.cfg.Logger.Error("receiver", "err", err)
			continue
		}
		wg.Go(func() {
			if err := sim.Run(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("receiver stopped", "n", i, "err", err)
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	return done
}
