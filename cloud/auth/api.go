package auth

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"trackgate/cloud/problem"
	"trackgate/cloud/store"
	"trackgate/internal/token"
)

// userinfo serves GET and POST /userinfo (OpenID Connect Core §5.3) to a
// user's access token with the openid scope.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	c, ok := s.bearer(w, r, ScopeOpenID)
	if !ok {
		return
	}
	name, ok := strings.CutPrefix(c.Subject, userPrefix)
	if !ok {
		notUsers(w, "not a user's token")
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, map[string]any{"sub": c.Subject, "preferred_username": name})
}

// notUsers answers 403 to a genuine token that is not a user's (a service
// client's), with the challenge of RFC 6750 §3.
func notUsers(w http.ResponseWriter, desc string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="insufficient_scope"`)
	problem.Write(w, problem.InsufficientScope, desc, nil)
}

// apiServerError logs err and answers a 500 problem.
func (s *Server) apiServerError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	problem.Write(w, problem.ServerError, "", nil)
}

// APIUser checks the request's bearer token for a user's API call needing
// scope and returns the user. When it fails it answers 401 or 403 as RFC
// 6750 §3 says, with an RFC 9457 problem, and returns false.
func (s *Server) APIUser(w http.ResponseWriter, r *http.Request, scope string) (*store.User, bool) {
	u, _, ok := s.APICaller(w, r, scope)
	return u, ok
}

// APICaller is APIUser that also returns the token's claims (for its
// expiry).
func (s *Server) APICaller(w http.ResponseWriter, r *http.Request, scope string) (*store.User, *token.Claims, bool) {
	c, ok := s.bearer(w, r, scope)
	if !ok {
		return nil, nil, false
	}
	name, ok := strings.CutPrefix(c.Subject, userPrefix)
	if !ok {
		notUsers(w, "this API needs a user's token")
		return nil, nil, false
	}
	u, err := s.st.UserByName(r.Context(), name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="invalid_token"`)
			problem.Write(w, problem.InvalidToken, "the token's user no longer exists", nil)
		} else {
			s.apiServerError(w, "user lookup", err)
		}
		return nil, nil, false
	}
	return u, c, true
}

// APIService checks the request's bearer token for a service's API call
// needing scope (a token of the client credentials grant, sub svc:…) and
// returns its claims, answering 401 or 403 as APIUser does when it fails.
func (s *Server) APIService(w http.ResponseWriter, r *http.Request, scope string) (*token.Claims, bool) {
	c, ok := s.bearer(w, r, scope)
	if !ok {
		return nil, false
	}
	if !strings.HasPrefix(c.Subject, ServicePrefix) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="insufficient_scope"`)
		problem.Write(w, problem.InsufficientScope, "this API needs a service's token", nil)
		return nil, false
	}
	return c, true
}

// deviceJSON is a device in the API.
type deviceJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Created string `json:"created,omitempty"`
	// Token is the device token, given once when the device is added: its
	// MQTT password (user name: the device id).
	Token string `json:"token,omitempty"`
	// JWK, when adding, is a tracker's public key (ES256 or Ed25519): the
	// tracker then gets its own tokens with private_key_jwt, and no Token
	// is given.
	JWK json.RawMessage `json:"jwk,omitempty"`
}

// addDevice serves POST /api/v1/devices {"id", "name"}: it registers a
// device of the token's user and answers 201 with its device token.
func (s *Server) addDevice(w http.ResponseWriter, r *http.Request) {
	u, ok := s.APIUser(w, r, ScopeDevicesWrite)
	if !ok {
		return
	}
	var req deviceJSON
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem.Write(w, problem.InvalidRequest, "body: "+err.Error(), nil)
		return
	}
	tok, err := s.AddDevice(r.Context(), u.Name, req.ID, req.Name, req.JWK)
	switch {
	case errors.Is(err, store.ErrExists):
		problem.Write(w, problem.Conflict, "device "+req.ID+" is already registered", nil)
		return
	case errors.Is(err, errDeviceID), errors.Is(err, errDeviceKey):
		problem.Write(w, problem.InvalidRequest, err.Error(), nil)
		return
	case err != nil:
		s.apiServerError(w, "add device", err)
		return
	}
	noStore(w)
	w.Header().Set("Location", "/api/v1/devices/"+req.ID)
	writeJSON(w, http.StatusCreated, deviceJSON{ID: req.ID, Name: req.Name, Token: tok, JWK: req.JWK})
}

// removeDevice serves DELETE /api/v1/devices/{id}: the device is forgotten
// and its token revoked. Someone else's device is 404, as a missing one.
func (s *Server) removeDevice(w http.ResponseWriter, r *http.Request) {
	u, ok := s.APIUser(w, r, ScopeDevicesWrite)
	if !ok {
		return
	}
	id := r.PathValue("id")
	d, err := s.st.Device(r.Context(), id)
	if err == nil && d.OwnerID != u.ID {
		err = store.ErrNotFound
	}
	if err == nil {
		err = s.RemoveDevice(r.Context(), id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		problem.Write(w, problem.NotFound, "no device "+id, nil)
	case err != nil:
		s.apiServerError(w, "remove device", err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// bearer checks the request's bearer API token (or the website's cookies)
// and its scope, answering 401 or 403 as RFC 6750 §3 says when it fails. A device token (the broker's
// audience) gets 403: it is genuine but not for the API.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request, scope string) (*token.Claims, bool) {
	var c *token.Claims
	var ok bool
	if auth := r.Header.Get("Authorization"); auth == "" && s.websiteCall(r) {
		c, ok = s.cookieClaims(w, r)
	} else {
		c, ok = s.bearerClaims(w, r, auth)
	}
	if !ok {
		return nil, false
	}
	if !c.HasScope(scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="insufficient_scope", scope="`+scope+`"`)
		problem.Write(w, problem.InsufficientScope, "needs scope "+scope, nil)
		return nil, false
	}
	return c, true
}

