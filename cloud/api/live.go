package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"trackgate/cloud/problem"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
)

// liveBuffer is how many events a live stream holds for a slow client;
// beyond, events are dropped and the client told how many.
const liveBuffer = 1024

// liveHeartbeat is how often an idle live stream sends a comment, so that
// proxies and clients see it alive.
const liveHeartbeat = 15 * time.Second

// hub passes events to the live streams of their devices' owners.
type hub struct {
	mu   sync.Mutex
	subs map[int64]map[*subscriber]struct{} // by owner
}

type subscriber struct {
	device  string // only this device's events, when not empty
	events  chan tracks.Event
	mu      sync.Mutex
	dropped int // events lost to a full buffer, not yet reported
}

func newHub() *hub { return &hub{subs: map[int64]map[*subscriber]struct{}{}} }

func (h *hub) subscribe(owner int64, device string) *subscriber {
	s := &subscriber{device: device, events: make(chan tracks.Event, liveBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[owner] == nil {
		h.subs[owner] = map[*subscriber]struct{}{}
	}
	h.subs[owner][s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(owner int64, s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[owner], s)
	if len(h.subs[owner]) == 0 {
		delete(h.subs, owner)
	}
}

func (h *hub) watched(owner int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[owner]) > 0
}

func (h *hub) publish(e tracks.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[e.Owner] {
		if s.device != "" && s.device != e.Device {
			continue
		}
		select {
		case s.events <- e:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}

// takeDropped returns and resets the count of dropped events.
func (s *subscriber) takeDropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

// liveStream serves GET /api/v1/live?device=: Server-Sent Events of the
// user's devices' positions ("position") and status ("status") as they
// arrive, starting with each device's last ones. The stream ends when the
// token expires ("expired"), so that a client reconnects with a fresh one;
// "dropped" tells a client too slow to keep up how many events it missed.
func (s *Server) liveStream(w http.ResponseWriter, r *http.Request) {
	u, claims, ok := s.cfg.Auth.APICaller(w, r, ScopeDevicesRead)
	if !ok {
		return
	}
	q, ok := query(w, r, "device")
	if !ok {
		return
	}
	var devices []*store.Device
	if id := q.Get("device"); id != "" {
		d := s.ownDevice(w, r, u, id, "device")
		if d == nil {
			return
		}
		devices = []*store.Device{d}
	} else {
		var err error
		if devices, err = s.st.Devices(r.Context(), u.ID); err != nil {
			s.failed(w, r, "devices", err)
			return
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		problem.Write(w, problem.ServerError, "streaming unsupported", nil)
		return
	}
	sub := s.live.subscribe(u.ID, q.Get("device"))
	defer s.live.unsubscribe(u.ID, sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString("retry: 3000\n\n")
	for _, d := range devices {
		st, err := s.st.DeviceStateOf(r.Context(), d.ID)
		if err != nil {
			s.log.Warn("live: device state", "device", d.ID, "err", err)
			continue
		}
		if len(st.Position) > 0 {
			writeEvent(&buf, tracks.Event{Device: d.ID, Kind: "position", Time: st.LastTime, Data: st.Position})
		}
		if len(st.Status) > 0 && json.Valid(st.Status) {
			writeEvent(&buf, tracks.Event{Device: d.ID, Kind: "status", Time: st.StatusTime, Data: st.Status})
		}
	}
	if !s.send(w, flusher, &buf) {
		return
	}

	heartbeat := time.NewTicker(liveHeartbeat)
	defer heartbeat.Stop()
	expiry := time.NewTimer(time.Until(claims.ExpiresAt.Time))
	defer expiry.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-expiry.C:
			buf.WriteString("event: expired\ndata: {}\n\n")
			s.send(w, flusher, &buf)
			return
		case <-heartbeat.C:
			buf.WriteString(": ping\n\n")
		case e := <-sub.events:
			writeEvent(&buf, e)
			for more := true; more && buf.Len() < 32<<10; { // take what is waiting
				select {
				case e := <-sub.events:
					writeEvent(&buf, e)
				default:
					more = false
				}
			}
		}
		if n := sub.takeDropped(); n > 0 {
			buf.WriteString("event: dropped\ndata: ")
			json.NewEncoder(&buf).Encode(map[string]int{"count": n}) // ends in a newline
			buf.WriteString("\n")
		}
		if !s.send(w, flusher, &buf) {
			return
		}
	}
}

// writeEvent appends e as one Server-Sent Event: its kind as the event
// name, and {"device", "time", and "position" or "status"} as data.
func writeEvent(buf *bytes.Buffer, e tracks.Event) {
	buf.WriteString("event: ")
	buf.WriteString(e.Kind)
	buf.WriteString("\ndata: ")
	d, _ := json.Marshal(e.Device)
	buf.WriteString(`{"device":`)
	buf.Write(d)
	buf.WriteString(`,"time":"`)
	buf.WriteString(e.Time.UTC().Format(time.RFC3339Nano))
	buf.WriteString(`","`)
	buf.WriteString(e.Kind)
	buf.WriteString(`":`)
	// Compact: a data line must hold no newline.
	if err := json.Compact(buf, e.Data); err != nil {
		buf.WriteString("null")
	}
	buf.WriteString("}\n\n")
}

// send writes and flushes buf, reporting whether the client is still there.
func (s *Server) send(w http.ResponseWriter, f http.Flusher, buf *bytes.Buffer) bool {
	if buf.Len() == 0 {
		return true
	}
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err != nil {
		return false
	}
	f.Flush()
	return true
}
