package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"trackgate/cloud/store"
)

// Cookie names, with the __Host- prefix (Secure, Path=/, no Domain) when the
// issuer is https.
const (
	sessionCookie = "tg_session" // the sign-in session
	csrfCookie    = "tg_csrf"    // the sign-in form's anti-CSRF token (double submit)
)

func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: "", Path: "/", MaxAge: -1,
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// session returns the request's sign-in session, or nil.
func (s *Server) session(r *http.Request) *store.Session {
	return byCookie(s, r, s.cookieName(sessionCookie), s.st.Session)
}

// byCookie returns what the request's cookie name identifies, found by the
// hash of its value, or nil when there is none.
func byCookie[T any](s *Server, r *http.Request, name string, find func(context.Context, string) (*T, error)) *T {
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return nil
	}
	v, err := find(r.Context(), hashSecret(c.Value))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("lookup by cookie", "cookie", name, "err", err)
		}
		return nil
	}
	return v
}

// complete reports whether a session has every factor its user has: the
// password, and the TOTP code when TOTP is enrolled.
func complete(ss *store.Session) bool {
	return ss != nil && (!ss.TOTP || slices.Contains(ss.AMR, "otp"))
}

// startSession replaces the request's session (if any) with a new one, of
// a new id: a session id is never reused across a sign-in (no fixation).
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *store.User, amr []string, authTime time.Time) error {
	if old, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		if err := s.st.DeleteSession(r.Context(), hashSecret(old.Value)); err != nil {
			return err
		}
	}
	id := newSecret()
	ss := &store.Session{IDHash: hashSecret(id), UserID: u.ID, AMR: amr, AuthTime: authTime, CSRF: newSecret(),
		ExpiresAt: s.now().Add(s.cfg.SessionTTL)}
	if err := s.st.CreateSession(r.Context(), ss); err != nil {
		return err
	}
	s.setCookie(w, sessionCookie, id, s.cfg.SessionTTL)
	return nil
}

// seeOther redirects with 303 (after a POST: never 307, which would repeat
// the POST with its credentials), with the headers of the pages: the
// redirects of /authorize and of the sign-in pages are theirs, and some set
// the session cookie (no caching, no framing, no Referer).
func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	pageHeaders(w)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// loginURL is the sign-in page that returns to returnTo.
func loginURL(returnTo string, force bool) string {
	v := url.Values{"return_to": {returnTo}}
	if force {
		v.Set("prompt", "login")
	}
	return "/login?" + v.Encode()
}

// returnTo reads the return_to of a sign-in request: a path on this server,
// "/" when there is none. Anything else is answered with an error page.
func (s *Server) returnTo(w http.ResponseWriter, v string) (string, bool) {
	if v == "" {
		return "/", true
	}
	if !safeReturn(v) {
		s.errorPage(w, http.StatusBadRequest, "return_to must be a path on this server.")
		return "", false
	}
	return v, true
}

// loginPage serves GET /login.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.URL.Query().Get("return_to"))
	if !ok {
		return
	}
	ss, force := s.session(r), r.URL.Query().Get("prompt") == "login"
	switch {
	case complete(ss) && !force:
		s.proceed(w, r, to)
	case ss != nil && !complete(ss) && !force:
		seeOther(w, r, "/login/totp?"+url.Values{"return_to": {to}}.Encode())
	default:
		s.renderLogin(w, r, http.StatusOK, to, "", "")
	}
}

// renderLogin shows the sign-in form with a fresh anti-CSRF token.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, to, name, msg string) {
	csrf := newSecret()
	s.setCookie(w, csrfCookie, csrf, time.Hour)
	s.render(w, status, "login", pageData{Title: "Sign in", Error: msg, CSRF: csrf, ReturnTo: to, Name: name})
}

// errBadCredentials is the one answer to a failed sign-in, whether the user
// exists or not.
const errBadCredentials = "Wrong user name or password."

// dummyHash is checked against when the user does not exist, so that the
// answer takes as long as for a wrong password.
var dummyHash, _ = HashPassword("trackgate: not a password")

// login serves POST /login: the password step.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.PostFormValue("return_to"))
	if !ok {
		return
	}
	name := strings.TrimSpace(r.PostFormValue("username"))
	if !s.csrfCookieMatches(r) {
		s.renderLogin(w, r, http.StatusForbidden, to, name, "The form expired. Please sign in again.")
		return
	}
	now, addr, account := s.now(), clientAddr(r), strings.ToLower(name)
	limits := []limit{{s.loginAddr, addr}, {s.loginAccount, account}}
	if msg := s.take(now, limits...); msg != "" {
		s.renderLogin(w, r, http.StatusTooManyRequests, to, name, msg)
		return
	}
	u, err := s.st.UserByName(r.Context(), name)
	hash := dummyHash
	if err == nil {
		hash = u.PasswordHash
	} else if !errors.Is(err, store.ErrNotFound) {
		giveBack(limits...)
		s.failPage(w, "user lookup", err)
		return
	}
	good, err := CheckPassword(hash, r.PostFormValue("password"))
	if err != nil {
		s.log.Error("check password", "err", err)
	}
	if !good || u == nil { // counted by take
		s.log.Info("sign-in failed", "addr", addr)
		s.renderLogin(w, r, http.StatusUnauthorized, to, name, errBadCredentials)
		return
	}
	s.loginAddr.giveBack(addr)
	s.loginAccount.reset(account)
	if err := s.startSession(w, r, u, []string{"pwd"}, now); err != nil {
		s.failPage(w, "start session", err)
		return
	}
	s.clearCookie(w, csrfCookie)
	if u.TOTPSecret != "" {
		seeOther(w, r, "/login/totp?"+url.Values{"return_to": {to}}.Encode())
		return
	}
	s.log.Info("signed in", "user", u.Name, "amr", "pwd")
	s.proceed(w, r, to)
}

