// Package problem writes the errors of the cloud's REST API as RFC 9457
// problem details (application/problem+json). Every problem has a stable
// type, a URI under /api/problems/ that the cloud also serves as a short
// description, and the same name as a short code in the "code" member, for
// clients that switch on it.
package problem

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Type is a kind of problem.
type Type struct {
	Slug   string // the last segment of the type URI, e.g. "not-found"
	Title  string // a short summary, the same for every occurrence
	Status int    // the HTTP status it is answered with
	About  string // when it happens and what to do, for the type's page
}

// URI is the type's URI reference: /api/problems/{slug}.
func (t Type) URI() string { return "/api/problems/" + t.Slug }

// Code is the type's short code: its slug with underscores.
func (t Type) Code() string { return strings.ReplaceAll(t.Slug, "-", "_") }

// The problem types of the API.
var (
	InvalidToken = Type{"invalid-token", "Invalid or missing token", http.StatusUnauthorized,
		"The request has no bearer token, or the token is expired, revoked, forged or not for this API. Sign in again or get a new token."}
	InsufficientScope = Type{"insufficient-scope", "Insufficient scope", http.StatusForbidden,
		"The token is genuine but does not allow this call: it lacks the scope named in WWW-Authenticate, or it is a device's token, which only the MQTT broker takes."}
	NotFound = Type{"not-found", "Not found", http.StatusNotFound,
		"There is no such resource among yours. Tracks and devices of other users are not found either."}
	InvalidParameter = Type{"invalid-parameter", "Invalid parameter", http.StatusBadRequest,
		"A path or query parameter is malformed or out of range; the parameter member names it."}
	InvalidRequest = Type{"invalid-request", "Invalid request body", http.StatusBadRequest,
		"The request body is not the JSON object the operation takes, or a field in it is invalid."}
	Conflict = Type{"conflict", "Conflict", http.StatusConflict,
		"The resource already exists."}
	Recording = Type{"already-recording", "The device is already recording", http.StatusConflict,
		"Stop the device's current track (its id is in the track member) before starting another."}
	NotRecording = Type{"not-recording", "The track is not recording", http.StatusConflict,
		"The track has already stopped."}
	CSRF = Type{"csrf", "Cross-site request refused", http.StatusForbidden,
		"A call of the website that changes something must come from the website's own pages, with the session's anti-CSRF token in the X-CSRF-Token header."}
	WrongPassword = Type{"wrong-password", "Wrong password or code", http.StatusForbidden,
		"The current password, or the two-factor code, is not right."}
	TooManyAttempts = Type{"too-many-attempts", "Too many attempts", http.StatusTooManyRequests,
		"Too many wrong passwords or codes; wait the minutes the detail says and try again."}
	TooLarge = Type{"too-large", "Upload too large", http.StatusRequestEntityTooLarge,
		"The uploaded file is larger than the largest import the server takes (the detail says how large); split it and import the parts."}
	UnknownFormat = Type{"unknown-format", "Unknown file format", http.StatusUnsupportedMediaType,
		"The uploaded file is not GPX, an NMEA log, GeoJSON or CSV, or its format could not be told from its first bytes; name it with the format parameter."}
	JobEnded = Type{"job-ended", "The job has ended", http.StatusConflict,
		"The job has already completed, failed or been cancelled; its state member says which."}
	Unavailable = Type{"unavailable", "Temporarily unavailable", http.StatusServiceUnavailable,
		"A store the cloud depends on (InfluxDB or the SQL store) did not answer. Try again shortly."}
	ServerError = Type{"server-error", "Internal error", http.StatusInternalServerError,
		"Something failed on the server; it is logged. Try again."}
)

// Types lists every problem type.
var Types = []Type{InvalidToken, InsufficientScope, NotFound, InvalidParameter, InvalidRequest, Conflict, Recording, NotRecording,
	CSRF, WrongPassword, TooManyAttempts, TooLarge, UnknownFormat, JobEnded, Unavailable, ServerError}

// Write answers a problem of type t with detail and extension members ext
// (which may be nil).
func Write(w http.ResponseWriter, t Type, detail string, ext map[string]any) {
	body := map[string]any{"type": t.URI(), "title": t.Title, "status": t.Status, "code": t.Code()}
	if detail != "" {
		body["detail"] = detail
	}
	for k, v := range ext {
		if _, taken := body[k]; !taken {
			body[k] = v
		}
	}
	b, _ := json.Marshal(body)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(t.Status)
	w.Write(append(b, '\n'))
}

// Parameter answers InvalidParameter naming the parameter.
func Parameter(w http.ResponseWriter, name, detail string) {
	Write(w, InvalidParameter, name+": "+detail, map[string]any{"parameter": name})
}

// Describe serves GET /api/problems/{slug}: the type's title, status and
// description as JSON.
func Describe(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	for _, t := range Types {
		if t.Slug == slug {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=86400")
			json.NewEncoder(w).Encode(map[string]any{"type": t.URI(), "title": t.Title, "status": t.Status, "code": t.Code(), "description": t.About})
			return
		}
	}
	Write(w, NotFound, "no problem type "+slug, nil)
}