// bearerClaims verifies the bearer token of Authorization header auth,
// answering 401 (or 403 to a device token) when it fails.
func (s *Server) bearerClaims(w http.ResponseWriter, r *http.Request, auth string) (*token.Claims, bool) {
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || raw == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate"`)
		problem.Write(w, problem.InvalidToken, "a bearer token is required", nil)
		return nil, false
	}
	c, err := s.apiVerifier.Verify(r.Context(), raw)
	if errors.Is(err, token.ErrAudience) {
		if _, merr := s.mqttVerifier.Verify(r.Context(), raw); merr == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="insufficient_scope"`)
			problem.Write(w, problem.InsufficientScope, "a device token is for the broker, not the API", nil)
			return nil, false
		}
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="invalid_token"`)
		problem.Write(w, problem.InvalidToken, err.Error(), nil)
		return nil, false
	}
	return c, true
}

// websiteCall reports whether a request comes from the website: it carries
// a website cookie and no Authorization header.
func (s *Server) websiteCall(r *http.Request) bool {
	for _, name := range []string{webAccessCookie, webSessionCookie} {
		if _, err := r.Cookie(name); err == nil {
			return true
		}
	}
	return false
}

// cookieClaims authenticates an API call of the website by its cookies:
// the access token (refreshed on the server when its cookie is gone), and
// for a call that changes something the origin and the session's
// anti-CSRF token (AUTH.md item 115). It answers 401 without a valid
// session, 403 on a CSRF failure.
func (s *Server) cookieClaims(w http.ResponseWriter, r *http.Request) (*token.Claims, bool) {
	ws := s.webSession(r)
	c, err := s.webAccess(w, r, ws)
	if err != nil {
		webCookie(w, webAccessCookie, "", 0)
		w.Header().Set("WWW-Authenticate", `Bearer realm="trackgate", error="invalid_token"`)
		problem.Write(w, problem.InvalidToken, "the website session ended: sign in again", nil)
		return nil, false
	}
	if !safeMethod(r.Method) && !s.csrfOK(r, ws) {
		problem.Write(w, problem.CSRF, "missing or wrong "+CSRFHeader+", or another origin", nil)
		return nil, false
	}
	return c, true
}
