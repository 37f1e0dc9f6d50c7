package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"trackgate/cloud/store"
	"trackgate/internal/token"
)

// The website is the authorization server's own confidential client, a
// backend for its front end (AUTH.md section N): the browser signs in with
// the authorization code flow and PKCE at /auth/callback, and then holds
// two HttpOnly cookies: the website's access token (a JWT, living no
// longer than the token) and the id of a website session, which keeps the
// refresh token and an anti-CSRF token on the server. When the access
// token cookie is gone, the next request refreshes it on the server.
//
// The cookies are always __Host- and Secure: the cloud serves plain HTTP
// only on loopback addresses, where browsers keep Secure cookies.
const (
	webSessionCookie = "__Host-tg_web"  // the website session's id
	webAccessCookie  = "__Host-tg_at"   // the website's access token
	webFlowCookie    = "__Host-tg_flow" // a website sign-in under way: state, PKCE verifier, page to return to
)

// CSRFHeader is the request header carrying the website session's anti-CSRF
// token on the API calls that change something.
const CSRFHeader = "X-CSRF-Token"

// webFlowTTL is how long a website sign-in may take.
const webFlowTTL = 15 * time.Minute

// webFlow is a website sign-in under way, sealed into webFlowCookie.
type webFlow struct {
	State    string    `json:"s"`
	Verifier string    `json:"v"`
	To       string    `json:"t"`
	Expires  time.Time `json:"e"`
}

// WebSession is a person's signed-in session at the website.
type WebSession struct {
	User string // the user's name
	CSRF string // the anti-CSRF token the pages send back (CSRFHeader, or the csrf form field)
}

// webCookie sets a website cookie: __Host- (Secure, Path=/, no Domain),
// HttpOnly, SameSite=Lax. maxAge 0 clears it.
func webCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second), Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode}
	if maxAge <= 0 {
		c.Value, c.MaxAge = "", -1 // Max-Age=0
	}
	http.SetCookie(w, c)
}

// webRefresh holds what a website session's last refresh gave, so that
// requests arriving together (a page and its API calls) refresh once and
// share the result instead of presenting the same refresh token twice.
type webRefresh struct {
	mu     sync.Mutex
	recent map[string]refreshed // by session id hash
}

type refreshed struct {
	access string
	claims *token.Claims
	until  time.Time // kept this long
}

// refreshShare is how long a refresh's result is shared.
const refreshShare = 30 * time.Second

// proceed continues to page to after a complete sign-in at the
// authorization server: its own pages and flows directly, a website page
// through the website's sign-in, which gives the browser its session.
func (s *Server) proceed(w http.ResponseWriter, r *http.Request, to string) {
	if u, err := url.Parse(to); err == nil {
		switch p := u.Path; {
		case p == "/authorize", p == "/device", p == "/logout", strings.HasPrefix(p, "/login"), strings.HasPrefix(p, "/auth/"):
			seeOther(w, r, to)
			return
		}
	}
	s.beginWebsite(w, r, to)
}

// beginWebsite starts the website's authorization code flow with PKCE,
// returning to page to at its end.
func (s *Server) beginWebsite(w http.ResponseWriter, r *http.Request, to string) {
	f := webFlow{State: newSecret(), Verifier: newSecret(), To: to, Expires: s.now().Add(webFlowTTL)}
	b, _ := json.Marshal(f)
	sealed, err := s.secrets.seal(b)
	if err != nil {
		s.failPage(w, "seal website sign-in", err)
		return
	}
	webCookie(w, webFlowCookie, sealed, webFlowTTL)
	q := url.Values{"response_type": {"code"}, "client_id": {WebsiteClientID}, "redirect_uri": {s.url("/auth/callback")},
		"scope": {strings.Join(userAPIScopes, " ")}, "state": {f.State}, "code_challenge": {s256(f.Verifier)},
		"code_challenge_method": {"S256"}}
	seeOther(w, r, "/authorize?"+q.Encode())
}

