package api

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"trackgate/cloud/export"
	"trackgate/cloud/geo"
	"trackgate/cloud/problem"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/topic"
)

// Listing limits.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// MaxSimplify is the largest simplification tolerance, in metres.
const MaxSimplify = 100_000

// Track is a track in the API.
type Track struct {
	ID        string      `json:"id"`
	Device    string      `json:"device"`
	Name      string      `json:"name"`
	Auto      bool        `json:"auto"`
	Recording bool        `json:"recording"`
	Started   time.Time   `json:"started"`
	Stopped   *time.Time  `json:"stopped"`
	Summary   geo.Summary `json:"summary"`
	// Stale says the summary misses points that arrived out of order; it
	// is being computed again.
	Stale bool `json:"stale,omitempty"`
}

func trackOut(t *store.Track) Track {
	return Track{ID: t.ID, Device: t.Device, Name: t.Name, Auto: t.Auto, Recording: t.Recording(),
		Started: t.Started, Stopped: t.Stopped, Summary: tracks.Summary(t), Stale: t.Dirty}
}

// query returns the request's query parameters after checking that each
// is one of allowed and given once; otherwise it answers 400.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		problem.Parameter(w, "query", err.Error())
		return nil, false
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			problem.Parameter(w, k, "unknown parameter (this route takes "+strings.Join(allowed, ", ")+")")
			return nil, false
		}
		if len(v) > 1 {
			problem.Parameter(w, k, "given more than once")
			return nil, false
		}
	}
	return q, true
}

// timeParam parses an RFC 3339 instant; zero when absent.
func timeParam(w http.ResponseWriter, q url.Values, name string) (time.Time, bool) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		problem.Parameter(w, name, "want an RFC 3339 instant such as 2026-11-21T10:00:00Z")
		return time.Time{}, false
	}
	return t, true
}

// cursor is a position in a listing: the instant and id of the last item
// of a page.
type cursor struct {
	At time.Time
	ID string
}

// encodeCursor makes the cursor continuing a listing after c.
func encodeCursor(c cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.At.UnixNano(), 10) + "." + c.ID))
}

func decodeCursor(s string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return nil, errors.New("not a cursor this API gave")
	}
	ns, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !tracks.ValidID(id) {
		return nil, errors.New("not a cursor this API gave")
	}
	return &cursor{At: time.Unix(0, n).UTC(), ID: id}, nil
}

// pageParams reads a listing's limit and cursor parameters; it answers 400
// and returns false when one is malformed.
func pageParams(w http.ResponseWriter, q url.Values) (limit int, after *cursor, ok bool) {
	limit = DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			problem.Parameter(w, "limit", fmt.Sprintf("want a whole number from 1 to %d", MaxLimit))
			return 0, nil, false
		}
		limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := decodeCursor(v)
		if err != nil {
			problem.Parameter(w, "cursor", err.Error())
			return 0, nil, false
		}
		after = c
	}
	return limit, after, true
}

// nextPage links the page after the one ending at last (Link header) and
// returns its cursor.
func nextPage(w http.ResponseWriter, r *http.Request, q url.Values, last cursor) string {
	c := encodeCursor(last)
	next := *r.URL
	q.Set("cursor", c)
	next.RawQuery = q.Encode()
	w.Header().Set("Link", "<"+next.RequestURI()+`>; rel="next"`)
	return c
}

