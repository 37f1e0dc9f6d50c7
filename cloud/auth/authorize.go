package auth

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"trackgate/cloud/store"
)

// authorize serves GET /authorize: the authorization code flow with PKCE
// S256 (RFC 6749 §4.1, RFC 7636, RFC 9700 §2.1). Until the client and its
// redirect URI are known good, errors are shown on a page and nothing
// redirects; after, they go back to the client with state and iss.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "The sign-in request is malformed.")
		return
	}
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		s.errorPage(w, http.StatusBadRequest, "The sign-in request repeats client_id or redirect_uri.")
		return
	}
	client, err := s.st.Client(r.Context(), q.Get("client_id"))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("client lookup", "err", err)
		}
		s.errorPage(w, http.StatusBadRequest, "Unknown application (client_id).")
		return
	}
	redirect := q.Get("redirect_uri")
	if !redirectAllowed(client.RedirectURIs, redirect) {
		s.errorPage(w, http.StatusBadRequest, "The application's redirect_uri is missing or not registered.")
		return
	}
	fail := func(code, desc string) {
		s.redirectBack(w, r, redirect, url.Values{"error": {code}, "error_description": {desc}, "state": {q.Get("state")}})
	}
	for k, v := range q {
		if len(v) > 1 {
			fail("invalid_request", "parameter "+k+" given more than once")
			return
		}
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !slices.Contains(client.GrantTypes, GrantAuthorizationCode):
		fail("unauthorized_client", "this client may not use the authorization code grant")
		return
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE)")
		return
	case method != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case len(challenge) != 43 || strings.Trim(challenge, b64urlChars) != "":
		fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
		return
	}
	scopes, oerr := userScopes(client, q.Get("scope"))
	if oerr != nil {
		fail(oerr.Code, oerr.Description)
		return
	}
	prompt := q.Get("prompt")
	ss := s.session(r)
	if !complete(ss) || prompt == "login" {
		if prompt == "none" {
			fail("login_required", "the user is not signed in")
			return
		}
		again := url.Values{}
		for k, v := range q {
			if k != "prompt" {
				again[k] = v
			}
		}
		seeOther(w, r, loginURL("/authorize?"+again.Encode(), prompt == "login"))
		return
	}
	raw := "tgc_" + newSecret()
	now := s.now()
	c := &store.Code{Hash: hashSecret(raw), RedirectURI: redirect, Challenge: challenge, Nonce: q.Get("nonce"),
		ExpiresAt: now.Add(codeTTL),
		Grant: &store.Grant{ID: newID(), ClientID: client.ID, UserID: ss.UserID, Scopes: scopes, AMR: ss.AMR,
			AuthTime: ss.AuthTime, ExpiresAt: now.Add(s.cfg.RefreshMax)}}
	if s.challengeSeen(challenge, now) {
		s.log.Warn("code_challenge reused across authorization requests", "client", client.ID, "user", ss.User)
	}
	if err := s.st.CreateCode(r.Context(), c); err != nil {
		s.log.Error("create code", "err", err)
		fail("server_error", "try again")
		return
	}
	s.redirectBack(w, r, redirect, url.Values{"code": {raw}, "state": {q.Get("state")}})
}

const b64urlChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// redirectBack sends the browser to the client's redirect URI with params
// and iss (RFC 9207) added to its query.
func (s *Server) redirectBack(w http.ResponseWriter, r *http.Request, redirect string, params url.Values) {
	u, err := url.Parse(redirect)
	if err != nil { // cannot happen: redirectAllowed parsed it
		s.errorPage(w, http.StatusBadRequest, "Bad redirect_uri.")
		return
	}
	q := u.Query()
	for k, v := range params {
		if v[0] != "" {
			q[k] = v
		}
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	pageHeaders(w)
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// redirectAllowed reports whether uri is one of the registered URIs, by
// exact string comparison, except that a loopback http URI (127.0.0.1 or
// [::1]) matches whatever its port (RFC 8252 §7.3).
func redirectAllowed(registered []string, uri string) bool {
	if uri == "" {
		return false
	}
	if slices.Contains(registered, uri) {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.User != nil || u.Fragment != "" || strings.Contains(uri, "#") || !isLoopback(u.Hostname()) {
		return false
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	// Only the port is dropped: the rest must match byte for byte.
	portless := strings.Replace(uri, "://"+u.Host, "://"+host, 1)
	return slices.Contains(registered, portless)
}

// challengeWindow is how long code challenges are remembered to spot one
// reused (RFC 9700 §2.1.1: each transaction has its own).
const challengeWindow = 10 * time.Minute

// challengeSeen records a code challenge and reports whether it was seen in
// the last challengeWindow.
func (s *Server) challengeSeen(challenge string, now time.Time) bool {
	fresh, _ := s.challenges.take(challenge, now)
	return !fresh
}