// websiteCallback serves GET /auth/callback: the end of the website's
// sign-in. It checks iss (RFC 9207) and state against the flow's cookie,
// redeems the code with the PKCE verifier, and starts a website session.
func (s *Server) websiteCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	webCookie(w, webFlowCookie, "", 0)
	var f webFlow
	c, err := r.Cookie(webFlowCookie)
	if err == nil {
		var b []byte
		if b, err = s.secrets.open(c.Value); err == nil {
			err = json.Unmarshal(b, &f)
		}
	}
	switch {
	case err != nil || !s.now().Before(f.Expires):
		s.errorPage(w, http.StatusBadRequest, "This sign-in expired or was started in another browser; open the page again.")
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1:
		s.errorPage(w, http.StatusBadRequest, "The sign-in's state does not match; open the page again.")
		return
	case q.Get("iss") != s.cfg.Issuer:
		s.errorPage(w, http.StatusBadRequest, "The sign-in answer came from another issuer.")
		return
	case q.Get("error") != "":
		s.errorPage(w, http.StatusForbidden, "Sign-in refused: "+q.Get("error_description"))
		return
	}
	client, err := s.st.Client(r.Context(), WebsiteClientID)
	if err != nil {
		s.failPage(w, "website client", err)
		return
	}
	tr, oerr := s.authorizationCode(r.Context(), client, url.Values{"code": {q.Get("code")},
		"redirect_uri": {s.url("/auth/callback")}, "code_verifier": {f.Verifier}})
	if oerr != nil {
		s.log.Info("website sign-in refused", "err", oerr.Error())
		s.errorPage(w, http.StatusBadRequest, "The sign-in could not be completed; open the page again.")
		return
	}
	claims, err := s.verifyOwn(r.Context(), tr.AccessToken)
	if err != nil {
		s.failPage(w, "website token", err)
		return
	}
	u, err := s.st.UserByName(r.Context(), strings.TrimPrefix(claims.Subject, userPrefix))
	if err != nil {
		s.failPage(w, "website user", err)
		return
	}
	refresh, err := s.secrets.seal([]byte(tr.RefreshToken))
	if err != nil {
		s.failPage(w, "seal refresh token", err)
		return
	}
	id := newSecret()
	ws := &store.WebSession{IDHash: hashSecret(id), UserID: u.ID, Refresh: refresh, CSRF: newSecret(),
		ExpiresAt: s.now().Add(s.cfg.SessionTTL)}
	if err := s.st.CreateWebSession(r.Context(), ws); err != nil {
		s.failPage(w, "create web session", err)
		return
	}
	webCookie(w, webSessionCookie, id, s.cfg.SessionTTL)
	s.setAccessCookie(w, tr.AccessToken, claims)
	s.log.Info("website signed in", "user", u.Name)
	seeOther(w, r, f.To)
}

// setAccessCookie gives the browser the website's access token, for no
// longer than the token lives.
func (s *Server) setAccessCookie(w http.ResponseWriter, raw string, c *token.Claims) {
	if ttl := c.ExpiresAt.Sub(s.now()).Truncate(time.Second); ttl > 0 {
		webCookie(w, webAccessCookie, raw, ttl)
	}
}

// webSession returns the request's website session, or nil.
func (s *Server) webSession(r *http.Request) *store.WebSession {
	return byCookie(s, r, webSessionCookie, s.st.WebSession)
}

// errNoWebSession is why a request has no website access token.
var errNoWebSession = errors.New("not signed in at the website")

// webAccess returns the claims of the request's website access token: from
// its cookie when there is one (an expired or invalid one is an error),
// else refreshed on the server from the request's website session ws (nil
// when it has none), setting the new cookie on w.
func (s *Server) webAccess(w http.ResponseWriter, r *http.Request, ws *store.WebSession) (*token.Claims, error) {
	if c, err := r.Cookie(webAccessCookie); err == nil {
		claims, err := s.apiVerifier.Verify(r.Context(), c.Value)
		switch {
		case err != nil:
		case claims.ClientID != WebsiteClientID:
			err = errors.New("not the website's token")
		case !s.now().Before(claims.ExpiresAt.Time): // no leeway: this server issued it
			err = errors.New("the website's token expired")
		}
		return claims, err
	}
	if ws == nil {
		return nil, errNoWebSession
	}
	return s.refreshWebsite(w, r, ws)
}