// listTracks serves GET /api/v1/tracks?device=&from=&to=&limit=&cursor=:
// the user's tracks, newest first, a page at a time.
func (s *Server) listTracks(w http.ResponseWriter, r *http.Request) {
	u, _, ok := s.cfg.Auth.APICaller(w, r, ScopeTracksRead)
	if !ok {
		return
	}
	q, ok := query(w, r, "device", "from", "to", "limit", "cursor")
	if !ok {
		return
	}
	f := store.TrackFilter{OwnerID: u.ID}
	if f.From, ok = timeParam(w, q, "from"); !ok {
		return
	}
	if f.To, ok = timeParam(w, q, "to"); !ok {
		return
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		problem.Parameter(w, "to", "before from")
		return
	}
	var after *cursor
	if f.Limit, after, ok = pageParams(w, q); !ok {
		return
	}
	if after != nil {
		f.After = &store.TrackCursor{Started: after.At, ID: after.ID}
	}
	if f.Device = q.Get("device"); f.Device != "" {
		if !s.listableDevice(w, r, u, f.Device) {
			return
		}
	}
	want := f.Limit
	f.Limit++ // one more tells whether there is a next page
	ts, err := s.st.TrackList(r.Context(), f)
	if err != nil {
		s.failed(w, r, "track list", err)
		return
	}
	out := struct {
		Tracks     []Track `json:"tracks"`
		NextCursor string  `json:"next_cursor,omitempty"`
	}{Tracks: make([]Track, 0, len(ts))}
	if len(ts) > want {
		ts = ts[:want]
		out.NextCursor = nextPage(w, r, q, cursor{ts[want-1].Started, ts[want-1].ID})
	}
	for _, t := range ts {
		out.Tracks = append(out.Tracks, trackOut(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// listableDevice checks a device filter: the user's device, or one the
// user has tracks of (a device since removed); else it answers 404.
func (s *Server) listableDevice(w http.ResponseWriter, r *http.Request, u *store.User, id string) bool {
	d, err := s.st.Device(r.Context(), id)
	if err == nil && d.OwnerID == u.ID {
		return true
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.failed(w, r, "device lookup", err)
		return false
	}
	has, err := s.st.HasTracks(r.Context(), u.ID, id)
	if err != nil {
		s.failed(w, r, "track lookup", err)
		return false
	}
	if !has {
		problem.Write(w, problem.NotFound, "no device "+id, nil)
	}
	return has
}

// startTrack serves POST /api/v1/tracks {"device", "name"}: the device
// starts recording a track now; 409 when it already records one someone
// started.
func (s *Server) startTrack(w http.ResponseWriter, r *http.Request) {
	u, ok := s.caller(w, r, ScopeTracksWrite)
	if !ok {
		return
	}
	var req struct {
		Device string `json:"device"`
		Name   string `json:"name"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if err := topic.ValidDevice(req.Device); err != nil {
		problem.Write(w, problem.InvalidRequest, "device: "+err.Error(), nil)
		return
	}
	if err := tracks.CheckName(req.Name); err != nil {
		problem.Write(w, problem.InvalidRequest, "name: "+err.Error(), nil)
		return
	}
	d := s.ownDevice(w, r, u, req.Device, "device")
	if d == nil {
		return
	}
	t, err := s.trk.Start(r.Context(), d, req.Name, s.cfg.Now())
	if errors.Is(err, tracks.ErrRecording) {
		ext := map[string]any{}
		if cur, err := s.trk.Recording(r.Context(), d); err == nil && cur != nil {
			ext["track"] = cur.ID
		}
		problem.Write(w, problem.Recording, "device "+d.ID+" is already recording", ext)
		return
	}
	if err != nil {
		s.failed(w, r, "start track", err)
		return
	}
	w.Header().Set("Location", "/api/v1/tracks/"+t.ID)
	writeJSON(w, http.StatusCreated, trackOut(t))
}

// getTrack serves GET /api/v1/tracks/{id}.
func (s *Server) getTrack(w http.ResponseWriter, _ *http.Request, t *store.Track, _ url.Values) {
	writeJSON(w, http.StatusOK, trackOut(t))
}

// renameTrack serves PATCH /api/v1/tracks/{id} {"name"}.
func (s *Server) renameTrack(w http.ResponseWriter, r *http.Request, t *store.Track, _ url.Values) {
	var req struct {
		Name *string `json:"name"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name == nil {
		writeJSON(w, http.StatusOK, trackOut(t))
		return
	}
	if err := tracks.CheckName(*req.Name); err != nil {
		problem.Write(w, problem.InvalidRequest, "name: "+err.Error(), nil)
		return
	}
	t, err := s.trk.Rename(r.Context(), t, *req.Name)
	if err != nil {
		s.failed(w, r, "rename track", err)
		return
	}
	writeJSON(w, http.StatusOK, trackOut(t))
}

// stopTrack serves POST /api/v1/tracks/{id}/stop.
func (s *Server) stopTrack(w http.ResponseWriter, r *http.Request, t *store.Track, _ url.Values) {
	t, err := s.trk.Stop(r.Context(), t, s.cfg.Now())
	if errors.Is(err, tracks.ErrNotRecording) {
		problem.Write(w, problem.NotRecording, "track "+t.ID+" has stopped", nil)
		return
	}
	if err != nil {
		s.failed(w, r, "stop track", err)
		return
	}
	writeJSON(w, http.StatusOK, trackOut(t))
}

// deleteTrack serves DELETE /api/v1/tracks/{id}: its points, then its row.
func (s *Server) deleteTrack(w http.ResponseWriter, r *http.Request, t *store.Track, _ url.Values) {
	if err := s.trk.Delete(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrNotFound) { // deleted meanwhile
			problem.Write(w, problem.NotFound, "no track "+t.ID, nil)
			return
		}
		s.failed(w, r, "delete track", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// trackPoints serves GET /api/v1/tracks/{id}/points?format=&simplify=: the
// track's points streamed as they are read, in constant memory.
func (s *Server) trackPoints(w http.ResponseWriter, r *http.Request, t *store.Track, q url.Values) {
	format, err := export.ParseFormat(q.Get("format"))
	if err != nil {
		problem.Parameter(w, "format", err.Error())
		return
	}
	var tolerance float64
	if v := q.Get("simplify"); v != "" {
		tolerance, err = strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(tolerance) || tolerance <= 0 || tolerance > MaxSimplify {
			problem.Parameter(w, "simplify", fmt.Sprintf("want a tolerance in metres, more than 0 and at most %d", MaxSimplify))
			return
		}
	}
	lw := &lazyWriter{w: w, header: func(h http.Header) {
		h.Set("Content-Type", format.ContentType())
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if format == export.GPX || format == export.CSV {
			h.Set("Content-Disposition", `attachment; filename="`+fileName(t)+"."+format.Extension()+`"`)
		}
	}}
	bw := bufio.NewWriterSize(lw, 64<<10)
	enc, err := export.New(format, bw, export.Track{ID: t.ID, Name: t.Name, Device: t.Device, Started: t.Started, Stopped: t.Stopped, Summary: tracks.Summary(t)})
	if err == nil {
		emit := enc.Point
		var simp *geo.Simplifier
		if tolerance > 0 {
			simp = geo.NewSimplifier(tolerance, 0, enc.Point)
			emit = simp.Add
		}
		err = s.trk.Points(r.Context(), t, emit)
		if err == nil && simp != nil {
			err = simp.Flush()
		}
		if err == nil {
			err = enc.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
	}
	if err == nil {
		return
	}
	if !lw.started {
		s.failed(w, r, "read points", err)
		return
	}
	// Part of the body is out: cut the connection so that the client sees
	// a broken transfer, not a complete-looking file.
	if r.Context().Err() == nil {
		s.log.Error("export broken off", "track", t.ID, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// fileName is a safe download file name for t: its name's letters and
// digits, else its id.
func fileName(t *store.Track) string {
	var b strings.Builder
	for _, c := range t.Name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteRune(c)
		case c == ' ' || c == '.':
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "track-" + t.ID
	}
	return b.String()
}

// lazyWriter sets the response headers at the first write, so that an
// error before any byte can still be answered as a problem.
type lazyWriter struct {
	w       http.ResponseWriter
	header  func(http.Header)
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.header(l.w.Header())
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}
