// Package tracks is the cloud's recording sessions. A track is a device and
// a time span: its points are the device's positions in InfluxDB whose fix
// time falls in the span, and its row in the SQL store holds the span and a
// summary kept fresh while positions arrive.
//
// Tracks are started and stopped by people (the API), by devices (their
// session topic), or automatically for devices that never do (a new track
// after a gap longer than the device's split interval, closed after that
// long without positions). A position belongs to the track whose span holds
// its fix time, whenever it arrives: positions buffered on a phone or a
// gateway that arrive after their track stopped still land in it.
//
// Summaries are updated incrementally from the positions the ingest bridge
// stored, in the same transaction for a whole batch; a position that comes
// out of order marks the summary dirty and a worker computes it again from
// InfluxDB, which holds the truth.
package tracks

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"trackgate/cloud/geo"
	"trackgate/cloud/ingest"
	"trackgate/cloud/store"
	"trackgate/internal/position"
)

// Store is what the service keeps in the SQL store.
type Store interface {
	Device(ctx context.Context, id string) (*store.Device, error)
	Track(ctx context.Context, id string) (*store.Track, error)
	SaveTrack(ctx context.Context, t *store.Track) error
	DeleteTrack(ctx context.Context, id string) error
	DirtyTracks(ctx context.Context, limit int) ([]*store.Track, error)
	IdleTracks(ctx context.Context, now time.Time) ([]*store.Track, error)
	SetDeviceStatus(ctx context.Context, device string, status []byte, at time.Time) error
	InTrackTx(ctx context.Context, f func(*store.TrackTx) error) error
}

// Points is where positions are stored (InfluxDB).
type Points interface {
	Points(ctx context.Context, device string, from, to time.Time, fn func(*position.Position) error) error
	DeletePoints(ctx context.Context, device string, from, to time.Time) error
}

// Config configures the service.
type Config struct {
	Store  Store
	Points Points
	// Live, if set, gets every position and status of a registered device
	// once it is stored, when Watched (if set) says its owner is watching.
	Live    func(Event)
	Watched func(owner int64) bool
	Logger  *slog.Logger
	// RecomputeEvery is how often dirty summaries are computed again
	// (default 2 s); SweepEvery how often idle automatic tracks are closed
	// (default 15 s).
	RecomputeEvery, SweepEvery time.Duration
	Now                        func() time.Time // default time.Now
}

// Event is a device's position or status, for live views.
type Event struct {
	Owner  int64           // the device's owner
	Device string          // device id
	Kind   string          // "position" or "status"
	Time   time.Time       // fix time of a position; arrival of a status
	Data   json.RawMessage // the position (wire contract JSON) or status object
}

// Service records and serves tracks. Create it with New.
type Service struct {
	cfg    Config
	st     Store
	pts    Points
	log    *slog.Logger
	logErr rate.Sometimes
}

// New returns a service. It does no I/O.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RecomputeEvery <= 0 {
		cfg.RecomputeEvery = 2 * time.Second
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 15 * time.Second
	}
	return &Service{cfg: cfg, st: cfg.Store, pts: cfg.Points, log: cfg.Logger,
		logErr: rate.Sometimes{First: 5, Interval: 10 * time.Second}}
}

// Errors of the service's operations.
var (
	// ErrRecording: the device already records a track someone started.
	ErrRecording = store.ErrRecording
	// ErrNotRecording: the track or device is not recording.
	ErrNotRecording = errors.New("not recording")
)

// MaxNameLen is the longest track name, in bytes.
const MaxNameLen = 200

// CheckName validates a track name.
func CheckName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("a track name is at most %d bytes", MaxNameLen)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("a track name has no control characters")
	}
	return nil
}

// NewID returns a new random track id: 16 characters of base32 (80 bits).
func NewID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// ValidID reports whether id has the form of a track id.
func ValidID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// Summary returns a track's statistics.
func Summary(t *store.Track) geo.Summary {
	acc, _ := accumulator(t)
	return acc.Summary()
}

func accumulator(t *store.Track) (*geo.Accumulator, error) {
	var acc geo.Accumulator
	if len(t.Summary) > 0 {
		if err := json.Unmarshal(t.Summary, &acc); err != nil {
			return &geo.Accumulator{}, fmt.Errorf("track %s: summary: %w", t.ID, err)
		}
	}
	return &acc, nil
}

