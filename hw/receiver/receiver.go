// Package receiver reads GPS receivers: a serial port (by path, or a USB
// receiver by VID, PID and serial number, whichever /dev/ttyUSBn it lands
// on) or an NMEA 0183 server over TCP. A Reader opens its source (finding
// the line speed by itself when none is given), frames the byte stream into
// sentences, assembles them into one fix per epoch, and hands fixes and
// status changes to a Handler. When the source fails or goes away it is
// reopened with capped, jittered backoff until the context ends.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial/enumerator"

	"trackgate/hw/nmeaframe"
	"trackgate/internal/epoch"
	"trackgate/internal/logx"
)

// States of a source, as published in its status.
const (
	StateOnline  = "online"  // fixes are coming in
	StateNoFix   = "no-fix"  // sentences are coming in, without a solution
	StateOffline = "offline" // the source is closed, failing, or silent
)

// Config configures a Reader.
type Config struct {
	Spec     Spec
	Lax      bool // accept sentences without a checksum
	ReadOnly bool // never write to the receiver (no identification query)
	MaxLine  int  // longest sentence accepted (0: nmeaframe.DefaultMaxLine)
	// EpochIdle hands on a pending epoch after the line was quiet this long
	// (default 50ms), so the last epoch of a burst is not held back when its
	// end is not yet learned.
	EpochIdle time.Duration
	// Silence marks the source offline after no sentence for this long
	// (default 5s); a TCP source is then reconnected, and a serial port
	// without a fixed speed reopened to find its speed again.
	Silence time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reopen a source (default 100ms and 800ms; each wait is jittered by
	// ±20%).
	ReconnectMin, ReconnectMax time.Duration
	// StatusEvery repeats the status with fresh counters (default 10s).
	StatusEvery time.Duration
	// ProbeWindow is how long auto-baud listens at each speed (default 1.2s).
	ProbeWindow time.Duration
	Logger      *slog.Logger
	// Ports lists serial ports with their USB details, for usb: sources
	// (default enumerator.GetDetailedPortsList).
	Ports func() ([]*enumerator.PortDetails, error)
}

// Handler receives what a Reader produces, on the Reader's goroutine, in
// order.
type Handler interface {
	// Fix is called with each valid epoch. The Epoch is only valid during
	// the call.
	Fix(e *epoch.Epoch)
	// Status is called on every change of state and every StatusEvery.
	Status(s Status)
}

// Status is the state of a source, published retained on
// devices/{device}/status.
type Status struct {
	State      string     `json:"state"` // StateOnline, StateNoFix or StateOffline
	Time       time.Time  `json:"time"`  // when this status was made
	Since      time.Time  `json:"since"` // when State began
	Source     string     `json:"source"`
	Port       string     `json:"port,omitempty"` // the port or address in use
	Baud       int        `json:"baud,omitempty"` // the line speed in use
	Receiver   string     `json:"receiver,omitempty"`
	LastFix    *time.Time `json:"last_fix,omitempty"`
	SatsInView *int       `json:"sats_in_view,omitempty"`
	Error      string     `json:"error,omitempty"` // why offline
	Counters   Counters   `json:"counters"`
}

// Counters counts what a Reader saw since it started.
type Counters struct {
	Bytes        uint64 `json:"bytes"`
	Sentences    uint64 `json:"sentences"`     // framed with a valid checksum
	BadChecksum  uint64 `json:"bad_checksum"`  // dropped: checksum mismatch
	NoChecksum   uint64 `json:"no_checksum"`   // without a checksum (dropped unless lax)
	Overlong     uint64 `json:"overlong"`      // dropped: longer than the cap
	GarbageBytes uint64 `json:"garbage_bytes"` // bytes outside valid sentences
	ParseErrors  uint64 `json:"parse_errors"`  // used sentences that did not parse
	Ignored      uint64 `json:"ignored"`       // sentences of types not used
	Epochs       uint64 `json:"epochs"`
	Fixes        uint64 `json:"fixes"`    // valid epochs handed on
	NoFixes      uint64 `json:"no_fixes"` // epochs without a solution
	Rejected     uint64 `json:"rejected"` // fixes failing validation (a receiver's bad date, say)
	Reconnects   uint64 `json:"reconnects"`
}

// Reader reads one source. Create it with New and start it with Run.
type Reader struct {
	cfg Config
	h   Handler
	log *slog.Logger

	// Owned by Run's goroutine.
	framer    *nmeaframe.Framer
	asm       *epoch.Assembler
	framed    nmeaframe.Stats // of framers of earlier connections
	lastBaud  int
	lastLine  time.Time
	lastState time.Time // last status sent

	mu sync.Mutex // guards st
	st Status
}

// New returns a Reader for cfg that reports to h. It does no I/O.
func New(cfg Config, h Handler) *Reader {
	if cfg.EpochIdle <= 0 {
		cfg.EpochIdle = 50 * time.Millisecond
	}
	if cfg.Silence <= 0 {
		cfg.Silence = 5 * time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 100 * time.Millisecond
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = max(800*time.Millisecond, cfg.ReconnectMin)
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 10 * time.Second
	}
	if cfg.ProbeWindow <= 0 {
		cfg.ProbeWindow = 1200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Ports == nil {
		cfg.Ports = func() ([]*enumerator.PortDetails, error) { return enumerator.GetDetailedPortsList() }
	}
	r := &Reader{
		cfg:      cfg,
		h:        h,
		log:      cfg.Logger.With("device", cfg.Spec.Device, "source", cfg.Spec.Source()),
		lastBaud: cfg.Spec.Baud,
	}
	r.st = Status{State: StateOffline, Source: cfg.Spec.Source(), Since: time.Now().UTC()}
	return r
}

// Spec returns the Reader's source.
func (r *Reader) Spec() Spec { return r.cfg.Spec }

// Status returns the current status with fresh counters.
func (r *Reader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.Time = time.Now().UTC()
	return s
}

// conn is an open source: Read returns (0, nil) when nothing arrived within
// its tick, so the read loop can keep time.
type conn interface {
	io.ReadWriteCloser
	Name() string // the path or address in use
	Baud() int    // the line speed, 0 for TCP
}

// Run reads the source until ctx ends, reopening it whenever it fails. It
// returns nil when ctx ends.
func (r *Reader) Run(ctx context.Context) error {
	backoff := r.cfg.ReconnectMin
	opened := false
	for ctx.Err() == nil {
		c, prefix, err := r.open(ctx)
		if err == nil {
			if opened {
				r.count(func(c *Counters) { c.Reconnects++ })
			}
			opened = true
			r.log.Info("source open", "port", c.Name(), "baud", c.Baud())
			var good bool
			good, err = r.read(ctx, c, prefix)
			c.Close()
			if good {
				backoff = r.cfg.ReconnectMin
			}
		}
		if ctx.Err() != nil {
			break
		}
		r.offline(err)
		select {
		case <-ctx.Done():
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, r.cfg.ReconnectMax)
	}
	r.offline(errors.New("stopped"))
	return nil
}

// jitter returns d ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// offline reports the source offline because of err, logging each new
// reason once.
func (r *Reader) offline(err error) {
	msg := "closed"
	if err != nil {
		msg = err.Error()
	}
	r.mu.Lock()
	changed := r.st.State != StateOffline || r.st.Error != msg
	r.st.Port, r.st.Baud = "", 0
	r.mu.Unlock()
	if changed {
		r.log.Warn("source offline", logx.Err(err))
	}
	r.setState(StateOffline, msg, true)
}

// setState moves to state and reports the status when it changed (or when
// force is set).
func (r *Reader) setState(state, errMsg string, force bool) {
	if r.framer != nil {
		r.sync(0)
	}
	now := time.Now().UTC()
	r.mu.Lock()
	changed := r.st.State != state || r.st.Error != errMsg
	if r.st.State != state {
		r.st.Since = now
	}
	r.st.State, r.st.Error = state, errMsg
	s := r.st
	r.mu.Unlock()
	if changed || force {
		s.Time = now
		r.lastState = now
		r.h.Status(s)
	}
}

func (r *Reader) count(f func(*Counters)) {
	r.mu.Lock()
	f(&r.st.Counters)
	r.mu.Unlock()
}

// read runs one connection until it fails or ctx ends. prefix holds bytes
// already read (while probing the line speed) that belong to the stream.
// good reports whether any sentence came through.
func (r *Reader) read(ctx context.Context, c conn, prefix []byte) (good bool, err error) {
	r.framer = nmeaframe.New(r.cfg.Lax, r.cfg.MaxLine)
	if r.asm == nil {
		r.asm = epoch.New(epoch.Options{})
	}
	r.mu.Lock()
	r.st.Port, r.st.Baud = c.Name(), c.Baud()
	r.mu.Unlock()
	if !r.cfg.ReadOnly && c.Baud() != 0 {
		// Ask an MTK receiver for its firmware; others ignore it.
		if _, err := c.Write([]byte("$PMTK605*31\r\n")); err != nil {
			return false, fmt.Errorf("write identification query: %w", err)
		}
	}
	start := time.Now()
	r.lastLine, r.lastState = start, start
	lastByte := start
	defer func() {
		// Keep the counts of this connection, and hand on a pending
		// epoch: its sentences were accepted.
		r.asm.Flush(r.epoch)
		r.framed = r.framed.Add(r.framer.Stats())
		r.framer = nmeaframe.New(r.cfg.Lax, r.cfg.MaxLine)
		r.sync(0)
	}()
	feed := func(p []byte) {
		before := r.framer.Stats().Sentences
		r.framer.Feed(p, r.sentence)
		if r.framer.Stats().Sentences != before {
			good = true
		}
	}
	feed(prefix)
	r.sync(uint64(len(prefix)))
	buf := make([]byte, 4096)
	for {
		if ctx.Err() != nil {
			return good, nil
		}
		n, rerr := c.Read(buf)
		now := time.Now()
		if n > 0 {
			lastByte = now
			feed(buf[:n])
		}
		if n == 0 && r.asm.Pending() && now.Sub(lastByte) >= r.cfg.EpochIdle {
			r.asm.Flush(r.epoch)
		}
		r.sync(uint64(n))
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				rerr = errors.New("connection closed by the source")
			}
			return good, fmt.Errorf("read %s: %w", c.Name(), rerr)
		}
		if now.Sub(r.lastLine) >= r.cfg.Silence {
			silent := fmt.Sprintf("no NMEA for %s", r.cfg.Silence)
			if r.cfg.Spec.Kind == KindTCP || r.cfg.Spec.Baud == 0 {
				// A half-open connection, or a receiver that changed its
				// line speed (a reset to its default, say): reopen, and
				// find the speed again.
				return good, errors.New(silent)
			}
			r.setState(StateOffline, silent, false)
		}
		if now.Sub(r.lastState) >= r.cfg.StatusEvery {
			r.mu.Lock()
			state, msg := r.st.State, r.st.Error
			r.mu.Unlock()
			r.setState(state, msg, true)
		}
	}
}

