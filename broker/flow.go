package broker

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// flowHook keeps QoS 1 messages from being dropped for a slow or absent
// durable subscriber (the cloud's ingest bridge). Mochi holds at most
// MaximumInflight unacknowledged messages per client, and drops the next
// ones for that client ("client store quota reached"), as it drops those
// that find the client's write queue (MaximumClientWritesPending) full. So before a message
// fans out, this hook waits while any durable subscriber holds half its
// quota or more in flight, or has half its write queue or more waiting to
// be written: the publisher's PUBACK (at QoS 1) waits with it, its session's
// receive window fills, and the publisher slows to the subscriber's pace —
// backpressure in place of loss.
//
// A message that passes holds a reservation, counted in every durable
// subscriber's backlog, until it has fanned out: publishers that pass at
// the same moment cannot together overrun the marks, however many they
// are. QoS 0 messages wait and reserve too: they take room in the write
// queue, and a flood of them must not crowd out what was promised. The
// other half of the quota and of the queue is the margin for what passes
// without a reservation: the broker's own (inline) publishes and the
// durable subscribers' own.
//
// Waiting publishers sleep until a durable subscriber's acknowledgements
// bring its backlog an eighth below the marks (then all of them look
// again, and about as many messages as there are publishers pass: the
// eighth), or flowPoll at the latest.
//
// Durable subscribers are the clients whose subscriptions take every
// device's messages (a wildcard or shared filter) and whom the broker
// trusts to keep up: services with the ingest or operator scope (every
// client when the broker allows all), while connected or away for less
// than abandonAfter. A person's browser or a device never
// slows the others down; a slow one of those loses what overflows its own
// quota, counted in trackgate_broker_messages_dropped.
type flowHook struct {
	mqtt.HookBase
	ctx       context.Context // ends when the broker stops: waiting ends too
	clients   *mqtt.Clients
	high      int                        // messages in flight to a subscriber at which publishers wait
	highQueue int32                      // messages waiting in a connected subscriber's write queue at which publishers wait
	low       int                        // in flight below which waiting publishers are woken
	lowQueue  int32                      // waiting to be written below which waiting publishers are woken
	trusted   func(cl *mqtt.Client) bool // may this client be a durable subscriber?
	waited    prometheus.Counter         // publishes that had to wait

	mu      sync.RWMutex
	durable map[string]int // client id → its wildcard subscriptions

	resMu    sync.Mutex
	reserved int                        // messages that passed and have not fanned out yet
	holding  map[*mqtt.Client]time.Time // their publishers (a client publishes one at a time), and when
	swept    time.Time                  // when stale reservations were last given up

	waiting atomic.Int32  // publishers waiting
	wakeMu  sync.Mutex    // guards wake
	wake    chan struct{} // closed (and replaced) to wake the waiting publishers
}

// newFlowHook returns the hook for subscribers that hold at most quota
// messages in flight, and have at most writeQueue waiting to be written
// while connected.
func newFlowHook(ctx context.Context, clients *mqtt.Clients, quota, writeQueue int, trusted func(*mqtt.Client) bool, waited prometheus.Counter) *flowHook {
	h := &flowHook{ctx: ctx, clients: clients, high: max(quota/2, 1), highQueue: int32(max(writeQueue/2, 1)),
		trusted: trusted, waited: waited,
		durable: map[string]int{}, holding: map[*mqtt.Client]time.Time{}, wake: make(chan struct{})}
	h.low, h.lowQueue = h.high-h.high/8, h.highQueue-h.highQueue/8
	return h
}

// ID names the hook.
func (h *flowHook) ID() string { return "flow-control" }

// Provides says which events the hook handles.
func (h *flowHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPublished, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnClientExpired, mqtt.OnDisconnect,
		mqtt.OnQosComplete, mqtt.OnQosDropped:
		return true
	}
	return false
}

// fanIn reports whether a filter takes messages of every device.
func fanIn(filter string) bool {
	return strings.HasPrefix(filter, "$share/") || strings.ContainsAny(filter, "+#")
}