// limit is a key of a throttle.
type limit struct {
	t   *throttle
	key string
}

// take counts an attempt against each of the limits before the attempt is
// checked, so that guesses sent in parallel cannot all pass the check
// before the first failure is counted: a failed attempt stays counted, a
// successful one is given back (giveBack, or the limit's reset). When a
// limit is blocked at now, take counts nothing and returns the message to
// show; otherwise "".
func (s *Server) take(now time.Time, limits ...limit) string {
	for i, l := range limits {
		if ok, wait := l.t.take(l.key, now); !ok {
			giveBack(limits[:i]...)
			return fmt.Sprintf("Too many failed attempts. Try again in %d minutes.", int(wait.Minutes())+1)
		}
	}
	return ""
}

// giveBack uncounts the attempt take counted against limits.
func giveBack(limits ...limit) {
	for _, l := range limits {
		l.t.giveBack(l.key)
	}
}

// csrfCookieMatches checks the sign-in form's double-submitted token.
func (s *Server) csrfCookieMatches(r *http.Request) bool {
	c, err := r.Cookie(s.cookieName(csrfCookie))
	form := r.PostFormValue("csrf")
	return err == nil && c.Value != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

// sessionCSRFMatches checks a signed-in form's token against its session's.
func sessionCSRFMatches(ss *store.Session, r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(ss.CSRF), []byte(r.PostFormValue("csrf"))) == 1
}

// totpPage serves GET /login/totp.
func (s *Server) totpPage(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.URL.Query().Get("return_to"))
	if !ok {
		return
	}
	ss := s.session(r)
	switch {
	case ss == nil:
		seeOther(w, r, loginURL(to, false))
	case complete(ss):
		s.proceed(w, r, to)
	default:
		s.render(w, http.StatusOK, "totp", pageData{Title: "Two-factor code", CSRF: ss.CSRF, ReturnTo: to, User: ss.User})
	}
}

// totpLogin serves POST /login/totp: the second step.
func (s *Server) totpLogin(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.PostFormValue("return_to"))
	if !ok {
		return
	}
	ss := s.session(r)
	if ss == nil || complete(ss) {
		seeOther(w, r, loginURL(to, false))
		return
	}
	page := pageData{Title: "Two-factor code", CSRF: ss.CSRF, ReturnTo: to, User: ss.User}
	if !sessionCSRFMatches(ss, r) {
		page.Error = "The form expired. Please try again."
		s.render(w, http.StatusForbidden, "totp", page)
		return
	}
	now, key := s.now(), fmt.Sprint(ss.UserID)
	lim := limit{s.totpUser, key}
	if page.Error = s.take(now, lim); page.Error != "" {
		s.render(w, http.StatusTooManyRequests, "totp", page)
		return
	}
	u, err := s.st.UserByName(r.Context(), ss.User)
	var good bool
	if err == nil {
		good, err = s.CheckTOTP(r.Context(), u, strings.TrimSpace(r.PostFormValue("code")), now)
	}
	if err != nil {
		giveBack(lim)
		s.failPage(w, "check TOTP", err)
		return
	}
	if !good { // counted by take
		s.log.Info("TOTP failed", "user", ss.User, "addr", clientAddr(r))
		page.Error = "Wrong or already used code."
		s.render(w, http.StatusUnauthorized, "totp", page)
		return
	}
	s.totpUser.reset(key)
	if err := s.startSession(w, r, u, []string{"pwd", "otp"}, now); err != nil {
		s.failPage(w, "start session", err)
		return
	}
	s.log.Info("signed in", "user", u.Name, "amr", "pwd otp")
	s.proceed(w, r, to)
}

// logoutPage serves GET /logout: the sign-out form.
func (s *Server) logoutPage(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.URL.Query().Get("return_to"))
	if !ok {
		return
	}
	ss := s.session(r)
	if ss == nil {
		s.render(w, http.StatusOK, "message", pageData{Title: "Sign out", Message: "You are signed out."})
		return
	}
	s.render(w, http.StatusOK, "logout", pageData{Title: "Sign out", User: ss.User, CSRF: ss.CSRF, ReturnTo: to})
}

// logout serves POST /logout: it ends the session and revokes the user's
// grants (their refresh tokens and access tokens).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	to, ok := s.returnTo(w, r.PostFormValue("return_to"))
	if !ok {
		return
	}
	ss := s.session(r)
	if ss == nil {
		seeOther(w, r, to)
		return
	}
	if !sessionCSRFMatches(ss, r) {
		s.errorPage(w, http.StatusForbidden, "The sign-out form expired; sign out again.")
		return
	}
	if err := s.signOut(r.Context(), ss); err != nil {
		s.failPage(w, "sign out", err)
		return
	}
	s.clearCookie(w, sessionCookie)
	seeOther(w, r, to)
}

func (s *Server) signOut(ctx context.Context, ss *store.Session) error {
	if err := s.st.DeleteSession(ctx, ss.IDHash); err != nil {
		return err
	}
	return s.st.RevokeUserGrants(ctx, ss.UserID)
}