// sync copies the framer's and assembler's counters into the status.
func (r *Reader) sync(bytes uint64) {
	f := r.framed.Add(r.framer.Stats())
	a := r.asm.Stats()
	r.mu.Lock()
	c := &r.st.Counters
	c.Bytes += bytes
	c.Sentences, c.BadChecksum, c.NoChecksum, c.Overlong, c.GarbageBytes = f.Sentences, f.BadChecksum, f.NoChecksum, f.Overlong, f.GarbageBytes
	c.ParseErrors, c.Ignored, c.Epochs = a.ParseErrors, a.Ignored, a.Epochs
	r.mu.Unlock()
}

// sentence takes one framed sentence.
func (r *Reader) sentence(line []byte) {
	r.lastLine = time.Now()
	if id, ok := identify(line); ok {
		r.mu.Lock()
		// u-blox receivers describe themselves in several TXT lines:
		// the hardware line wins over the others, the first over later.
		if r.st.Receiver == "" || strings.HasPrefix(id, "MTK ") || strings.HasPrefix(id, "HW ") {
			r.st.Receiver = id
		}
		r.mu.Unlock()
	}
	if err := r.asm.AddLine(line, r.epoch); err != nil {
		r.log.Debug("sentence dropped", "sentence", string(line), logx.Err(err))
	}
}