// OnSubscribed records a trusted client's fan-in subscriptions.
func (h *flowHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || !h.trusted(cl) {
		return
	}
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && fanIn(f.Filter) {
			h.mu.Lock()
			h.durable[cl.ID]++
			h.mu.Unlock()
		}
	}
}

// OnUnsubscribed forgets the client's fan-in subscriptions it dropped.
func (h *flowHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		if fanIn(f.Filter) {
			h.mu.Lock()
			if h.durable[cl.ID]--; h.durable[cl.ID] <= 0 {
				delete(h.durable, cl.ID)
			}
			h.mu.Unlock()
		}
	}
}

// OnDisconnect gives up the reservation of a publisher that went away
// before its message fanned out, and forgets a client whose session ends
// with its connection.
func (h *flowHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.unreserve(cl)
	if expire && !cl.IsTakenOver() {
		h.forget(cl.ID)
	}
}

// OnClientExpired forgets a session that expired.
func (h *flowHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl.ID) }

func (h *flowHook) forget(id string) {
	h.mu.Lock()
	_, ok := h.durable[id]
	delete(h.durable, id)
	h.mu.Unlock()
	if ok { // publishers it held back look again
		h.release()
	}
}

// OnQosComplete wakes the waiting publishers when a durable subscriber's
// acknowledgement brings its backlog below the low marks.
func (h *flowHook) OnQosComplete(cl *mqtt.Client, _ packets.Packet) { h.acked(cl) }

// OnQosDropped is OnQosComplete for a message given up.
func (h *flowHook) OnQosDropped(cl *mqtt.Client, _ packets.Packet) { h.acked(cl) }

func (h *flowHook) acked(cl *mqtt.Client) {
	if h.waiting.Load() == 0 || cl.Net.Inline {
		return
	}
	if cl.State.Inflight.Len() < h.low && writesQueued(cl) < h.lowQueue && h.isDurable(cl) {
		h.release()
	}
}

// release wakes every waiting publisher to look again.
func (h *flowHook) release() {
	h.wakeMu.Lock()
	close(h.wake)
	h.wake = make(chan struct{})
	h.wakeMu.Unlock()
}

// woken returns the channel the next release closes.
func (h *flowHook) woken() <-chan struct{} {
	h.wakeMu.Lock()
	defer h.wakeMu.Unlock()
	return h.wake
}

// restore records the fan-in subscriptions of sessions loaded from the
// store, which Mochi restores without OnSubscribed.
func (h *flowHook) restore() {
	for _, cl := range h.clients.GetAll() {
		for f := range cl.State.Subscriptions.GetAll() {
			if fanIn(f) {
				h.mu.Lock()
				h.durable[cl.ID]++
				h.mu.Unlock()
			}
		}
	}
}

// abandonAfter is how long a durable subscriber may be away and still
// hold publishers back: long enough for the cloud to restart, short
// enough that an operator's forgotten persistent session does not stall
// the broker. A session away longer keeps messages up to its quota, then
// loses the next ones, counted.
const abandonAfter = 5 * time.Minute

// isDurable reports whether cl is a durable subscriber.
func (h *flowHook) isDurable(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := h.durable[cl.ID]
	return ok
}

// congested reports whether a durable subscriber holds too many messages,
// counting the extra ones reserved: half its quota in flight, or,
// connected, half its write queue waiting. One away for abandonAfter or
// longer no longer counts.
func (h *flowHook) congested(extra int) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for id := range h.durable {
		cl, ok := h.clients.Get(id)
		if !ok {
			continue
		}
		if cl.Closed() {
			if cl.State.Inflight.Len()+extra >= h.high && time.Since(time.Unix(cl.StopTime(), 0)) < abandonAfter {
				return true
			}
			continue
		}
		if cl.State.Inflight.Len()+extra >= h.high || int(writesQueued(cl))+extra >= int(h.highQueue) {
			return true
		}
	}
	return false
}

