package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// StreamHandler serves one connection of a stream (TCP) protocol: it reads
// frames with Conn.Scanner until the connection ends or ctx does, and
// returns why it stopped (nil for a clean close by the tracker).
type StreamHandler interface {
	ServeConn(ctx context.Context, c *Conn) error
}

// Limits bound what one tracker, or one address, may cost.
type Limits struct {
	// Idle is how long a connection may send nothing (trackers send a
	// heartbeat every few minutes); default 5 minutes.
	Idle time.Duration
	// Frame is how long a frame, once begun, may take to arrive whole (a
	// slow writer's); default 30 s.
	Frame time.Duration
	// PerAddress is the most connections one IP address may hold open;
	// default 64 (a fleet behind one NAT stays under it; raise it for
	// more).
	PerAddress int
	// Rate is the frames per second one connection may send on average,
	// with bursts of Burst; defaults 5 and 100 (a tracker uploading its
	// buffer after an outage sends a burst).
	Rate  float64
	Burst int
}

func (l *Limits) withDefaults() {
	if l.Idle <= 0 {
		l.Idle = 5 * time.Minute
	}
	if l.Frame <= 0 {
		l.Frame = 30 * time.Second
	}
	if l.PerAddress <= 0 {
		l.PerAddress = 64
	}
	if l.Rate <= 0 {
		l.Rate = 5
	}
	if l.Burst <= 0 {
		l.Burst = 100
	}
}

// Reasons a connection was closed, the label of the closed-connections
// counter.
const (
	CloseEOF      = "eof"         // the tracker closed it
	CloseIdle     = "idle"        // nothing within Limits.Idle
	CloseSlow     = "slow"        // a frame not finished within Limits.Frame
	CloseBadFrame = "bad_frame"   // a frame that could not be read or decoded
	CloseFlood    = "flood"       // more frames than Limits.Rate allows
	CloseAddress  = "per_address" // the address holds too many connections
	CloseRefused  = "refused"     // an unknown device, or one that may not use this protocol
	ClosePublish  = "publish"     // the broker did not take its positions
	CloseShutdown = "shutdown"    // the bridge is stopping
	CloseError    = "error"       // a network error
)

// ErrFlood is a connection sending frames faster than its limit.
var ErrFlood = errors.New("too many frames: over the connection's rate limit")

// Conn is one tracker connection of a stream protocol, with the bridge's
// deadlines and limits applied to what is read from it.
type Conn struct {
	net.Conn
	// Log is the connection's logger (protocol and remote address set).
	Log    *slog.Logger
	limits *Limits
	limit  *rate.Limiter
	// pending is set while the scanner holds part of a frame: the next
	// read gets the frame deadline instead of the idle one.
	pending bool
	slow    bool // the last read timed out mid-frame
}

// Read reads with the idle deadline, or the frame deadline while a frame
// is partly read.
func (c *Conn) Read(p []byte) (int, error) {
	d := c.limits.Idle
	if c.pending {
		d = c.limits.Frame
	}
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.pending && errors.Is(err, os.ErrDeadlineExceeded) {
		c.slow = true
	}
	return n, err
}

// Write writes with a deadline, so that a tracker that does not read
// cannot hold the connection.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.limits.Frame)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Scanner returns a scanner of the connection's frames, split by split
// (which must return an error for a broken stream rather than skip bytes)
// and at most max bytes long. Each frame it yields is counted against the
// connection's rate limit: past it the scan ends with ErrFlood.
func (c *Conn) Scanner(split bufio.SplitFunc, max int) *bufio.Scanner {
	s := bufio.NewScanner(c)
	s.Buffer(make([]byte, 0, min(max, 512)), max)
	s.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		adv, tok, err := split(data, atEOF)
		if err != nil {
			return 0, nil, &FrameError{Err: err}
		}
		c.pending = tok == nil && len(data) > adv
		if tok != nil && !c.limit.Allow() {
			return 0, nil, ErrFlood
		}
		return adv, tok, err
	})
	return s
}

// closeReason classifies why ServeConn ended.
func (c *Conn) closeReason(ctx context.Context, err error) string {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return CloseShutdown
	case err == nil, errors.Is(err, io.EOF):
		return CloseEOF
	case errors.Is(err, ErrFlood):
		return CloseFlood
	case errors.Is(err, ErrUnknown), errors.Is(err, ErrNeedsSecret), errors.Is(err, ErrSecret):
		return CloseRefused
	case errors.Is(err, ErrPublish), errors.Is(err, ErrUnavailable):
		return ClosePublish
	case c.slow:
		return CloseSlow
	case errors.As(err, &ne) && ne.Timeout():
		return CloseIdle
	case errors.Is(err, bufio.ErrTooLong), errors.As(err, new(*FrameError)):
		return CloseBadFrame
	}
	return CloseError
}

// FrameError is a frame that could not be read or decoded: the stream is
// not trusted past it and the connection is closed. Adapters wrap their
// decoders' errors in it.
type FrameError struct{ Err error }

func (e *FrameError) Error() string { return "bad frame: " + e.Err.Error() }
func (e *FrameError) Unwrap() error { return e.Err }

// addressCount counts the open connections of each address.
type addressCount struct {
	mu sync.Mutex // guards n
	n  map[netip.Addr]int
}

// take counts a connection of addr, refusing it past max.
func (a *addressCount) take(addr netip.Addr, max int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[addr] >= max {
		return false
	}
	a.n[addr]++
	return true
}

func (a *addressCount) release(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[addr]--; a.n[addr] <= 0 {
		delete(a.n, addr)
	}
}

// serveStream accepts connections on ln and serves each with h in its own
// goroutine until ctx ends; then it closes the listener and every
// connection and waits for their handlers.
func (h *Host) serveStream(ctx context.Context, name string, ln net.Listener, sh StreamHandler, limits Limits) error {
	limits.withDefaults()
	m := h.metrics
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	addrs := &addressCount{n: map[netip.Addr]int{}}
	var mu sync.Mutex // guards open
	open := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	wait := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors, say: back off rather than spin.
				h.log.Warn("accept failed; backing off", "protocol", name, "err", err, "wait", wait)
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return nil
				}
				wait = min(2*wait, time.Second)
				continue
			}
			return fmt.Errorf("%s: accept: %w", name, err)
		}
		wait = 5 * time.Millisecond
		ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
		addr := ap.Addr().Unmap()
		if !addrs.take(addr, limits.PerAddress) {
			m.closed.WithLabelValues(name, CloseAddress).Inc()
			nc.Close()
			continue
		}
		mu.Lock()
		open[nc] = struct{}{}
		mu.Unlock()
		m.open.WithLabelValues(name).Inc()
		m.accepted.WithLabelValues(name).Inc()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Conn{Conn: nc, Log: h.log.With("protocol", name, "remote", nc.RemoteAddr().String()), limits: &limits,
				limit: rate.NewLimiter(rate.Limit(limits.Rate), limits.Burst)}
			err := sh.ServeConn(ctx, c)
			reason := c.closeReason(ctx, err)
			m.closed.WithLabelValues(name, reason).Inc()
			if reason != CloseEOF && reason != CloseShutdown {
				c.Log.Debug("connection closed", "reason", reason, "err", err)
			}
			nc.Close()
			mu.Lock()
			delete(open, nc)
			mu.Unlock()
			addrs.release(addr)
			m.open.WithLabelValues(name).Dec()
		}()
	}
}