// epoch takes one assembled epoch.
func (r *Reader) epoch(e *epoch.Epoch) {
	now := time.Now()
	r.mu.Lock()
	if e.SatsInView >= 0 {
		n := e.SatsInView
		r.st.SatsInView = &n
	}
	r.mu.Unlock()
	if !e.Valid {
		r.count(func(c *Counters) { c.NoFixes++ })
		r.setState(StateNoFix, "", false)
		return
	}
	if err := e.Position.Validate(now); err != nil {
		r.count(func(c *Counters) { c.Rejected++ })
		r.log.Debug("fix rejected", logx.Err(err))
		return
	}
	t := e.Position.Time
	r.mu.Lock()
	r.st.LastFix = &t
	r.st.Counters.Fixes++
	r.mu.Unlock()
	r.h.Fix(e)
	r.setState(StateOnline, "", false)
}

// identify extracts a receiver's self-description: an MTK firmware
// release ($PMTK705) or a u-blox style notice ($--TXT).
func identify(line []byte) (string, bool) {
	s := string(line)
	if i := strings.LastIndexByte(s, '*'); i > 0 {
		s = s[:i]
	}
	switch {
	case strings.HasPrefix(s, "$PMTK705,"):
		return "MTK " + strings.ReplaceAll(s[len("$PMTK705,"):], ",", " "), true
	case len(s) > 7 && s[3:7] == "TXT,":
		// $--TXT,total,num,type,text
		if f := strings.SplitN(s, ",", 5); len(f) == 5 && f[4] != "" {
			return f[4], true
		}
	}
	return "", false
}