func setAccumulator(t *store.Track, acc *geo.Accumulator) {
	t.Summary, _ = json.Marshal(acc)
}

// Start starts a track for device d at instant at, named name. A track the
// device records automatically is closed first; one someone started makes
// it ErrRecording.
func (s *Service) Start(ctx context.Context, d *store.Device, name string, at time.Time) (*store.Track, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	var out *store.Track
	err := s.st.InTrackTx(ctx, func(tx *store.TrackTx) error {
		tracks, err := tx.Around(d, at, at)
		if err != nil {
			return err
		}
		for _, t := range tracks {
			if t.Recording() && !t.Auto {
				return fmt.Errorf("device %s: %w (track %s)", d.ID, ErrRecording, t.ID)
			}
		}
		// Never overlap an earlier track: the new one starts after them.
		for _, t := range tracks {
			end := at
			if t.Recording() { // automatic: closed at its last point, at the latest now
				end = lastPoint(t)
				if end.After(at) {
					end = at
				}
				t.Stopped = &end
				if err := tx.Save(t); err != nil {
					return err
				}
			}
			if t.Stopped != nil && !at.After(*t.Stopped) {
				at = t.Stopped.Add(time.Nanosecond)
			}
		}
		// Dirty: positions of the span may be stored already (a device's
		// buffered positions can arrive before its start command).
		out = &store.Track{ID: NewID(), OwnerID: d.OwnerID, Device: d.ID, Name: name, Started: at.UTC(), Touched: s.cfg.Now(), Dirty: true}
		return tx.Save(out)
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("track started", "track", out.ID, "device", d.ID, "at", out.Started)
	return out, nil
}

// Imported files the span from first to last of positions imported for
// device d as a stopped track named name. Its summary is acc when the
// importer could tell it (every point of the span came from the import, in
// time order), else it is computed from the points. Importing is
// idempotent: when d already has a track someone made with exactly that
// span, that track is returned (created false) and no other is made. Other
// tracks overlapping the span have their summaries computed again, as they
// may hold imported points.
func (s *Service) Imported(ctx context.Context, d *store.Device, name string, first, last time.Time, acc *geo.Accumulator) (t *store.Track, created bool, err error) {
	if err := CheckName(name); err != nil {
		return nil, false, err
	}
	first, last = first.UTC(), last.UTC()
	err = s.st.InTrackTx(ctx, func(tx *store.TrackTx) error {
		t, created = nil, false
		tracks, err := tx.Around(d, first, last)
		if err != nil {
			return err
		}
		for _, o := range tracks {
			if !o.Auto && o.Stopped != nil && o.Started.Equal(first) && o.Stopped.Equal(last) {
				t = o
				return nil
			}
		}
		for _, o := range tracks {
			if o.Holds(first) || o.Holds(last) || (o.Started.After(first) && o.Started.Before(last)) {
				o.Dirty = true
				if err := tx.Save(o); err != nil {
					return err
				}
			}
		}
		t = &store.Track{ID: NewID(), OwnerID: d.OwnerID, Device: d.ID, Name: name, Started: first, Stopped: &last, Touched: s.cfg.Now(), Dirty: acc == nil}
		if acc != nil {
			setAccumulator(t, acc)
		}
		created = true
		return tx.Save(t)
	})
	if err != nil {
		return nil, false, err
	}
	if created {
		s.log.Info("track imported", "track", t.ID, "device", d.ID, "from", first, "to", last)
	}
	return t, created, nil
}

// Stop ends track t at instant at (at the latest: its span ends no later
// than at); ErrNotRecording if it has stopped.
func (s *Service) Stop(ctx context.Context, t *store.Track, at time.Time) (*store.Track, error) {
	for range 3 {
		if !t.Recording() {
			return t, fmt.Errorf("track %s: %w", t.ID, ErrNotRecording)
		}
		if at.Before(t.Started) {
			at = t.Started
		}
		at = at.UTC()
		t.Stopped = &at
		if lastPoint(t).After(at) { // points past the end were counted
			t.Dirty = true
		}
		err := s.st.SaveTrack(ctx, t)
		if !errors.Is(err, store.ErrChanged) {
			if err == nil {
				s.log.Info("track stopped", "track", t.ID, "device", t.Device, "at", at)
			}
			return t, err
		}
		if t, err = s.st.Track(ctx, t.ID); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("track %s: %w", t.ID, store.ErrChanged)
}

// Rename changes a track's name.
func (s *Service) Rename(ctx context.Context, t *store.Track, name string) (*store.Track, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	for range 3 {
		t.Name = name
		err := s.st.SaveTrack(ctx, t)
		if !errors.Is(err, store.ErrChanged) {
			return t, err
		}
		if t, err = s.st.Track(ctx, t.ID); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("track %s: %w", t.ID, store.ErrChanged)
}

// Delete deletes track t: first its points (so that a failure leaves the
// track to delete again), then its row. A track still recording is stopped
// first, so that its span is fixed.
func (s *Service) Delete(ctx context.Context, t *store.Track) error {
	if t.Recording() {
		var err error
		if t, err = s.Stop(ctx, t, s.cfg.Now()); err != nil && !errors.Is(err, ErrNotRecording) {
			return err
		}
	}
	if err := s.pts.DeletePoints(ctx, t.Device, t.Started, *t.Stopped); err != nil {
		return fmt.Errorf("track %s: delete points: %w", t.ID, err)
	}
	if err := s.st.DeleteTrack(ctx, t.ID); err != nil {
		return err
	}
	s.log.Info("track deleted", "track", t.ID, "device", t.Device, "from", t.Started, "to", *t.Stopped)
	return nil
}

// Points calls fn with each point of track t in time order (fn's position
// is reused between calls).
func (s *Service) Points(ctx context.Context, t *store.Track, fn func(*position.Position) error) error {
	return s.pts.Points(ctx, t.Device, t.Started, spanEnd(t), fn)
}

// spanEnd is the end of a track's span; the far future while it records.
func spanEnd(t *store.Track) time.Time {
	if t.Stopped != nil {
		return *t.Stopped
	}
	return time.Unix(0, 1<<62).UTC()
}

// lastPoint is the fix time of a track's newest point; its start when it
// has none.
func lastPoint(t *store.Track) time.Time {
	if last := Summary(t).Last; !last.IsZero() {
		return last
	}
	return t.Started
}

// sessionMessage is a device's recording command on devices/{id}/session.
type sessionMessage struct {
	Action string    `json:"action"`
	Name   string    `json:"name"`
	Time   time.Time `json:"time"` // optional: the device's instant of the command
}

// Session carries out a device's recording command (payload received at
// instant at on devices/{device}/session): start or stop. Commands are
// idempotent, as MQTT may deliver them twice: a start while a track records
// keeps it, a stop with none recording does nothing.
func (s *Service) Session(ctx context.Context, device string, payload []byte, at time.Time) error {
	var m sessionMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return fmt.Errorf("session of %s: %w", device, err)
	}
	if !m.Time.IsZero() {
		// The device's clock, when it gives one, within reason.
		if m.Time.After(at.Add(5*time.Minute)) || m.Time.Before(at.Add(-30*24*time.Hour)) {
			return fmt.Errorf("session of %s: time %s is too far from now", device, m.Time.Format(time.RFC3339))
		}
		at = m.Time
	}
	d, err := s.st.Device(ctx, device)
	if err != nil {
		return fmt.Errorf("session of %s: %w", device, err)
	}
	switch m.Action {
	case "start":
		_, err := s.Start(ctx, d, m.Name, at)
		if errors.Is(err, ErrRecording) {
			s.log.Info("device asked to start while recording; the track goes on", "device", device)
			return nil
		}
		return err
	case "stop":
		t, err := s.Recording(ctx, d)
		if err != nil || t == nil {
			return err
		}
		_, err = s.Stop(ctx, t, at)
		return err
	}
	return fmt.Errorf("session of %s: unknown action %q", device, m.Action)
}

// Recording returns the track device d records, or nil when it records
// none.
func (s *Service) Recording(ctx context.Context, d *store.Device) (*store.Track, error) {
	var out *store.Track
	err := s.st.InTrackTx(ctx, func(tx *store.TrackTx) error {
		now := s.cfg.Now()
		ts, err := tx.Around(d, now, now)
		for _, t := range ts {
			if t.Recording() {
				out = t
			}
		}
		return err
	})
	return out, err
}

// Status records a device's status message (received at instant at) and
// passes it on to live views.
func (s *Service) Status(ctx context.Context, device string, payload []byte, at time.Time) error {
	d, err := s.st.Device(ctx, device)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.st.SetDeviceStatus(ctx, device, payload, at); err != nil {
		return err
	}
	if s.cfg.Live != nil {
		s.cfg.Live(Event{Owner: d.OwnerID, Device: device, Kind: "status", Time: at, Data: json.RawMessage(payload)})
	}
	return nil
}

// Record files positions the ingest bridge stored: each updates the
// summary of the track whose span holds its fix time (an automatic one is
// made or extended for devices with an automatic split), and the newest
// becomes its device's last position. It is the ingest bridge's OnStored
// hook: an error is logged, not returned, as the positions are safe in
// InfluxDB and summaries are computed again from them when they miss some.
func (s *Service) Record(ctx context.Context, batch []ingest.Stored) {
	byDevice := map[string][]position.Position{}
	for i := range batch {
		byDevice[batch[i].Device] = append(byDevice[batch[i].Device], batch[i].Position)
	}
	var events []Event
	err := s.st.InTrackTx(ctx, func(tx *store.TrackTx) error {
		events = events[:0]
		devices, err := tx.Devices(slices.Collect(maps.Keys(byDevice)))
		if err != nil {
			return err
		}
		windows := make([]store.Window, 0, len(devices))
		for device, ps := range byDevice {
			slices.SortStableFunc(ps, func(a, b position.Position) int { return a.Time.Compare(b.Time) })
			if d := devices[device]; d != nil { // else not registered (a receiver of a gateway without the cloud's registration)
				windows = append(windows, store.Window{Device: d, From: ps[0].Time.Add(-d.AutoSplit), To: ps[len(ps)-1].Time.Add(d.AutoSplit)})
			}
		}
		around, err := tx.AroundEach(windows)
		if err != nil {
			return err
		}
		lasts := make([]store.Last, 0, len(windows))
		for _, w := range windows {
			d, ps := w.Device, byDevice[w.Device.ID]
			if err := s.record(tx, d, ps, around[d.ID]); err != nil {
				return err
			}
			newest := &ps[len(ps)-1]
			lasts = append(lasts, store.Last{Device: d.ID, At: newest.Time, Position: newest.AppendJSON(nil)})
			if s.cfg.Live != nil && (s.cfg.Watched == nil || s.cfg.Watched(d.OwnerID)) {
				for i := range ps {
					events = append(events, Event{Owner: d.OwnerID, Device: d.ID, Kind: "position", Time: ps[i].Time, Data: ps[i].AppendJSON(nil)})
				}
			}
		}
		return tx.SetLast(lasts)
	})
	if err != nil {
		s.logErr.Do(func() {
			s.log.Error("recording positions in tracks failed; their summaries will miss them", "err", err)
		})
		return
	}
	for _, e := range events {
		s.cfg.Live(e)
	}
}

// record files the positions ps (in time order) of device d, given its
// tracks around them (by start, as TrackTx.Around returns them).
func (s *Service) record(tx *store.TrackTx, d *store.Device, ps []position.Position, tracks []*store.Track) error {
	now := s.cfg.Now()
	accs := map[*store.Track]*geo.Accumulator{}
	acc := func(t *store.Track) *geo.Accumulator {
		if a, ok := accs[t]; ok {
			return a
		}
		a, err := accumulator(t)
		if err != nil {
			s.logErr.Do(func() { s.log.Warn("computing a track summary again", "err", err) })
			t.Dirty = true
		}
		accs[t] = a
		return a
	}
	var saved []*store.Track // the new and changed tracks, to save in order
	touch := func(t *store.Track) {
		if !slices.Contains(saved, t) {
			saved = append(saved, t)
		}
	}
	for i := range ps {
		p := &ps[i]
		t := holder(tracks, p.Time)
		if t != nil && t.Auto && t.Recording() && d.AutoSplit > 0 {
			// A gap longer than the split interval ends the automatic track.
			if lastT := acc(t).Summary().Last; !lastT.IsZero() && p.Time.Sub(lastT) > d.AutoSplit {
				t.Stopped = &lastT
				touch(t)
				t = nil
			}
		}
		if t == nil && d.AutoSplit > 0 {
			var created bool
			if t, created = autoTrack(tracks, d, p.Time, now); created {
				tracks = append(tracks, t)
				slices.SortFunc(tracks, func(a, b *store.Track) int { return a.Started.Compare(b.Started) })
				accs[t] = &geo.Accumulator{}
			}
		}
		if t == nil {
			continue
		}
		if !acc(t).Add(p) {
			t.Dirty = true
		}
		t.Touched = now
		touch(t)
	}
	// Closing comes before opening: a device records one track at a time.
	slices.SortStableFunc(saved, func(a, b *store.Track) int {
		return cmpBool(a.Recording(), b.Recording())
	})
	for _, t := range saved {
		if a, ok := accs[t]; ok {
			setAccumulator(t, a)
		}
		if err := tx.Save(t); err != nil {
			return err
		}
	}
	return nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// holder returns the track (of tracks, by start) whose span holds at, or nil.
func holder(tracks []*store.Track, at time.Time) *store.Track {
	for i := len(tracks) - 1; i >= 0; i-- {
		if tracks[i].Holds(at) {
			return tracks[i]
		}
	}
	return nil
}

// autoTrack finds or makes the automatic track of device d (with tracks, by
// start) for a position at instant at that no track holds: the automatic
// track just before it grows to take it when it ended less than the split
// interval before; otherwise a new track starts, recording when the
// position is recent and newer than every track, else spanning the position
// alone. It reports whether the track is new.
func autoTrack(tracks []*store.Track, d *store.Device, at, now time.Time) (*store.Track, bool) {
	var prev, next *store.Track
	for _, t := range tracks {
		if !t.Started.After(at) {
			prev = t
		} else if next == nil {
			next = t
		}
	}
	live := next == nil && now.Sub(at) <= d.AutoSplit
	if prev != nil && prev.Auto && prev.Stopped != nil && at.Sub(*prev.Stopped) <= d.AutoSplit {
		if live {
			prev.Stopped = nil
		} else {
			end := at
			prev.Stopped = &end
		}
		return prev, false
	}
	t := &store.Track{ID: NewID(), OwnerID: d.OwnerID, Device: d.ID, Auto: true, Started: at, Touched: now}
	if !live {
		end := at
		t.Stopped = &end
	}
	return t, true
}

// Run computes dirty summaries again and closes idle automatic tracks until
// ctx ends.
func (s *Service) Run(ctx context.Context) error {
	recompute := time.NewTicker(s.cfg.RecomputeEvery)
	defer recompute.Stop()
	sweep := time.NewTicker(s.cfg.SweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-recompute.C:
			s.RecomputeDirty(ctx)
		case <-sweep.C:
			s.CloseIdle(ctx)
		}
	}
}

// RecomputeDirty computes the dirty summaries again from the points.
func (s *Service) RecomputeDirty(ctx context.Context) {
	ts, err := s.st.DirtyTracks(ctx, 20)
	if err != nil {
		s.logErr.Do(func() { s.log.Error("dirty tracks", "err", err) })
		return
	}
	for _, t := range ts {
		if err := s.recompute(ctx, t); err != nil && !errors.Is(err, store.ErrChanged) && !errors.Is(err, store.ErrNotFound) {
			s.logErr.Do(func() { s.log.Error("computing a track summary", "track", t.ID, "err", err) })
		}
	}
}

// recompute computes track t's summary from its points.
func (s *Service) recompute(ctx context.Context, t *store.Track) error {
	var acc geo.Accumulator
	err := s.Points(ctx, t, func(p *position.Position) error {
		acc.Add(p)
		return nil
	})
	if err != nil {
		return err
	}
	setAccumulator(t, &acc)
	t.Dirty = false
	return s.st.SaveTrack(ctx, t)
}

// CloseIdle closes the automatic tracks that no position reached for their
// device's split interval, at their last point.
func (s *Service) CloseIdle(ctx context.Context) {
	ts, err := s.st.IdleTracks(ctx, s.cfg.Now())
	if err != nil {
		s.logErr.Do(func() { s.log.Error("idle tracks", "err", err) })
		return
	}
	for _, t := range ts {
		end := lastPoint(t)
		t.Stopped = &end
		if err := s.st.SaveTrack(ctx, t); err != nil {
			if !errors.Is(err, store.ErrChanged) {
				s.logErr.Do(func() { s.log.Error("closing an idle track", "track", t.ID, "err", err) })
			}
			continue
		}
		s.log.Info("automatic track closed", "track", t.ID, "device", t.Device, "at", end)
	}
}
