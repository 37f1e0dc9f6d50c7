package cloud_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/cloud/ingest"
)

// startWebStack runs influxd, a broker and the cloud, listening on a port
// chosen before it starts so that its issuer (and with it the website's
// redirect URI) is its real address, as a browser sees it. change, if not
// nil, adjusts the cloud's configuration first.
func startWebStack(t testing.TB, change func(*stack)) *stack {
	t.Helper()
	b := brokertest.Start(t, broker.Config{})
	s := newStack(t, ingest.Config{}, b.TCPURL)
	s.broker = b
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.cfg.HTTP = addr
	s.cfg.Auth.Issuer = "http://" + addr
	if change != nil {
		change(s)
	}
	s.stopCloud = s.startCloud(t)
	return s
}

// webBrowser is a browser at the website that keeps the cookies itself
// (the website's cookies are Secure, which net/http/cookiejar keeps off
// plain HTTP while browsers send them to loopback addresses) and follows
// no redirect by itself, so that every step can be checked.
type webBrowser struct {
	t       testing.TB
	base    string
	c       *http.Client
	cookies map[string]*http.Cookie
	seen    []*http.Response // every answer, for checks over the whole flow
	bodies  []string
}

func newWebBrowser(t testing.TB, base string) *webBrowser {
	return &webBrowser{t: t, base: base, cookies: map[string]*http.Cookie{}, c: &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request to path (or an absolute URL) with the browser's
// cookies, an optional form, and extra headers; it keeps the cookies set.
func (b *webBrowser) do(method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.base + path
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	b.seen = append(b.seen, resp)
	b.bodies = append(b.bodies, string(raw))
	return resp, string(raw)
}

// follow follows the redirects from resp on the cloud and returns the
// answer at their end.
func (b *webBrowser) follow(resp *http.Response, body string) (*http.Response, string) {
	b.t.Helper()
	for n := 0; resp.StatusCode/100 == 3; n++ {
		if n == 10 {
			b.t.Fatalf("more than 10 redirects, at %s", resp.Request.URL)
		}
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			b.t.Fatal(err)
		}
		resp, body = b.do(http.MethodGet, loc.String(), nil, nil)
	}
	return resp, body
}

// signIn opens page, is sent to the sign-in form, signs in as user and
// follows the website's sign-in back to the page, whose app it returns.
func (b *webBrowser) signIn(page, user, password string) string {
	b.t.Helper()
	resp, body := b.follow(b.do(http.MethodGet, page, nil, nil))
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, `action="/login"`) {
		b.t.Fatalf("opening %s: want the sign-in form, got %s at %s", page, resp.Status, resp.Request.URL)
	}
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], m[2])
	}
	form.Set("username", user)
	form.Set("password", password)
	resp, body = b.follow(b.do(http.MethodPost, "/login", form, nil))
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RequestURI() != page || !strings.Contains(body, `id="tg-config"`) {
		b.t.Fatalf("signed in: want the app at %s, got %s at %s: %.300s", page, resp.Status, resp.Request.URL, body)
	}
	return body
}

// csrfOf reads the anti-CSRF token from a page's configuration.
var csrfOf = regexp.MustCompile(`"csrf":"([^"]+)"`)

func pageCSRF(t testing.TB, page string) string {
	t.Helper()
	m := csrfOf.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf in the page's configuration: %.500s", page)
	}
	return m[1]
}

// jwtExpiry reads the exp claim of a JWT (unverified).
func jwtExpiry(t testing.TB, raw string) time.Time {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return time.Unix(c.Exp, 0)
}