// outboundQtyOffset is where Mochi's Client.State keeps the number of
// messages in the client's write queue (an unexported int32 it updates
// atomically), or -1 if this Mochi version has no such field.
var outboundQtyOffset = func() uintptr {
	f, ok := reflect.TypeFor[mqtt.ClientState]().FieldByName("outboundQty")
	if !ok || f.Type.Kind() != reflect.Int32 {
		return ^uintptr(0)
	}
	return f.Offset
}()

// writesQueued is the number of messages waiting in cl's write queue, which
// Mochi does not export; 0 if it cannot be read (then only the quota
// counts).
func writesQueued(cl *mqtt.Client) int32 {
	if outboundQtyOffset == ^uintptr(0) {
		return 0
	}
	return atomic.LoadInt32((*int32)(unsafe.Add(unsafe.Pointer(&cl.State), outboundQtyOffset)))
}

// flowPoll is how often a waiting publish looks again when nothing woke
// it: a subscriber that went away, or one whose write queue drained
// without an acknowledgement in between.
const flowPoll = 50 * time.Millisecond

// OnPublish waits, before a message fans out, until no durable subscriber
// is congested, and reserves the message its room. A durable
// subscriber's own publishes never wait: its connection also carries the
// acknowledgements that would end the wait. A publisher that disconnects
// meanwhile has its message dropped unacknowledged: it sends it again on
// its next connection.
func (h *flowHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.isDurable(cl) || h.pass(cl) {
		return pk, nil
	}
	h.waited.Inc()
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	t := time.NewTicker(flowPoll)
	defer t.Stop()
	for {
		woken := h.woken() // before the check: a release after it wakes us
		if h.pass(cl) {
			return pk, nil
		}
		select {
		case <-h.ctx.Done():
			return pk, packets.ErrRejectPacket
		case <-woken:
		case <-t.C:
		}
		if !cl.Net.Inline && cl.Closed() {
			return pk, packets.ErrRejectPacket
		}
	}
}

// OnPublished gives up the reservation of a message that fanned out: it
// is counted in the subscribers' queues and quotas now.
func (h *flowHook) OnPublished(cl *mqtt.Client, _ packets.Packet) { h.unreserve(cl) }

// pass reports whether cl's message may fan out now, and then reserves it
// room until OnPublished. A reservation still held otherwise belongs to a
// message that a later hook refused (the uplink tap, when its spool is
// full), which Mochi does not report: the publisher's next message shows
// that it is over, and while the subscribers are congested, reservations
// older than staleReservation are given up once a second, so that refused
// messages never hold the others back for long. The broker's own client
// publishes from many goroutines at once, so its messages pass without a
// reservation, within the margin.
func (h *flowHook) pass(cl *mqtt.Client) bool {
	h.resMu.Lock()
	defer h.resMu.Unlock()
	h.unreserveLocked(cl)
	if h.congested(h.reserved) {
		now := time.Now()
		if now.Sub(h.swept) < staleReservation {
			return false
		}
		h.swept = now
		for c, at := range h.holding {
			if now.Sub(at) >= staleReservation {
				h.unreserveLocked(c)
			}
		}
		if h.congested(h.reserved) {
			return false
		}
	}
	if !cl.Net.Inline {
		h.holding[cl] = time.Now()
		h.reserved++
	}
	return true
}

// staleReservation is how old a reservation is when it is taken for one
// whose message was refused after it passed: a message fans out within
// microseconds of passing, unless its publisher's PUBACK is slow to write.
const staleReservation = time.Second

// unreserve gives up cl's reservation, if it holds one.
func (h *flowHook) unreserve(cl *mqtt.Client) {
	if cl.Net.Inline {
		return
	}
	h.resMu.Lock()
	h.unreserveLocked(cl)
	h.resMu.Unlock()
}

// unreserveLocked is unreserve with resMu held.
func (h *flowHook) unreserveLocked(cl *mqtt.Client) {
	if _, ok := h.holding[cl]; ok {
		delete(h.holding, cl)
		h.reserved--
	}
}
