package broker

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// limitsHook holds every client's keepalive within [min, max] seconds; a
// client that asks for none gets max, so that a dead connection is noticed.
// MQTT 5 clients are told the keepalive the broker chose.
type limitsHook struct {
	mqtt.HookBase
	min, max uint16
}

// ID names the hook.
func (h *limitsHook) ID() string { return "limits" }

// Provides says which events the hook handles.
func (h *limitsHook) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect bounds the client's keepalive.
func (h *limitsHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	ka := cl.State.Keepalive
	switch {
	case ka == 0 || ka > h.max:
		ka = h.max
	case ka < h.min:
		ka = h.min
	}
	if ka != cl.State.Keepalive {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true
	}
	return nil
}

// rateLimited closes, as soon as they are accepted, the connections of a
// remote address that opens more than its rate allows.
type rateLimited struct {
	net.Listener
	limit   rate.Limit
	burst   int
	dropped prometheus.Counter

	mu      sync.Mutex
	byAddr  map[string]*addrLimiter
	cleaned time.Time
}

type addrLimiter struct {
	*rate.Limiter
	seen time.Time
}

func newRateLimited(ln net.Listener, perSecond float64, burst int, dropped prometheus.Counter) *rateLimited {
	return &rateLimited{Listener: ln, limit: rate.Limit(perSecond), burst: burst, dropped: dropped,
		byAddr: map[string]*addrLimiter{}, cleaned: time.Now()}
}

// Accept returns the next connection its address may open.
func (l *rateLimited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.allow(c.RemoteAddr()) {
			return c, nil
		}
		l.dropped.Inc()
		c.Close()
	}
}

func (l *rateLimited) allow(addr net.Addr) bool {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.cleaned) > time.Minute {
		// An address idle long enough has a full bucket again: forget it.
		idle := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Minute
		for a, al := range l.byAddr {
			if now.Sub(al.seen) > idle {
				delete(l.byAddr, a)
			}
		}
		l.cleaned = now
	}
	al := l.byAddr[host]
	if al == nil {
		al = &addrLimiter{Limiter: rate.NewLimiter(l.limit, l.burst)}
		l.byAddr[host] = al
	}
	al.seen = now
	return al.AllowN(now, 1)
}
