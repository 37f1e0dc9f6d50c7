package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrRecording is returned when a device that is already recording is
// asked to start another track.
var ErrRecording = errors.New("the device is already recording")

// ErrChanged is returned when a track saved with a version it no longer has
// was changed in between; the caller reads it again.
var ErrChanged = errors.New("changed concurrently")

// Track is a recording session: a device and a time span. Its points are
// the device's positions in the span, kept in InfluxDB.
type Track struct {
	ID      string
	OwnerID int64
	Device  string
	Name    string
	Auto    bool       // made by the device's automatic split, not started by anyone
	Started time.Time  // first instant of the span
	Stopped *time.Time // last instant of the span; nil while recording
	// Summary is the state of the track's statistics, opaque to the store
	// (JSON).
	Summary []byte
	// Dirty says the summary missed points (late or out of order) and is
	// to be computed again from the points.
	Dirty bool
	// Version counts saves: Save refuses a track whose Version is not the
	// stored one (ErrChanged).
	Version int64
	// Touched is when a point last arrived for the track (the clock of
	// idle automatic tracks).
	Touched   time.Time
	CreatedAt time.Time
}

// Recording reports whether the track is still recording.
func (t *Track) Recording() bool { return t.Stopped == nil }

// Holds reports whether instant at falls in the track's span.
func (t *Track) Holds(at time.Time) bool {
	return !at.Before(t.Started) && (t.Stopped == nil || !at.After(*t.Stopped))
}

const (
	trackFields  = `id, owner_id, device_id, name, auto, started_ns, stopped_ns, summary, dirty, version, touched_ns, created_at`
	trackColumns = trackFields + ` FROM tracks`
)

func scanTrack(r row) (*Track, error) {
	var t Track
	var started, touched int64
	var stopped sql.NullInt64
	var summary string
	err := r.Scan(&t.ID, &t.OwnerID, &t.Device, &t.Name, &t.Auto, &started, &stopped, &summary, &t.Dirty, &t.Version, &touched, &t.CreatedAt)
	if err != nil {
		return nil, err
	}
	t.Started, t.Touched = time.Unix(0, started).UTC(), time.Unix(0, touched).UTC()
	if stopped.Valid {
		s := time.Unix(0, stopped.Int64).UTC()
		t.Stopped = &s
	}
	t.Summary = []byte(summary)
	return &t, nil
}

