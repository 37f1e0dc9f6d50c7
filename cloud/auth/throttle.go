package auth

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// throttle counts failures per key (an account, an address, a client) in a
// fixed window: a key with max failures is refused until its window ends.
// It is kept in memory: a restart forgets it.
type throttle struct {
	max    int
	window time.Duration

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	until time.Time // the window's end
}

// maxThrottleKeys bounds a throttle's memory: past it, ended windows are
// swept out on the next failure.
const maxThrottleKeys = 100_000

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{max: max, window: window, keys: map[string]*failures{}}
}

// blocked reports whether key is refused at now, and for how long.
func (t *throttle) blocked(key string, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil || !now.Before(f.until) {
		return false, 0
	}
	return f.n >= t.max, f.until.Sub(now)
}

// fail counts a failure of key at now.
func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil || !now.Before(f.until) {
		if len(t.keys) >= maxThrottleKeys {
			for k, f := range t.keys {
				if !now.Before(f.until) {
					delete(t.keys, k)
				}
			}
		}
		f = &failures{until: now.Add(t.window)}
		t.keys[key] = f
	}
	f.n++
}

// reset forgets key's failures (after a success).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}

// clientAddr is the address a request came from: the connection's peer,
// never a header a client can forge (X-Forwarded-For).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
