package receiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.bug.st/serial"

	"trackgate/hw/nmeaframe"
)

// tick is how long one Read waits before returning (0, nil), so the read
// loop notices quiet lines and a cancelled context.
const tick = 20 * time.Millisecond

// open opens the source. For a serial port without a fixed speed it finds
// the speed first; the bytes read at the right speed while finding it are
// returned, to be fed to the stream.
func (r *Reader) open(ctx context.Context) (conn, []byte, error) {
	s := r.cfg.Spec
	switch s.Kind {
	case KindTCP:
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
		c, err := d.DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %w", s.Addr, err)
		}
		return &tcpConn{Conn: c, addr: s.Addr}, nil, nil
	case KindUSB:
		path, err := r.findUSB()
		if err != nil {
			return nil, nil, err
		}
		return r.openSerial(ctx, path, s.Baud)
	default:
		return r.openSerial(ctx, s.Path, s.Baud)
	}
}

// findUSB returns the port of the USB receiver the spec names.
func (r *Reader) findUSB() (string, error) {
	id := r.cfg.Spec.USB
	ports, err := r.cfg.Ports()
	if err != nil {
		return "", fmt.Errorf("list serial ports: %w", err)
	}
	for _, p := range ports {
		if p.IsUSB && strings.EqualFold(p.VID, id.VID) && strings.EqualFold(p.PID, id.PID) &&
			(id.Serial == "" || p.SerialNumber == id.Serial) {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no USB serial port %s plugged in", id)
}

// openSerial opens a serial port at baud, or finds its speed when baud is 0.
func (r *Reader) openSerial(ctx context.Context, path string, baud int) (conn, []byte, error) {
	if _, err := os.Stat(path); err != nil {
		// Cheaper and clearer than the open error while unplugged.
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	first := baud
	if first == 0 {
		first = r.lastBaud
	}
	if first == 0 {
		first = Bauds[0]
	}
	p, err := serial.Open(path, &serial.Mode{BaudRate: first})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := p.SetReadTimeout(tick); err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("set read timeout on %s: %w", path, err)
	}
	c := &serialConn{Port: p, path: path, baud: first}
	if baud != 0 {
		return c, nil, nil
	}
	prefix, err := r.autoBaud(ctx, c)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	r.lastBaud = c.baud
	return c, prefix, nil
}

// autoBaud tries each speed (the last good one first) until one yields
// sentences with valid checksums: two of them, or one at the last good
// speed. It leaves the port at that speed and returns the bytes read there.
func (r *Reader) autoBaud(ctx context.Context, c *serialConn) ([]byte, error) {
	order := make([]int, 0, len(Bauds)+1)
	if r.lastBaud != 0 {
		order = append(order, r.lastBaud)
	}
	for _, b := range Bauds {
		if !slices.Contains(order, b) {
			order = append(order, b)
		}
	}
	buf := make([]byte, 4096)
	for _, baud := range order {
		if err := c.setBaud(baud); err != nil {
			return nil, err
		}
		need := uint64(2)
		if baud == r.lastBaud {
			need = 1
		}
		f := nmeaframe.New(r.cfg.Lax, r.cfg.MaxLine)
		var seen []byte
		deadline := time.Now().Add(r.cfg.ProbeWindow)
		for time.Now().Before(deadline) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			n, err := c.Read(buf)
			if err != nil {
				return nil, fmt.Errorf("read %s at %d baud: %w", c.path, baud, err)
			}
			seen = append(seen, buf[:n]...)
			f.Feed(buf[:n], func([]byte) {})
			if f.Stats().Sentences >= need {
				r.log.Info("line speed found", "port", c.path, "baud", baud)
				return seen, nil
			}
		}
		r.log.Debug("no NMEA at this speed", "port", c.path, "baud", baud, "garbage_bytes", f.Stats().GarbageBytes)
	}
	return nil, fmt.Errorf("no NMEA on %s at any of %v baud", c.path, Bauds)
}

// serialConn is an open serial port.
type serialConn struct {
	serial.Port
	path string
	baud int
}

func (c *serialConn) Name() string { return c.path }
func (c *serialConn) Baud() int    { return c.baud }

func (c *serialConn) setBaud(baud int) error {
	if err := c.SetMode(&serial.Mode{BaudRate: baud}); err != nil {
		return fmt.Errorf("set %s to %d baud: %w", c.path, baud, err)
	}
	if err := c.ResetInputBuffer(); err != nil {
		return fmt.Errorf("flush %s: %w", c.path, err)
	}
	c.baud = baud
	return nil
}

// tcpConn is an open TCP connection to an NMEA server.
type tcpConn struct {
	net.Conn
	addr string
}

func (c *tcpConn) Name() string { return c.addr }
func (c *tcpConn) Baud() int    { return 0 }

// Read waits at most one tick.
func (c *tcpConn) Read(p []byte) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(tick)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}