func nullTime(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// Track returns the track with id, or ErrNotFound.
func (s *Store) Track(ctx context.Context, id string) (*Track, error) {
	t, err := scanTrack(s.db.QueryRowContext(ctx, `SELECT `+trackColumns+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("track %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("track %q: %w", id, err)
	}
	return t, nil
}

// TrackFilter selects a user's tracks for TrackList.
type TrackFilter struct {
	OwnerID int64
	Device  string    // only this device's, when not empty
	From    time.Time // only tracks whose span reaches From or later, when not zero
	To      time.Time // only tracks started at To or earlier, when not zero
	Limit   int       // at most this many (1 when less)
	// After continues a listing: only tracks after this one in the order
	// (newest start first, then id descending).
	After *TrackCursor
}

// TrackCursor is a position in a listing of tracks.
type TrackCursor struct {
	Started time.Time
	ID      string
}

// TrackList returns tracks newest first (by start, then id).
func (s *Store) TrackList(ctx context.Context, f TrackFilter) ([]*Track, error) {
	var where strings.Builder
	args := []any{f.OwnerID}
	where.WriteString(`owner_id = ?`)
	if f.Device != "" {
		where.WriteString(` AND device_id = ?`)
		args = append(args, f.Device)
	}
	if !f.From.IsZero() {
		where.WriteString(` AND (stopped_ns IS NULL OR stopped_ns >= ?)`)
		args = append(args, f.From.UnixNano())
	}
	if !f.To.IsZero() {
		where.WriteString(` AND started_ns <= ?`)
		args = append(args, f.To.UnixNano())
	}
	if f.After != nil {
		where.WriteString(` AND (started_ns < ? OR (started_ns = ? AND id < ?))`)
		ns := f.After.Started.UnixNano()
		args = append(args, ns, ns, f.After.ID)
	}
	args = append(args, max(f.Limit, 1))
	return s.tracks(ctx, s.db, `SELECT `+trackColumns+` WHERE `+where.String()+` ORDER BY started_ns DESC, id DESC LIMIT ?`, args...)
}

// HasTracks reports whether a user has tracks of device.
func (s *Store) HasTracks(ctx context.Context, ownerID int64, device string) (bool, error) {
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM tracks WHERE owner_id = ? AND device_id = ? LIMIT 1`, ownerID, device).Scan(new(int))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tracks of %q: %w", device, err)
	}
	return true, nil
}

// DirtyTracks returns up to limit tracks whose summary is to be computed
// again.
func (s *Store) DirtyTracks(ctx context.Context, limit int) ([]*Track, error) {
	return s.tracks(ctx, s.db, `SELECT `+trackColumns+` WHERE dirty = 1 ORDER BY touched_ns LIMIT ?`, limit)
}

// IdleTracks returns the automatic tracks still recording that no point
// reached since before their device's split interval ended at now.
func (s *Store) IdleTracks(ctx context.Context, now time.Time) ([]*Track, error) {
	return s.tracks(ctx, s.db, `SELECT `+trackColumns+` WHERE stopped_ns IS NULL AND auto = 1
		AND touched_ns < ? - COALESCE((SELECT auto_split_s FROM devices WHERE devices.id = tracks.device_id), 0) * 1000000000`, now.UnixNano())
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) tracks(ctx context.Context, q querier, query string, args ...any) ([]*Track, error) {
	out, err := collect(scanTrack)(q.QueryContext(ctx, query, args...))
	if err != nil {
		return nil, fmt.Errorf("tracks: %w", err)
	}
	return out, nil
}

// SaveTrack stores t: a new track when its Version is 0, else an update of
// the track at that Version (ErrChanged if it moved on, ErrNotFound if it
// is gone). A new track that records while its device records another is
// ErrRecording. t.Version is the stored one afterwards.
func (s *Store) SaveTrack(ctx context.Context, t *Track) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return saveTrack(ctx, tx, t) })
}

func saveTrack(ctx context.Context, tx *sql.Tx, t *Track) error {
	if len(t.Summary) == 0 {
		t.Summary = []byte("{}")
	}
	if t.Version == 0 {
		if t.Stopped == nil {
			if err := exists(ctx, tx, `SELECT 1 FROM tracks WHERE device_id = ? AND stopped_ns IS NULL`, t.Device); err != nil {
				if errors.Is(err, ErrExists) {
					return fmt.Errorf("device %q: %w", t.Device, ErrRecording)
				}
				return fmt.Errorf("device %q: %w", t.Device, err)
			}
		}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = time.Now().UTC()
		}
		if t.Touched.IsZero() {
			t.Touched = t.CreatedAt
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO tracks (id, owner_id, device_id, name, auto, started_ns, stopped_ns, summary, dirty, version, touched_ns, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
			t.ID, t.OwnerID, t.Device, t.Name, t.Auto, t.Started.UnixNano(), nullTime(t.Stopped), string(t.Summary), t.Dirty, t.Touched.UnixNano(), t.CreatedAt)
		if err != nil {
			return fmt.Errorf("create track %q: %w", t.ID, err)
		}
		t.Version = 1
		return nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE tracks SET name = ?, auto = ?, started_ns = ?, stopped_ns = ?, summary = ?, dirty = ?, touched_ns = ?, version = version + 1
		WHERE id = ? AND version = ?`,
		t.Name, t.Auto, t.Started.UnixNano(), nullTime(t.Stopped), string(t.Summary), t.Dirty, t.Touched.UnixNano(), t.ID, t.Version)
	if err != nil {
		return fmt.Errorf("update track %q: %w", t.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update track %q: %w", t.ID, err)
	} else if n == 0 {
		if err := exists(ctx, tx, `SELECT 1 FROM tracks WHERE id = ?`, t.ID); err == nil {
			return fmt.Errorf("track %q: %w", t.ID, ErrNotFound)
		}
		return fmt.Errorf("track %q: %w", t.ID, ErrChanged)
	}
	t.Version++
	return nil
}

// DeleteTrack removes a track's row; ErrNotFound if there is none.
func (s *Store) DeleteTrack(ctx context.Context, id string) error {
	if err := s.update(ctx, `DELETE FROM tracks WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete track %q: %w", id, err)
	}
	return nil
}

// SetDeviceSettings changes a device's name and automatic split.
func (s *Store) SetDeviceSettings(ctx context.Context, id, name string, autoSplit time.Duration) error {
	if err := s.update(ctx, `UPDATE devices SET name = ?, auto_split_s = ? WHERE id = ?`, name, int64(autoSplit/time.Second), id); err != nil {
		return fmt.Errorf("device %q: %w", id, err)
	}
	return nil
}

// DeviceState is what the cloud last heard from a device.
type DeviceState struct {
	Device     string
	LastTime   time.Time // fix time of the newest position; zero when none
	Position   []byte    // the newest position (JSON); empty when none
	Status     []byte    // the last status message (JSON); empty when none
	StatusTime time.Time // when the status arrived
}

// DeviceStateOf returns the state of one device; an empty one when the
// cloud has heard nothing from it.
func (s *Store) DeviceStateOf(ctx context.Context, device string) (*DeviceState, error) {
	st, err := scanDeviceState(s.db.QueryRowContext(ctx, `SELECT device_id, last_ns, position, status, status_ns FROM device_state WHERE device_id = ?`, device))
	if errors.Is(err, sql.ErrNoRows) {
		return &DeviceState{Device: device}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device state %q: %w", device, err)
	}
	return st, nil
}

func scanDeviceState(r row) (*DeviceState, error) {
	var st DeviceState
	var last, statusAt int64
	var pos, status string
	if err := r.Scan(&st.Device, &last, &pos, &status, &statusAt); err != nil {
		return nil, err
	}
	if last != 0 {
		st.LastTime = time.Unix(0, last).UTC()
	}
	if statusAt != 0 {
		st.StatusTime = time.Unix(0, statusAt).UTC()
	}
	st.Position, st.Status = []byte(pos), []byte(status)
	return &st, nil
}

// SetDeviceStatus records a device's status message, received at.
// Devices not registered are ignored.
func (s *Store) SetDeviceStatus(ctx context.Context, device string, status []byte, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO device_state (device_id, status, status_ns) SELECT id, ?, ? FROM devices WHERE id = ?
		ON CONFLICT (device_id) DO UPDATE SET status = excluded.status, status_ns = excluded.status_ns`, string(status), at.UnixNano(), device)
	if err != nil {
		return fmt.Errorf("device status %q: %w", device, err)
	}
	return nil
}

// TrackTx is a transaction over tracks and device states, for recording a
// batch of positions.
type TrackTx struct {
	ctx context.Context
	tx  *sql.Tx
	s   *Store
}

// InTrackTx runs f in a transaction, committing when it returns nil.
func (s *Store) InTrackTx(ctx context.Context, f func(*TrackTx) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return f(&TrackTx{ctx: ctx, tx: tx, s: s}) })
}

// Devices returns the registered devices among ids, by id (an id not
// registered is absent): one query for a batch of devices, in chunks of
// 500 ids.
func (t *TrackTx) Devices(ids []string) (map[string]*Device, error) {
	out := make(map[string]*Device, len(ids))
	for chunk := range slices.Chunk(ids, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT ` + deviceColumns + ` WHERE d.id IN (?` + strings.Repeat(`, ?`, len(chunk)-1) + `)`
		ds, err := collect(scanDevice)(t.tx.QueryContext(t.ctx, q, args...))
		if err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		for _, d := range ds {
			out[d.ID] = d
		}
	}
	return out, nil
}

// Around returns, by start, the tracks of device d (of its owner: an id
// registered again by someone else starts afresh) that may hold or border
// instants from from to to: those recording, those whose span reaches from
// or later and starts at to or earlier, and the device's newest track.
func (t *TrackTx) Around(d *Device, from, to time.Time) ([]*Track, error) {
	out, err := t.AroundEach([]Window{{Device: d, From: from, To: to}})
	return out[d.ID], err
}

// Window is a device and a span of time, for AroundEach.
type Window struct {
	Device   *Device
	From, To time.Time
}

// AroundEach is Around for many devices at once, one window each: their
// tracks by device id, one query for up to 250 devices.
func (t *TrackTx) AroundEach(ws []Window) (map[string][]*Track, error) {
	out := make(map[string][]*Track, len(ws))
	for chunk := range slices.Chunk(ws, 250) {
		args := make([]any, 0, 4*len(chunk))
		for _, w := range chunk {
			args = append(args, w.Device.ID, w.Device.OwnerID, w.From.UnixNano(), w.To.UnixNano())
		}
		// w holds each window with its device's newest track (wn), looked
		// up once per window, not once per track scanned.
		ts, err := collect(scanTrack)(t.tx.QueryContext(t.ctx, `WITH v(wd, wo, wf, wt) AS (VALUES (?, ?, ?, ?)`+
			strings.Repeat(`, (?, ?, ?, ?)`, len(chunk)-1)+`),
			w AS MATERIALIZED (SELECT wd, wo, wf, wt,
				(SELECT n.id FROM tracks n WHERE n.device_id = wd AND n.owner_id = wo ORDER BY n.started_ns DESC LIMIT 1) AS wn FROM v)
			SELECT `+trackFields+` FROM w JOIN tracks ON device_id = wd AND owner_id = wo
			WHERE stopped_ns IS NULL OR (stopped_ns >= wf AND started_ns <= wt) OR id = wn
			ORDER BY device_id, started_ns`, args...))
		if err != nil {
			return nil, fmt.Errorf("tracks: %w", err)
		}
		for _, tr := range ts {
			out[tr.Device] = append(out[tr.Device], tr)
		}
	}
	return out, nil
}

// Save stores a track as Store.SaveTrack does.
func (t *TrackTx) Save(tr *Track) error { return saveTrack(t.ctx, t.tx, tr) }

// Last is a device's newest position: its fix time and JSON.
type Last struct {
	Device   string
	At       time.Time
	Position []byte
}

// SetLast records the newest position of each device unless a newer one is
// recorded: one statement for up to 250 devices. Devices not registered
// are ignored.
func (t *TrackTx) SetLast(ls []Last) error {
	for chunk := range slices.Chunk(ls, 250) {
		args := make([]any, 0, 3*len(chunk))
		for _, l := range chunk {
			args = append(args, l.Device, l.At.UnixNano(), string(l.Position))
		}
		// WHERE true: an upsert's SELECT needs a WHERE clause to parse.
		_, err := t.tx.ExecContext(t.ctx, `INSERT INTO device_state (device_id, last_ns, position)
			SELECT d.id, v.column2, v.column3 FROM (VALUES (?, ?, ?)`+strings.Repeat(`, (?, ?, ?)`, len(chunk)-1)+`) v
			JOIN devices d ON d.id = v.column1 WHERE true
			ON CONFLICT (device_id) DO UPDATE SET last_ns = excluded.last_ns, position = excluded.position WHERE excluded.last_ns >= device_state.last_ns`, args...)
		if err != nil {
			return fmt.Errorf("last positions: %w", err)
		}
	}
	return nil
}