// setCookieLine returns the Set-Cookie header of resp that sets name.
func setCookieLine(resp *http.Response, name string) string {
	for _, l := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(l, name+"=") {
			return l
		}
	}
	return ""
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWebsiteSession checks the website's session against AUTH.md section
// N (items 111-117), from outside, as a browser meets it.
func TestWebsiteSession(t *testing.T) {
	logs := &syncBuffer{}
	const ttl = 3 * time.Second
	s := startWebStack(t, func(s *stack) {
		s.cfg.Auth.AccessTokenTTL = ttl
		s.cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	a := s.openAuth(t)
	if err := a.AddUser(context.Background(), "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	b := newWebBrowser(t, s.httpURL)
	page := b.signIn("/tracks?device=x", "ann", "ann's correct horse")
	csrf := pageCSRF(t, page)
	var signedIn *http.Response
	for _, r := range b.seen {
		if setCookieLine(r, "__Host-tg_at") != "" {
			signedIn = r
		}
	}
	if signedIn == nil || signedIn.Request.URL.Path != "/auth/callback" {
		t.Fatal("the access token cookie was not set by /auth/callback")
	}
	at := b.cookies["__Host-tg_at"]

	t.Run("111 the access-token cookie is __Host-, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain, Max-Age within the token's life", func(t *testing.T) {
		line := setCookieLine(signedIn, "__Host-tg_at")
		exp := jwtExpiry(t, at.Value)
		date, _ := http.ParseTime(signedIn.Header.Get("Date"))
		if !at.Secure || !at.HttpOnly || at.SameSite != http.SameSiteLaxMode && at.SameSite != http.SameSiteStrictMode ||
			at.Path != "/" || at.Domain != "" || strings.Contains(strings.ToLower(line), "domain=") {
			t.Errorf("Set-Cookie %q", line)
		}
		if at.MaxAge <= 0 || date.Add(time.Duration(at.MaxAge)*time.Second).After(exp.Add(time.Second)) {
			t.Errorf("Max-Age %d at %v outlives the token's exp %v", at.MaxAge, date, exp)
		}
		if c := b.cookies["__Host-tg_web"]; c == nil || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" {
			t.Errorf("session cookie: %+v", c)
		}
	})

	t.Run("112 the refresh token never reaches the browser", func(t *testing.T) {
		for i, r := range b.seen {
			for k, v := range r.Header {
				if strings.Contains(strings.Join(v, " "), "tgr_") {
					t.Errorf("%s: header %s holds a refresh token", r.Request.URL.Path, k)
				}
			}
			if strings.Contains(b.bodies[i], "tgr_") {
				t.Errorf("%s: the body holds a refresh token", r.Request.URL.Path)
			}
		}
		// It stays on the server, which refreshes when the access cookie is
		// gone: the session goes on.
		delete(b.cookies, "__Host-tg_at")
		resp, body := b.do(http.MethodGet, "/api/v1/tracks", nil, nil)
		if resp.StatusCode != http.StatusOK || setCookieLine(resp, "__Host-tg_at") == "" {
			t.Errorf("API call without the access cookie: %s %.200s, Set-Cookie %q", resp.Status, body, resp.Header.Values("Set-Cookie"))
		}
		if strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), " "), "tgr_") {
			t.Error("the refresh sent a refresh token to the browser")
		}
	})

	t.Run("113 an expired or invalid access cookie: pages redirect to sign-in and back, API calls get 401", func(t *testing.T) {
		for name, value := range map[string]string{"expired": at.Value, "invalid": "eyJhbGciOiJub25lIn0.e30.", "garbage": "x"} {
			if name == "expired" {
				time.Sleep(time.Until(jwtExpiry(t, at.Value).Add(time.Second)))
			}
			saved := b.cookies["__Host-tg_at"]
			b.cookies["__Host-tg_at"] = &http.Cookie{Name: "__Host-tg_at", Value: value}
			resp, _ := b.do(http.MethodGet, "/tracks/abc?x=1", nil, nil)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/login?return_to=%2Ftracks%2Fabc%3Fx%3D1" {
				t.Errorf("%s cookie: page answered %s to %q", name, resp.Status, resp.Header.Get("Location"))
			}
			b.cookies["__Host-tg_at"] = &http.Cookie{Name: "__Host-tg_at", Value: value}
			resp, _ = b.do(http.MethodGet, "/api/v1/tracks", nil, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s cookie: API answered %s", name, resp.Status)
			}
			b.cookies["__Host-tg_at"] = saved
		}
		// The sign-in page, with the sign-in at the authorization server
		// still on, takes the person straight back to the page.
		resp, body := b.follow(b.do(http.MethodGet, "/login?return_to=%2Ftracks%2Fabc%3Fx%3D1", nil, nil))
		if resp.StatusCode != http.StatusOK || resp.Request.URL.RequestURI() != "/tracks/abc?x=1" || !strings.Contains(body, `id="tg-config"`) {
			t.Errorf("back from sign-in: %s at %s", resp.Status, resp.Request.URL)
		}
		csrf = pageCSRF(t, body)
		for _, to := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil", "javascript:alert(1)"} {
			resp, _ := b.do(http.MethodGet, "/login?return_to="+url.QueryEscape(to), nil, nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("return_to %q: %s, want 400", to, resp.Status)
			}
		}
	})

	t.Run("115 calls that change something need the CSRF token and this origin", func(t *testing.T) {
		body := url.Values{} // not read: refused before
		for name, h := range map[string]map[string]string{
			"no token":       {"Content-Type": "application/json"},
			"a wrong token":  {"X-CSRF-Token": csrf + "x"},
			"another origin": {"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
		} {
			resp, out := b.do(http.MethodPost, "/api/v1/tracks", body, h)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(out, `"code":"csrf"`) {
				t.Errorf("%s: %s %.200s", name, resp.Status, out)
			}
		}
		resp, out := b.do(http.MethodPost, "/api/v1/account/password", nil, map[string]string{"X-CSRF-Token": csrf, "Origin": s.httpURL})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, "invalid_request") {
			t.Errorf("with the token and this origin: %s %.200s, want the body refused (400)", resp.Status, out)
		}
	})

	t.Run("115 the callback checks state, PKCE and iss", func(t *testing.T) {
		// Two sign-ins started: each flow cookie with its own state and
		// verifier.
		start := func() (flow *http.Cookie, authorize *url.URL) {
			c := newWebBrowser(t, s.httpURL)
			c.cookies = map[string]*http.Cookie{}
			for k, v := range b.cookies {
				if k != "__Host-tg_at" && k != "__Host-tg_web" {
					c.cookies[k] = v
				}
			}
			// The sign-in page sends the signed-in person to /authorize,
			// which redirects to the callback: stop there.
			resp, _ := c.do(http.MethodGet, "/login?return_to=%2Flive", nil, nil)
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || loc.Path != "/authorize" {
				t.Fatalf("sign-in page: %s to %q, want /authorize", resp.Status, resp.Header.Get("Location"))
			}
			resp, _ = c.do(http.MethodGet, loc.String(), nil, nil)
			at, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || at.Path != "/auth/callback" {
				t.Fatalf("authorize: %s to %q, want the callback", resp.Status, resp.Header.Get("Location"))
			}
			var f *http.Cookie
			for _, r := range c.seen {
				for _, ck := range r.Cookies() {
					if ck.Name == "__Host-tg_flow" && ck.MaxAge > 0 {
						f = ck
					}
				}
			}
			return f, at
		}
		flowA, cbA := start()
		flowB, cbB := start()
		callback := func(flow *http.Cookie, q url.Values) *http.Response {
			c := newWebBrowser(t, s.httpURL)
			if flow != nil {
				c.cookies[flow.Name] = flow
			}
			resp, _ := c.do(http.MethodGet, "/auth/callback?"+q.Encode(), nil, nil)
			if setCookieLine(resp, "__Host-tg_at") != "" || setCookieLine(resp, "__Host-tg_web") != "" {
				t.Errorf("a refused callback set a session cookie")
			}
			return resp
		}
		withState := func(cb *url.URL, state string) url.Values {
			q := cb.Query()
			q.Set("state", state)
			return q
		}
		withIss := func(cb *url.URL, iss string) url.Values {
			q := cb.Query()
			q.Set("iss", iss)
			return q
		}
		// In this order (a composite literal's elements are evaluated in
		// order): the first three are refused before the code is redeemed;
		// the fourth spends it, so the right flow cannot use it after.
		for name, got := range map[string]*http.Response{
			"another flow's state":                callback(flowA, withState(cbA, cbB.Query().Get("state"))),
			"no flow cookie":                      callback(nil, cbA.Query()),
			"another issuer":                      callback(flowA, withIss(cbA, "https://evil.example")),
			"a code of another flow (PKCE)":       callback(flowB, withState(cbA, cbB.Query().Get("state"))),
			"the code after a failed PKCE, spent": callback(flowA, cbA.Query()),
		} {
			if got.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %s, want 400", name, got.Status)
			}
		}
	})

	t.Run("114 sign-out is POST only, with the CSRF token; it clears the cookies, revokes the refresh token and ends the sign-in", func(t *testing.T) {
		resp, _ := b.do(http.MethodGet, "/auth/logout", nil, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /auth/logout: %s", resp.Status)
		}
		for name, form := range map[string]url.Values{"no token": {}, "a wrong token": {"csrf": {csrf + "x"}}} {
			if resp, _ := b.do(http.MethodPost, "/auth/logout", form, nil); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %s, want 403", name, resp.Status)
			}
		}
		if resp, _ := b.do(http.MethodPost, "/auth/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("from another origin: %s, want 403", resp.Status)
		}
		old := map[string]*http.Cookie{}
		for k, v := range b.cookies {
			old[k] = v
		}
		resp, _ = b.do(http.MethodPost, "/auth/logout", url.Values{"csrf": {csrf}}, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("sign-out: %s to %q", resp.Status, resp.Header.Get("Location"))
		}
		for _, name := range []string{"__Host-tg_at", "__Host-tg_web"} {
			if l := setCookieLine(resp, name); !strings.Contains(l, "Max-Age=0") {
				t.Errorf("sign-out Set-Cookie for %s: %q, want Max-Age=0", name, l)
			}
		}
		if len(b.cookies) != 0 {
			t.Errorf("cookies left after sign-out: %v", b.cookies)
		}
		// The old cookies are worth nothing: the website session is gone
		// (its refresh token revoked), and so is the sign-in at the
		// authorization server.
		b.cookies = old
		delete(b.cookies, "__Host-tg_at")
		if resp, _ := b.do(http.MethodGet, "/api/v1/tracks", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("API call with the old session cookie: %s, want 401", resp.Status)
		}
		resp, body := b.follow(b.do(http.MethodGet, "/tracks", nil, nil))
		if resp.Request.URL.Path != "/login" || !strings.Contains(body, `action="/login"`) {
			t.Errorf("a page with the old cookies: %s at %s, want the sign-in form", resp.Status, resp.Request.URL)
		}
		b.cookies = map[string]*http.Cookie{}
	})

	t.Run("116 tokens are never in URLs, logs or Referer", func(t *testing.T) {
		for _, r := range b.seen {
			for _, u := range []string{r.Request.URL.String(), r.Header.Get("Location")} {
				if strings.Contains(u, "eyJ") || strings.Contains(u, "tgr_") || strings.Contains(u, "tgs_") {
					t.Errorf("a token in the URL %s", u)
				}
			}
			if rp := r.Header.Get("Referrer-Policy"); r.Request.URL.Path == "/tracks" && r.StatusCode == http.StatusOK && rp != "same-origin" && rp != "no-referrer" {
				t.Errorf("page Referrer-Policy %q", r.Header.Get("Referrer-Policy"))
			}
		}
		if l := logs.String(); strings.Contains(l, "eyJ") || strings.Contains(l, "tgr_") || strings.Contains(l, "tgs_") || strings.Contains(l, csrf) {
			t.Errorf("a token in the logs:\n%s", l)
		}
	})

	t.Run("117 the cookies stay under 4 KiB", func(t *testing.T) {
		for _, r := range b.seen {
			for _, l := range r.Header.Values("Set-Cookie") {
				if len(l) >= 4096 {
					t.Errorf("Set-Cookie of %d bytes: %.100s", len(l), l)
				}
			}
		}
		if n := len(at.Value); n > 1500 {
			t.Errorf("access token of %d bytes", n)
		}
	})
}