// refreshWebsite refreshes a website session's access token, once for the
// requests that need it at the same moment.
func (s *Server) refreshWebsite(w http.ResponseWriter, r *http.Request, ws *store.WebSession) (*token.Claims, error) {
	s.webRefresh.mu.Lock()
	defer s.webRefresh.mu.Unlock()
	now := s.now()
	if got, ok := s.webRefresh.recent[ws.IDHash]; ok && now.Before(got.until) && now.Before(got.claims.ExpiresAt.Time) {
		s.setAccessCookie(w, got.access, got.claims)
		return got.claims, nil
	}
	for id, got := range s.webRefresh.recent {
		if !now.Before(got.until) {
			delete(s.webRefresh.recent, id)
		}
	}
	ctx := r.Context()
	raw, err := s.secrets.open(ws.Refresh)
	if err != nil {
		return nil, err
	}
	client, err := s.st.Client(ctx, WebsiteClientID)
	if err != nil {
		return nil, err
	}
	tr, oerr := s.refreshGrant(ctx, client, url.Values{"refresh_token": {string(raw)}})
	if oerr != nil {
		if err := s.st.DeleteWebSession(ctx, ws.IDHash); err != nil {
			s.log.Error("end web session", "err", err)
		}
		return nil, oerr
	}
	sealed, err := s.secrets.seal([]byte(tr.RefreshToken))
	if err != nil {
		return nil, err
	}
	if err := s.st.SetWebSessionRefresh(ctx, ws.IDHash, sealed); err != nil {
		return nil, err
	}
	claims, err := s.verifyOwn(ctx, tr.AccessToken)
	if err != nil {
		return nil, err
	}
	if s.webRefresh.recent == nil {
		s.webRefresh.recent = map[string]refreshed{}
	}
	s.webRefresh.recent[ws.IDHash] = refreshed{access: tr.AccessToken, claims: claims, until: now.Add(refreshShare)}
	s.setAccessCookie(w, tr.AccessToken, claims)
	return claims, nil
}

// WebPage checks a website page request's session. Without a valid one it
// clears the access cookie and redirects to the sign-in page, which comes
// back to this page (AUTH.md item 113), and returns false.
func (s *Server) WebPage(w http.ResponseWriter, r *http.Request) (*WebSession, bool) {
	ws := s.webSession(r)
	var err error
	if ws == nil {
		err = errNoWebSession
	} else {
		_, err = s.webAccess(w, r, ws)
	}
	if err != nil {
		if _, err := r.Cookie(webAccessCookie); err == nil {
			webCookie(w, webAccessCookie, "", 0)
		}
		pageHeaders(w)
		http.Redirect(w, r, loginURL(r.URL.RequestURI(), false), http.StatusFound)
		return nil, false
	}
	return &WebSession{User: ws.User, CSRF: ws.CSRF}, true
}

// safeMethod reports whether an HTTP method changes nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether the request does not come from another site:
// its Origin, when sent, is the issuer's.
func (s *Server) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == s.origin
}

// csrfOK checks a website request that changes something: it comes from
// this origin and carries the session's anti-CSRF token (in CSRFHeader, or
// the csrf form field).
func (s *Server) csrfOK(r *http.Request, ws *store.WebSession) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		got = r.PostFormValue("csrf")
	}
	return ws != nil && got != "" && s.sameOrigin(r) && subtle.ConstantTimeCompare([]byte(got), []byte(ws.CSRF)) == 1
}

// websiteLogout serves POST /auth/logout (the csrf form field, or
// CSRFHeader): it revokes the website's grant (its refresh token and access
// tokens), ends the website session and the sign-in at the authorization
// server, clears their cookies and goes to the sign-in page.
func (s *Server) websiteLogout(w http.ResponseWriter, r *http.Request) {
	ws := s.webSession(r)
	if ws != nil && !s.csrfOK(r, ws) {
		s.errorPage(w, http.StatusForbidden, "The sign-out form expired; reload the page and sign out again.")
		return
	}
	if ws != nil {
		if err := s.endWebSession(r.Context(), ws); err != nil {
			s.failPage(w, "sign out", err)
			return
		}
		s.log.Info("website signed out", "user", ws.User)
	}
	if ss := s.session(r); ss != nil {
		if err := s.st.DeleteSession(r.Context(), ss.IDHash); err != nil {
			s.failPage(w, "sign out", err)
			return
		}
	}
	webCookie(w, webAccessCookie, "", 0)
	webCookie(w, webSessionCookie, "", 0)
	s.clearCookie(w, sessionCookie)
	seeOther(w, r, "/login")
}

// endWebSession revokes a website session's grant (RFC 7009: its refresh
// token and the access tokens issued with it) and forgets the session.
func (s *Server) endWebSession(ctx context.Context, ws *store.WebSession) error {
	if raw, err := s.secrets.open(ws.Refresh); err == nil {
		if rt := s.knownRefresh(ctx, string(raw)); rt != nil {
			if err := s.st.RevokeGrant(ctx, rt.Grant.ID); err != nil {
				return err
			}
			s.revoked()
		}
	}
	s.webRefresh.mu.Lock()
	delete(s.webRefresh.recent, ws.IDHash)
	s.webRefresh.mu.Unlock()
	return s.st.DeleteWebSession(ctx, ws.IDHash)
}
