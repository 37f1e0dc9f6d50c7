// Package api is the cloud's track REST API: recording sessions, tracks
// with their summaries, exports of their points (JSON, GeoJSON, GPX, CSV,
// optionally simplified), deletion, the devices' settings and last
// positions, and live positions as Server-Sent Events. Every route answers
// JSON, errors as RFC 9457 problems, to a user's bearer token from the
// authorization server; a user reaches only their own devices and tracks,
// and everything else is 404. The routes are described by the OpenAPI 3.1
// document served at /api/openapi.json.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"trackgate/cloud/jobs"
	"trackgate/cloud/problem"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/token"
	"trackgate/internal/topic"
)

// Auth authenticates API callers.
type Auth interface {
	// APICaller checks the request's bearer token for scope and returns its
	// user and claims, or answers 401/403 and returns false.
	APICaller(w http.ResponseWriter, r *http.Request, scope string) (*store.User, *token.Claims, bool)
	// APIService checks the request's bearer token for a service's call
	// needing scope, or answers 401/403 and returns false.
	APIService(w http.ResponseWriter, r *http.Request, scope string) (*token.Claims, bool)
}

// Store is what the API reads from the SQL store.
type Store interface {
	Device(ctx context.Context, id string) (*store.Device, error)
	Devices(ctx context.Context, ownerID int64) ([]*store.Device, error)
	Track(ctx context.Context, id string) (*store.Track, error)
	TrackList(ctx context.Context, f store.TrackFilter) ([]*store.Track, error)
	HasTracks(ctx context.Context, ownerID int64, device string) (bool, error)
	DeviceStateOf(ctx context.Context, device string) (*store.DeviceState, error)
	SetDeviceSettings(ctx context.Context, id, name string, autoSplit time.Duration) error
	SetDeviceIdentifiers(ctx context.Context, id string, idents []string) error
	SetDeviceSecret(ctx context.Context, id, hash string) error
	SetDeviceSpeedUnit(ctx context.Context, id, unit string) error
	DeviceByIdentifier(ctx context.Context, ident string) (*store.Device, error)
	Job(ctx context.Context, id string) (*store.Job, error)
	JobList(ctx context.Context, f store.JobFilter) ([]*store.Job, error)
}

// Scopes of the API's routes.
const (
	ScopeTracksRead   = "tracks:read"
	ScopeTracksWrite  = "tracks:write"
	ScopeDevicesRead  = "devices:read"
	ScopeDevicesWrite = "devices:write"
	// ScopeDevicesResolve is a service's scope: look devices up by
	// protocol identifier (the firmware-bridge).
	ScopeDevicesResolve = "devices:resolve"
)

// Config configures the API.
type Config struct {
	Auth   Auth
	Store  Store
	Tracks *tracks.Service
	Jobs   *jobs.Service
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// Server serves the API. Create it with New.
type Server struct {
	cfg  Config
	st   Store
	trk  *tracks.Service
	log  *slog.Logger
	live *hub

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: live streams end
}

// New returns the API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, st: cfg.Store, trk: cfg.Tracks, log: cfg.Logger, live: newHub(), closing: make(chan struct{})}
}

// Route is one route of the API.
type Route struct {
	Method, Path string // Path in net/http pattern form, e.g. /api/v1/tracks/{id}
	handler      http.HandlerFunc
}

// Routes lists the API's routes.
func (s *Server) Routes() []Route {
	return []Route{
		{"GET", "/api/openapi.json", serveOpenAPI},
		{"GET", "/api/problems/{slug}", problem.Describe},
		{"GET", "/api/v1/tracks", s.listTracks},
		{"POST", "/api/v1/tracks", s.startTrack},
		{"GET", "/api/v1/tracks/{id}", s.onTrack(ScopeTracksRead, nil, s.getTrack)},
		{"PATCH", "/api/v1/tracks/{id}", s.onTrack(ScopeTracksWrite, nil, s.renameTrack)},
		{"DELETE", "/api/v1/tracks/{id}", s.onTrack(ScopeTracksWrite, nil, s.deleteTrack)},
		{"POST", "/api/v1/tracks/{id}/stop", s.onTrack(ScopeTracksWrite, nil, s.stopTrack)},
		{"GET", "/api/v1/tracks/{id}/points", s.onTrack(ScopeTracksRead, []string{"format", "simplify"}, s.trackPoints)},
		{"GET", "/api/v1/devices", s.listDevices},
		{"GET", "/api/v1/devices/{id}", s.onDevice(ScopeDevicesRead, s.getDevice)},
		{"PATCH", "/api/v1/devices/{id}", s.onDevice(ScopeDevicesWrite, s.patchDevice)},
		{"GET", "/api/v1/devices/{id}/last", s.onDevice(ScopeDevicesRead, s.deviceLast)},
		{"POST", "/api/v1/devices/{id}/secret", s.onDevice(ScopeDevicesWrite, s.newDeviceSecret)},
		{"DELETE", "/api/v1/devices/{id}/secret", s.onDevice(ScopeDevicesWrite, s.removeDeviceSecret)},
		{"GET", "/api/v1/identifiers/{ident}", s.resolveIdentifier},
		{"GET", "/api/v1/live", s.liveStream},
		{"POST", "/api/v1/imports", s.createImport},
		{"GET", "/api/v1/jobs", s.listJobs},
		{"GET", "/api/v1/jobs/{id}", s.onJob(ScopeTracksRead, s.getJob)},
		{"POST", "/api/v1/jobs/{id}/cancel", s.onJob(ScopeTracksWrite, s.cancelJob)},
	}
}