// TestAccountAPI changes a password and enrols a TOTP key through the
// account API, as the website's account page does.
func TestAccountAPI(t *testing.T) {
	s := startWebStack(t, nil)
	a := s.openAuth(t)
	if err := a.AddUser(context.Background(), "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	ann := s.api(t, s.userToken(t, "ann", "ann's correct horse"))
	var acct struct {
		Name string `json:"name"`
		TOTP bool   `json:"totp"`
	}
	ann.want("GET", "/api/v1/account", nil, http.StatusOK, &acct)
	if acct.Name != "ann" || acct.TOTP {
		t.Errorf("account %+v", acct)
	}

	// Enrolment: the current password, then a code of the new key.
	ann.do("POST", "/api/v1/account/totp", map[string]string{"password": "wrong password"}).problem(t, "a wrong password", http.StatusForbidden, "wrong_password")
	var key struct{ Secret, URI, Enrolment string }
	ann.want("POST", "/api/v1/account/totp", map[string]string{"password": "ann's correct horse"}, http.StatusOK, &key)
	if len(key.Secret) < 32 || !strings.HasPrefix(key.URI, "otpauth://totp/") || key.Enrolment == "" {
		t.Fatalf("new key %+v", key)
	}
	ann.want("GET", "/api/v1/account", nil, http.StatusOK, &acct)
	if acct.TOTP {
		t.Error("two-factor is on before the key was confirmed")
	}
	code, err := totp.GenerateCode(key.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, code)+1)%1_000_000)
	ann.do("POST", "/api/v1/account/totp/confirm", map[string]string{"enrolment": key.Enrolment, "code": wrong}).problem(t, "a wrong code", http.StatusForbidden, "wrong_password")
	ann.do("POST", "/api/v1/account/totp/confirm", map[string]string{"enrolment": key.Enrolment + "x", "code": code}).problem(t, "a forged enrolment", http.StatusBadRequest, "invalid_request")
	ann.want("POST", "/api/v1/account/totp/confirm", map[string]string{"enrolment": key.Enrolment, "code": code}, http.StatusNoContent, nil)
	ann.want("GET", "/api/v1/account", nil, http.StatusOK, &acct)
	if !acct.TOTP {
		t.Error("two-factor is not on after the confirmation")
	}
	u, err := url.Parse(key.URI)
	if err != nil || u.Query().Get("secret") != key.Secret {
		t.Errorf("the URI %q does not hold the secret", key.URI)
	}

	// A new password: the current one first; the user's tokens are then
	// revoked.
	ann.do("POST", "/api/v1/account/password", map[string]string{"current": "wrong password", "new": "a new long password"}).problem(t, "a wrong current password", http.StatusForbidden, "wrong_password")
	ann.do("POST", "/api/v1/account/password", map[string]string{"current": "ann's correct horse", "new": "short"}).problem(t, "a short new password", http.StatusBadRequest, "invalid_request")
	ann.want("POST", "/api/v1/account/password", map[string]string{"current": "ann's correct horse", "new": "a new long password"}, http.StatusNoContent, nil)
	ann.do("GET", "/api/v1/account", nil).problem(t, "the old token after the change", http.StatusUnauthorized, "invalid_token")
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
