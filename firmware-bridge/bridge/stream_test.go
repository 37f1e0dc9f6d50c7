package bridge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// lineHandler serves a line protocol: each line ending in '\n', at most
// 64 bytes, is answered "ok\n".
type lineHandler struct{}

func (lineHandler) ServeConn(_ context.Context, c *Conn) error {
	sc := c.Scanner(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return 0, nil, io.ErrUnexpectedEOF
		}
		return 0, nil, nil
	}, 64)
	for sc.Scan() {
		if _, err := c.Write([]byte("ok\n")); err != nil {
			return err
		}
	}
	return sc.Err()
}

// serveLines runs serveStream with lineHandler on a loopback port.
func serveLines(t *testing.T, limits Limits) (addr string, h *Host) {
	t.Helper()
	h = &Host{log: slog.New(slog.DiscardHandler), metrics: newMetrics(prometheus.NewRegistry(), func() float64 { return 1 })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.serveStream(ctx, "lines", ln, lineHandler{}, limits) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveStream: %v", err)
		}
	})
	return ln.Addr().String(), h
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answered reports whether c gets "ok\n" to line.
func answered(t *testing.T, c net.Conn, line string) bool {
	t.Helper()
	if _, err := io.WriteString(c, line); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && got == "ok\n"
}

// closed reports whether the server closes c (or resets it, having left
// what it sent unread) within 5 s.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// TestStreamLimits: each kind of hostile connection is closed and counted
// by its reason, while a well-behaved connection opened before it keeps
// being served.
func TestStreamLimits(t *testing.T) {
	limits := Limits{Idle: 300 * time.Millisecond, Frame: 200 * time.Millisecond, PerAddress: 4, Rate: 10, Burst: 5}
	for _, tc := range []struct {
		name   string
		reason string
		abuse  func(t *testing.T, addr string)
	}{
		{"silence", CloseIdle, func(t *testing.T, addr string) {
			c := dial(t, addr)
			if !closed(c) {
				t.Error("a silent connection stays open")
			}
		}},
		{"a slow writer", CloseSlow, func(t *testing.T, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "half a li") // and never the rest
			if !closed(c) {
				t.Error("a half frame stays open")
			}
		}},
		{"a frame over the cap", CloseBadFrame, func(t *testing.T, addr string) {
			c := dial(t, addr)
			io.WriteString(c, strings.Repeat("x", 100)+"\n")
			if !closed(c) {
				t.Error("an oversize frame stays open")
			}
		}},
		{"a flood", CloseFlood, func(t *testing.T, addr string) {
			c := dial(t, addr)
			io.WriteString(c, strings.Repeat("hello\n", 50))
			if !closed(c) {
				t.Error("a flood stays open")
			}
		}},
		{"too many connections from one address", CloseAddress, func(t *testing.T, addr string) {
			for range 3 { // with the good one, 4: the limit
				if c := dial(t, addr); !answered(t, c, "x\n") {
					t.Fatal("a connection under the limit is not served")
				}
			}
			if c := dial(t, addr); !closed(c) {
				t.Error("the fifth connection stays open")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, h := serveLines(t, limits)
			good := dial(t, addr)
			if !answered(t, good, "hello\n") {
				t.Fatal("no answer")
			}
			// The good connection talks while the abuse goes on.
			done := make(chan struct{})
			alive := make(chan bool, 1)
			go func() {
				ok := true
				for {
					select {
					case <-done:
						alive <- ok
						return
					case <-time.After(150 * time.Millisecond):
						ok = ok && answered(t, good, "ping\n")
					}
				}
			}()
			tc.abuse(t, addr)
			close(done)
			if !<-alive || !answered(t, good, "still there\n") {
				t.Error("the good connection was affected")
			}
			want := 1.0
			if got := testutil.ToFloat64(h.metrics.closed.WithLabelValues("lines", tc.reason)); got != want {
				t.Errorf("closed{reason=%s} = %v, want %v", tc.reason, got, want)
			}
		})
	}
}
