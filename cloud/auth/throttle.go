package auth

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// throttle counts attempts per key (an account, an address, a client) in a
// fixed window: a key with max attempts counted is refused until its window
// ends. Attempts are counted before they are checked (take) and a success
// is given back (giveBack, reset), so only failures stay counted, and
// guesses sent in parallel cannot all pass before the first is counted.
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

// take counts an attempt of key at now, unless key is blocked at now: then it counts nothing and returns false and how long the block
// lasts. The check and the count are one step under the lock.
func (t *throttle) take(key string, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f != nil && now.Before(f.until) {
		if f.n >= t.max {
			return false, f.until.Sub(now)
		}
		f.n++
		return true, 0
	}
	if len(t.keys) >= maxThrottleKeys {
		for k, f := range t.keys {
			if !now.Before(f.until) {
				delete(t.keys, k)
			}
		}
	}
	t.keys[key] = &failures{n: 1, until: now.Add(t.window)}
	return true, 0
}

// giveBack uncounts an attempt of key counted by take that succeeded.
func (t *throttle) giveBack(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.keys[key]; f != nil && f.n > 0 {
		f.n--
	}
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