// Mount registers the routes with handle (e.g. an http.ServeMux's Handle).
func (s *Server) Mount(handle func(pattern string, h http.Handler)) {
	for _, r := range s.Routes() {
		handle(r.Method+" "+r.Path, r.handler)
	}
}

// Publish passes a device's position or status to the live streams of its
// owner. It never blocks.
func (s *Server) Publish(e tracks.Event) { s.live.publish(e) }

// Watched reports whether a user has a live stream open.
func (s *Server) Watched(owner int64) bool { return s.live.watched(owner) }

// Close ends the live streams (at shutdown, so that they do not hold the
// HTTP server open).
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closing) }) }

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(openAPI)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, problem.ServerError, "", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// failed answers an unexpected error: 503 when a store did not answer in
// time or could not be reached, 500 otherwise; both are logged.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	s.log.Error(what, "path", r.URL.Path, "err", err)
	var ne interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
		problem.Write(w, problem.Unavailable, what+" failed", nil)
		return
	}
	problem.Write(w, problem.ServerError, "", nil)
}

// maxBody is the largest request body the API reads.
const maxBody = 16 << 10

// decodeBody reads the request's JSON object into v, refusing unknown
// fields, trailing data and bodies over maxBody; it answers the problem and
// returns false when the body is not acceptable.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		problem.Write(w, problem.InvalidRequest, "the body must be application/json", nil)
		return false
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body")
		}
		problem.Write(w, problem.InvalidRequest, "body: "+err.Error(), nil)
		return false
	}
	if dec.More() {
		problem.Write(w, problem.InvalidRequest, "body: data after the JSON object", nil)
		return false
	}
	return true
}

// ownDevice returns the device id names when u owns it; otherwise it
// answers 400 (malformed id) or 404 and returns nil.
func (s *Server) ownDevice(w http.ResponseWriter, r *http.Request, u *store.User, id, param string) *store.Device {
	if err := topic.ValidDevice(id); err != nil {
		problem.Parameter(w, param, err.Error())
		return nil
	}
	d, err := s.st.Device(r.Context(), id)
	if err == nil && d.OwnerID != u.ID {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		problem.Write(w, problem.NotFound, "no device "+id, nil)
		return nil
	}
	if err != nil {
		s.failed(w, r, "device lookup", err)
		return nil
	}
	return d
}

// trackHandler handles a request about one of the caller's tracks.
type trackHandler func(w http.ResponseWriter, r *http.Request, t *store.Track, q url.Values)

// onTrack serves a route on the track {id}: it authenticates the caller
// for scope, checks that the query has only params, and finds the caller's
// track before h runs.
func (s *Server) onTrack(scope string, params []string, h trackHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, _, ok := s.cfg.Auth.APICaller(w, r, scope)
		if !ok {
			return
		}
		q, ok := query(w, r, params...)
		if !ok {
			return
		}
		if t := s.ownTrack(w, r, u); t != nil {
			h(w, r, t, q)
		}
	}
}

// deviceHandler handles a request about one of the caller's devices.
type deviceHandler func(w http.ResponseWriter, r *http.Request, d *store.Device)

// onDevice serves a route on the device {id} as onTrack does on a track;
// the route takes no query parameters.
// caller is the prologue of a route that takes no query parameters: the
// caller's user, or false once it answered an error.
func (s *Server) caller(w http.ResponseWriter, r *http.Request, scope string) (*store.User, bool) {
	u, _, ok := s.cfg.Auth.APICaller(w, r, scope)
	if !ok {
		return nil, false
	}
	_, ok = query(w, r)
	return u, ok
}

func (s *Server) onDevice(scope string, h deviceHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.caller(w, r, scope)
		if !ok {
			return
		}
		if d := s.ownDevice(w, r, u, r.PathValue("id"), "id"); d != nil {
			h(w, r, d)
		}
	}
}

// ownTrack returns the track of the request's {id} when u owns it;
// otherwise it answers 400 (malformed id) or 404 and returns nil.
func (s *Server) ownTrack(w http.ResponseWriter, r *http.Request, u *store.User) *store.Track {
	id := r.PathValue("id")
	if !tracks.ValidID(id) {
		problem.Parameter(w, "id", "not a track id (16 characters a-z, 2-7)")
		return nil
	}
	t, err := s.st.Track(r.Context(), id)
	if err == nil && t.OwnerID != u.ID {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		problem.Write(w, problem.NotFound, "no track "+id, nil)
		return nil
	}
	if err != nil {
		s.failed(w, r, "track lookup", err)
		return nil
	}
	return t
}
