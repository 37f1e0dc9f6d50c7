package auth

// Black-box tests of the authorization endpoint, the sign-in pages and the
// authorization code, over HTTP against the server of newFixture: AUTH.md
// items 6–10 (page headers), 11–21 (/authorize and redirect URIs), 22–27
// (PKCE), 28–33 (the code), 101–110 (sign-in, TOTP, session) and 50/114
// (sign-out at the authorization server).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"trackgate/cloud/store"
	"trackgate/internal/token"
)

const (
	authzPassword    = "correct horse battery"
	loopbackRedirect = "http://127.0.0.1:49152/callback" // trackctl's, on a port of its choosing
	phoneRedirect    = "trackgate:/callback"             // the phone app's, matched exactly
)

// fakeClock replaces the server's clock (f.srv.now) with one a test moves
// forward. Call it before the fixture serves its first request.
type fakeClock struct{ off atomic.Int64 }

func (f *fixture) fakeClock() *fakeClock {
	c := &fakeClock{}
	f.srv.now = func() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }
	return c
}

func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// noRedirects returns b without following redirects, sharing its cookies.
func (b *browser) noRedirects() *browser {
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{f: b.f, c: &c}
}

// jarCookie returns the value of b's cookie name on the server, "" if none.
func (b *browser) jarCookie(name string) string {
	u, _ := url.Parse(b.f.http.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// plantCookie plants a cookie in b's jar for the server.
func (b *browser) plantCookie(name, value string) {
	u, _ := url.Parse(b.f.http.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// getWith fetches a path on the server with extra request headers.
func (b *browser) getWith(t *testing.T, path string, h http.Header) page {
	t.Helper()
	req, _ := http.NewRequest("GET", b.f.http.URL+path, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	return b.do(t, req)
}

// signedInAs adds user name (with TOTP when withTOTP) and returns a browser
// signed in as them, and the TOTP secret.
func (f *fixture) signedInAs(t *testing.T, name string, withTOTP bool) (*browser, string) {
	t.Helper()
	secret := f.user(t, name, authzPassword, withTOTP)
	b := f.browser(t)
	b.signIn(t, b.get(t, "/login"), name, authzPassword, secret)
	if b.jarCookie(sessionCookie) == "" {
		t.Fatalf("%s: no session cookie after signing in", name)
	}
	return b, secret
}

// authParams is a good authorization request of trackctl.
func authParams(challenge string) url.Values {
	return url.Values{"client_id": {"trackctl"}, "redirect_uri": {loopbackRedirect}, "response_type": {"code"},
		"scope": {"tracks:read"}, "state": {"st-9"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
}

func authorizePath(v url.Values) string { return "/authorize?" + v.Encode() }

// authzCode gets an authorization code for params from signed-in browser b.
func (b *browser) authzCode(t *testing.T, params url.Values) string {
	t.Helper()
	loc := b.noRedirects().get(t, authorizePath(params)).location(t)
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// newAuthzCode gets a code of trackctl for loopbackRedirect and its verifier.
func (b *browser) newAuthzCode(t *testing.T) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	return b.authzCode(t, authParams(s256(verifier))), verifier
}

// redeemForm is trackctl's token request for a code.
func redeemForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {"trackctl"}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {loopbackRedirect}}
}

// rsLookup returns a function that introspects a token as a resource
// server registered for it.
var rsClients atomic.Int64

func (f *fixture) rsLookup(t *testing.T) func(tok string) map[string]any {
	t.Helper()
	id, secret := f.service(t, fmt.Sprintf("rs-authz-%d", rsClients.Add(1)), "introspect")
	return func(tok string) map[string]any {
		t.Helper()
		status, _, m := f.post(t, "/introspect", url.Values{"token": {tok}}, id, secret)
		if status != 200 {
			t.Fatalf("introspect: %d %v", status, m)
		}
		return m
	}
}

// isInactive reports whether an introspection answer is exactly
// {"active":false}.
func isInactive(m map[string]any) bool { return len(m) == 1 && m["active"] == false }

// noFollow is a client without cookies that follows no redirect; safe for
// use from several goroutines.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// postLogin posts the sign-in form as a script would (a csrf cookie and
// field that match) with extra headers, and returns the status and body.
// It reports errors instead of failing, for use in goroutines.
func (f *fixture) postLogin(name, password string, extra http.Header) (int, string, error) {
	form := url.Values{"csrf": {"csrf-1"}, "username": {name}, "password": {password}, "return_to": {"/"}}
	req, err := http.NewRequest("POST", f.http.URL+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: csrfCookie, Value: "csrf-1"})
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// spoofed are forwarding headers an outside client may send (item 10).
var spoofed = http.Header{
	"X-Forwarded-For":   {"203.0.113.7"},
	"X-Forwarded-Host":  {"evil.example"},
	"X-Forwarded-Proto": {"https"},
	"Forwarded":         {"for=203.0.113.7;host=evil.example;proto=https"},
	"X-Real-Ip":         {"203.0.113.7"},
}

// setCookieNamed returns the Set-Cookie of h for cookie name, or nil.
func setCookieNamed(t *testing.T, h http.Header, name string) *http.Cookie {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.Name == name {
			return c
		}
	}
	return nil
}

// wrongTOTP returns a 6-digit code that is none of secret's codes near at.
func wrongTOTP(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	near := map[string]bool{}
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		c, err := totp.GenerateCode(secret, at.Add(d))
		if err != nil {
			t.Fatal(err)
		}
		near[c] = true
	}
	for i := 1; ; i++ {
		if c := fmt.Sprintf("%06d", i*7919%1000000); !near[c] {
			return c
		}
	}
}

// totpCode is secret's code at the server's now.
func (f *fixture) totpCode(t *testing.T, secret string) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, f.srv.now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// isErrorPage checks that p is the error page with status, and no redirect.
func isErrorPage(t *testing.T, p page, status int) {
	t.Helper()
	if p.status != status || p.header.Get("Location") != "" || !strings.Contains(p.body, `class="error"`) {
		t.Errorf("want the error page with %d and no redirect; got %d Location %q: %.200s", status, p.status, p.header.Get("Location"), p.body)
	}
}

// thirdParty matches what would load a resource in a page whose attribute
// values are blanked (attrValue).
var (
	thirdParty = regexp.MustCompile(`(?i)<(script|link|img|iframe|frame|object|embed|video|audio|source|base)\b|\s(src|srcset|background|poster)=|@import|url\(`)
	attrValue  = regexp.MustCompile(`="[^"]*"`)
)

// checkPageHeaders checks the headers of an authorization-server page
// (items 6, 7, 8, 9).
func checkPageHeaders(t *testing.T, p page) {
	t.Helper()
	h := p.header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("7 9: Content-Security-Policy %q", csp)
	}
	if got := h.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("7: X-Frame-Options %q", got)
	}
	if got := h.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("9: Referrer-Policy %q", got)
	}
	if got := h.Get("Cache-Control"); !strings.Contains(got, "no-store") || h.Get("Pragma") != "no-cache" {
		t.Errorf("6: Cache-Control %q Pragma %q", got, h.Get("Pragma"))
	}
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("8: CORS header %s: %v", k, h[k])
		}
	}
	if m := thirdParty.FindString(attrValue.ReplaceAllString(p.body, `=""`)); m != "" {
		t.Errorf("9: the page loads a resource: %q", m)
	}
}

// TestItems6to10PageHeaders checks the headers of /authorize and of the
// sign-in, TOTP, device and error pages, CORS, and forwarded headers
// (AUTH.md 6, 7, 8, 9, 10).
func TestItems6to10PageHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann, _ := f.signedInAs(t, "ann", false)
	tia := f.browser(t).noRedirects()
	f.user(t, "tia", authzPassword, true)
	passwordStep := tia.submit(t, tia.get(t, "/login"), "/login", url.Values{"username": {"tia"}, "password": {authzPassword}})
	totpPage := tia.get(t, "/login/totp")
	anon := f.browser(t).noRedirects()
	good := authParams(s256(oauth2.GenerateVerifier()))

	cases := []struct {
		name   string
		get    func(t *testing.T) page
		status int
	}{
		{"authorize error page", func(t *testing.T) page { return anon.get(t, "/authorize?client_id=nobody") }, 400},
		{"authorize to the sign-in page", func(t *testing.T) page { return anon.get(t, authorizePath(good)) }, 303},
		{"authorize back to the client with a code", func(t *testing.T) page { return ann.noRedirects().get(t, authorizePath(good)) }, 302},
		{"authorize error back to the client", func(t *testing.T) page {
			v := authParams(s256(oauth2.GenerateVerifier()))
			v.Set("scope", "nonsense")
			return ann.noRedirects().get(t, authorizePath(v))
		}, 302},
		{"login", func(t *testing.T) page { return anon.get(t, "/login") }, 200},
		{"login with markup in return_to", func(t *testing.T) page {
			return anon.get(t, "/login?"+url.Values{"return_to": {`/"><script src="https://evil.example/x.js"></script>`}}.Encode())
		}, 200},
		{"login failed", func(t *testing.T) page {
			b := f.browser(t)
			return b.submit(t, b.get(t, "/login"), "/login", url.Values{"username": {"ann"}, "password": {"wrong password"}})
		}, 401},
		{"login CSRF refused", func(t *testing.T) page { return anon.post(t, "/login", url.Values{"username": {"ann"}}) }, 403},
		{"login signed in, to TOTP", func(t *testing.T) page { return passwordStep }, 303},
		{"login/totp", func(t *testing.T) page { return totpPage }, 200},
		{"device", func(t *testing.T) page { return ann.get(t, "/device") }, 200},
		{"device unknown code", func(t *testing.T) page { return ann.get(t, "/device?user_code=BCDF-GHJK") }, 400},
		{"device not signed in", func(t *testing.T) page { return anon.get(t, "/device") }, 303},
	}
	for _, tt := range cases {
		t.Run("6 7 8 9 "+tt.name, func(t *testing.T) {
			p := tt.get(t)
			if p.status != tt.status {
				t.Fatalf("status %d, want %d: %.200s", p.status, tt.status, p.body)
			}
			checkPageHeaders(t, p)
		})
	}

	t.Run("8 no CORS at /authorize, no preflight answered", func(t *testing.T) {
		h := http.Header{"Origin": {"https://evil.example"}}
		if p := ann.noRedirects().getWith(t, authorizePath(good), h); p.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET with Origin: Access-Control-Allow-Origin %q", p.header.Get("Access-Control-Allow-Origin"))
		}
		for _, path := range []string{authorizePath(good), "/login", "/login/totp", "/device"} {
			req, _ := http.NewRequest("OPTIONS", f.http.URL+path, nil)
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Access-Control-Request-Method", "GET")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
			p := anon.do(t, req)
			if p.status/100 == 2 {
				t.Errorf("OPTIONS %s: %d", path, p.status)
			}
			for k := range p.header {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("OPTIONS %s: %s %v", path, k, p.header[k])
				}
			}
		}
	})

	t.Run("10 forwarded headers change no issuer", func(t *testing.T) {
		for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			req, _ := http.NewRequest("GET", f.http.URL+path, nil)
			for k, v := range spoofed {
				req.Header[k] = v
			}
			_, _, m := do(t, req)
			if m["issuer"] != f.http.URL {
				t.Errorf("%s: issuer %v", path, m["issuer"])
			}
			for k, v := range m {
				if s, ok := v.(string); ok && (strings.HasSuffix(k, "_endpoint") || k == "jwks_uri") && !strings.HasPrefix(s, f.http.URL+"/") {
					t.Errorf("%s: %s %s", path, k, s)
				}
			}
		}
		req, _ := http.NewRequest("POST", f.http.URL+"/device_authorization", strings.NewReader("client_id=trackctl"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range spoofed {
			req.Header[k] = v
		}
		if _, _, m := do(t, req); m["verification_uri"] != f.http.URL+"/device" {
			t.Errorf("verification_uri %v", m["verification_uri"])
		}
	})
	t.Run("10 forwarded headers change no redirect target", func(t *testing.T) {
		loc := ann.noRedirects().getWith(t, authorizePath(good), spoofed).location(t)
		if loc.Scheme+"://"+loc.Host+loc.Path != loopbackRedirect || loc.Query().Get("iss") != f.http.URL {
			t.Errorf("redirected to %s", loc)
		}
		loc = anon.getWith(t, authorizePath(good), spoofed).location(t)
		if loc.Host != "" || loc.Scheme != "" || loc.Path != "/login" {
			t.Errorf("sign-in redirect to %s, want a path on this server", loc)
		}
	})
	t.Run("10 client-certificate headers authenticate no client", func(t *testing.T) {
		id, _ := f.service(t, "svc")
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}
		req, _ := http.NewRequest("POST", f.http.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Client-Cert", "-----BEGIN CERTIFICATE-----")
		req.Header.Set("X-SSL-Client-Cert", "-----BEGIN CERTIFICATE-----")
		req.Header.Set("X-SSL-Client-Verify", "SUCCESS")
		req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://x;Hash=00;Subject=\"CN="+id+"\"")
		if status, _, m := do(t, req); status != 401 || m["error"] != "invalid_client" {
			t.Errorf("%d %v", status, m)
		}
	})
}

// TestItems11to21AuthorizeEndpoint covers redirect URI matching, errors at
// /authorize, return_to and state (AUTH.md 11–21).
func TestItems11to21AuthorizeEndpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann, _ := f.signedInAs(t, "ann", false)
	m := ann.noRedirects()
	website := f.http.URL + "/auth/callback"

	rejected := []struct {
		name     string
		client   string
		redirect string // "-" to leave it out
		extra    string // raw query appended
	}{
		{"11 phone changed path", "phone", "trackgate:/callback/x", ""},
		{"11 phone extra query", "phone", "trackgate:/callback?x=1", ""},
		{"11 phone trailing slash", "phone", "trackgate:/callback/", ""},
		{"11 phone different case in the path", "phone", "trackgate:/Callback", ""},
		{"11 phone different case in the scheme", "phone", "TRACKGATE:/callback", ""},
		{"11 phone added fragment", "phone", "trackgate:/callback#frag", ""},
		{"11 phone empty fragment", "phone", "trackgate:/callback#", ""},
		{"11 website trailing slash", "website", website + "/", ""},
		{"11 website extra query", "website", website + "?next=/", ""},
		{"11 website different case", "website", strings.ToUpper(website), ""},
		{"11 website added fragment", "website", website + "#x", ""},
		{"11 website changed path", "website", f.http.URL + "/auth/callbacks", ""},
		{"11 loopback changed path", "trackctl", "http://127.0.0.1:49152/callback/x", ""},
		{"11 loopback extra query", "trackctl", "http://127.0.0.1:49152/callback?x=1", ""},
		{"11 loopback trailing slash", "trackctl", "http://127.0.0.1:49152/callback/", ""},
		{"11 loopback different case", "trackctl", "http://127.0.0.1:49152/Callback", ""},
		{"11 loopback different case in the scheme", "trackctl", "HTTP://127.0.0.1:49152/callback", ""},
		{"11 loopback added fragment", "trackctl", "http://127.0.0.1:49152/callback#x", ""},
		{"11 loopback empty fragment", "trackctl", "http://127.0.0.1:49152/callback#", ""},
		{"11 loopback percent-encoded path", "trackctl", "http://127.0.0.1:49152/%63allback", ""},
		{"12 localhost refused", "trackctl", "http://localhost:49152/callback", ""},
		{"12 localhost without port refused", "trackctl", "http://localhost/callback", ""},
		{"12 other loopback address refused", "trackctl", "http://127.0.0.2:49152/callback", ""},
		{"12 long form of ::1 refused", "trackctl", "http://[0:0:0:0:0:0:0:1]:49152/callback", ""},
		{"12 user info refused", "trackctl", "http://evil@127.0.0.1:49152/callback", ""},
		{"12 empty port refused", "trackctl", "http://127.0.0.1:/callback", ""},
		{"12 https loopback is not registered", "trackctl", "https://127.0.0.1:49152/callback", ""},
		{"13 non-loopback http", "trackctl", "http://example.com/callback", ""},
		{"13 non-loopback http with port", "trackctl", "http://example.com:49152/callback", ""},
		{"13 private address http", "trackctl", "http://10.0.0.1:49152/callback", ""},
		{"13 loopback URI of a client without one", "phone", "http://127.0.0.1:49152/callback", ""},
		{"14 missing redirect_uri", "trackctl", "-", ""},
		{"14 empty redirect_uri", "trackctl", "", ""},
		{"14 redirect_uri not a URL", "trackctl", "http://127.0.0.1:49152/%zz", ""},
		{"14 client without redirect URIs", "gateway", loopbackRedirect, ""},
		{"14 service client", "svc", loopbackRedirect, ""},
		{"14 unknown client_id", "nobody", loopbackRedirect, ""},
		{"14 missing client_id", "", loopbackRedirect, ""},
		{"14 malformed query", "trackctl", loopbackRedirect, "&%zz"},
		{"14 16 two redirect_uri", "trackctl", loopbackRedirect, "&redirect_uri=" + url.QueryEscape(loopbackRedirect)},
		{"14 16 two client_id", "trackctl", loopbackRedirect, "&client_id=trackctl"},
	}
	f.service(t, "svc")
	for _, tt := range rejected {
		t.Run(tt.name, func(t *testing.T) {
			v := authParams(s256(oauth2.GenerateVerifier()))
			v.Set("client_id", tt.client)
			if tt.client == "" {
				v.Del("client_id")
			}
			v.Set("redirect_uri", tt.redirect)
			if tt.redirect == "-" {
				v.Del("redirect_uri")
			}
			p := m.get(t, authorizePath(v)+tt.extra)
			isErrorPage(t, p, http.StatusBadRequest)
			if strings.Contains(p.body, "code=") {
				t.Error("the error page shows a code")
			}
		})
	}

	accepted := []struct {
		name, client, redirect string
	}{
		{"12 loopback port 1", "trackctl", "http://127.0.0.1:1/callback"},
		{"12 loopback port 49152", "trackctl", loopbackRedirect},
		{"12 loopback port 65535", "trackctl", "http://127.0.0.1:65535/callback"},
		{"12 IPv6 loopback any port", "trackctl", "http://[::1]:50123/callback"},
		{"12 loopback registered without port", "trackctl", "http://127.0.0.1/callback"},
		{"12 IPv6 loopback registered without port", "trackctl", "http://[::1]/callback"},
		{"11 phone exact", "phone", phoneRedirect},
		{"11 website exact", "website", website},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			v := authParams(s256(oauth2.GenerateVerifier()))
			v.Set("client_id", tt.client)
			v.Set("redirect_uri", tt.redirect)
			p := m.get(t, authorizePath(v))
			loc := p.location(t)
			q := loc.Query()
			loc.RawQuery = ""
			if p.status != http.StatusFound || loc.String() != tt.redirect || q.Get("code") == "" || q.Get("state") != "st-9" || q.Get("iss") != f.http.URL {
				t.Errorf("%d to %s with %v", p.status, loc, q)
			}
		})
	}

	// Errors after the client and its redirect URI are known good go back
	// to the client with error, state and iss.
	redirected := []struct {
		name string
		mod  func(v url.Values)
		raw  string
		err  string
	}{
		{"15 invalid scope", func(v url.Values) { v.Set("scope", "tracks:read admin") }, "", "invalid_scope"},
		{"15 scope of another audience", func(v url.Values) { v.Set("scope", "device") }, "", "invalid_scope"},
		{"15 introspect scope", func(v url.Values) { v.Set("scope", "introspect") }, "", "invalid_scope"},
		{"16 two state", nil, "&state=other", "invalid_request"},
		{"16 two scope", nil, "&scope=tracks:write", "invalid_request"},
		{"16 two code_challenge", nil, "&code_challenge=" + s256("x"), "invalid_request"},
		{"16 two response_type", nil, "&response_type=code", "invalid_request"},
		{"17 response_type token", func(v url.Values) { v.Set("response_type", "token") }, "", "unsupported_response_type"},
		{"17 response_type id_token token", func(v url.Values) { v.Set("response_type", "id_token token") }, "", "unsupported_response_type"},
		{"17 response_type code token", func(v url.Values) { v.Set("response_type", "code token") }, "", "unsupported_response_type"},
		{"17 response_type code id_token", func(v url.Values) { v.Set("response_type", "code id_token") }, "", "unsupported_response_type"},
		{"17 response_type missing", func(v url.Values) { v.Del("response_type") }, "", "unsupported_response_type"},
	}
	for _, tt := range redirected {
		t.Run(tt.name, func(t *testing.T) {
			v := authParams(s256(oauth2.GenerateVerifier()))
			if tt.mod != nil {
				tt.mod(v)
			}
			p := m.get(t, authorizePath(v)+tt.raw)
			loc := p.location(t)
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), loopbackRedirect+"?") || q.Get("error") != tt.err || q.Get("state") != "st-9" ||
				q.Get("iss") != f.http.URL || q.Has("code") {
				t.Errorf("%d to %s", p.status, loc)
			}
		})
	}

	t.Run("18 return_to only relative", func(t *testing.T) {
		bad := []string{"https://evil.example/", "http://evil.example", "//evil.example/", "///evil.example", "/\\evil.example",
			"\\\\evil.example", "/\\/evil.example", "javascript:alert(1)", "evil.example", "https:/evil.example",
			"/\r\nSet-Cookie: x=1", "/\tevil", "/ok\x00"}
		for _, to := range bad {
			// A signed-in browser: GET /login would redirect at once.
			isErrorPage(t, m.get(t, "/login?"+url.Values{"return_to": {to}}.Encode()), 400)
			isErrorPage(t, m.get(t, "/login/totp?"+url.Values{"return_to": {to}}.Encode()), 400)
			for _, path := range []string{"/login", "/login/totp", "/logout"} {
				isErrorPage(t, m.post(t, path, url.Values{"return_to": {to}, "username": {"ann"}, "password": {authzPassword}}), 400)
			}
		}
		anon := f.browser(t)
		to := "/authorize?client_id=trackctl&x=%2F%2Fevil"
		p := anon.get(t, "/login?"+url.Values{"return_to": {to}}.Encode())
		if p.status != 200 || p.hidden().Get("return_to") != to {
			t.Errorf("a relative return_to: %d %v", p.status, p.hidden())
		}
		if loc := m.get(t, "/login?"+url.Values{"return_to": {"/x/.//evil.example"}}.Encode()).location(t); loc.Host != "" || strings.HasPrefix(loc.Path, "//") {
			t.Errorf("redirect to %s", loc)
		}
	})

	t.Run("19 not signed in: the sign-in page, never the client", func(t *testing.T) {
		anon := f.browser(t)
		v := authParams(s256(oauth2.GenerateVerifier()))
		loc := anon.noRedirects().get(t, authorizePath(v)).location(t)
		if loc.Path != "/login" || loc.Host != "" {
			t.Errorf("redirected to %s", loc)
		}
		p := anon.get(t, authorizePath(v))
		if p.status != 200 || p.url.Path != "/login" || !strings.Contains(p.body, `action="/login"`) {
			t.Errorf("ended at %s with %d", p.url, p.status)
		}
		// A session cookie that is not a session counts for nothing.
		anon.plantCookie(sessionCookie, newSecret())
		if loc := anon.noRedirects().get(t, authorizePath(v)).location(t); loc.Path != "/login" {
			t.Errorf("forged session: redirected to %s", loc)
		}
	})

	t.Run("20 21 state round trip through the sign-in, not unique", func(t *testing.T) {
		b := f.browser(t)
		cfg := f.oauthConfig("tracks:read")
		state := "a b&c=d/é+%25;#x?"
		verifier := oauth2.GenerateVerifier()
		p := b.get(t, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
		login := b.noRedirects().submit(t, p, "/login", url.Values{"username": {"ann"}, "password": {authzPassword}})
		if login.status != http.StatusSeeOther {
			t.Errorf("20: sign-in answered %d, want 303", login.status)
		}
		next := login.location(t)
		if next.Host != "" || next.Path != "/authorize" {
			t.Fatalf("after sign-in: %s", next)
		}
		for range 2 {
			loc := b.noRedirects().get(t, next.String()).location(t)
			if got := loc.Query().Get("state"); got != state {
				t.Errorf("21: state %q, want %q", got, state)
			}
			if _, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
				t.Errorf("exchange: %v", err)
			}
		}
		v := authParams(s256(oauth2.GenerateVerifier()))
		v.Del("state")
		if loc := m.get(t, authorizePath(v)).location(t); loc.Query().Has("state") {
			t.Errorf("21: state added to %s", loc)
		}
	})
}

// logRecorder is a slog handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestItems22to27PKCE covers PKCE at /authorize and /token (AUTH.md 22–27).
func TestItems22to27PKCE(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	logs := &logRecorder{}
	f.srv.log = slog.New(logs)
	ann, _ := f.signedInAs(t, "ann", false)
	m := ann.noRedirects()

	refused := []struct {
		name string
		mod  func(v url.Values)
	}{
		{"22 26 no code_challenge", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
		{"22 26 empty code_challenge", func(v url.Values) { v.Set("code_challenge", "") }},
		{"23 method plain", func(v url.Values) { v.Set("code_challenge_method", "plain") }},
		{"23 method plain with a plain challenge", func(v url.Values) {
			v.Set("code_challenge_method", "plain")
			v.Set("code_challenge", oauth2.GenerateVerifier())
		}},
		{"23 method missing", func(v url.Values) { v.Del("code_challenge_method") }},
		{"23 method empty", func(v url.Values) { v.Set("code_challenge_method", "") }},
		{"23 method unknown", func(v url.Values) { v.Set("code_challenge_method", "S512") }},
		{"23 method lower case", func(v url.Values) { v.Set("code_challenge_method", "s256") }},
		{"23 challenge too short", func(v url.Values) { v.Set("code_challenge", v.Get("code_challenge")[:42]) }},
		{"23 challenge too long", func(v url.Values) { v.Set("code_challenge", v.Get("code_challenge")+"A") }},
		{"23 challenge not base64url", func(v url.Values) { v.Set("code_challenge", "+"+v.Get("code_challenge")[1:]) }},
		{"23 challenge padded", func(v url.Values) { v.Set("code_challenge", v.Get("code_challenge")[:42]+"=") }},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			v := authParams(s256(oauth2.GenerateVerifier()))
			tt.mod(v)
			loc := m.get(t, authorizePath(v)).location(t)
			q := loc.Query()
			if q.Get("error") != "invalid_request" || q.Has("code") || q.Get("state") != "st-9" || q.Get("iss") != f.http.URL {
				t.Errorf("redirected to %s", loc)
			}
		})
	}

	long := base64.RawURLEncoding.EncodeToString(make([]byte, 96)) // 128 characters
	verifiers := []struct {
		name     string
		verifier string
		ok       bool
	}{
		{"24 42 characters", strings.Repeat("a", 42), false},
		{"24 129 characters", long + "a", false},
		{"24 43 characters", strings.Repeat("b", 43), true},
		{"24 128 characters", long, true},
		{"24 all allowed characters", "ABCXYZabcxyz0123456789-._~" + strings.Repeat("q", 20), true},
		{"24 plus sign", strings.Repeat("c", 42) + "+", false},
		{"24 slash", strings.Repeat("c", 42) + "/", false},
		{"24 padding", strings.Repeat("c", 42) + "=", false},
		{"24 space", strings.Repeat("c", 21) + " " + strings.Repeat("c", 21), false},
		{"24 percent", strings.Repeat("c", 42) + "%", false},
		{"24 non-ASCII", strings.Repeat("c", 41) + "é", false},
		{"24 empty", "", false},
	}
	for _, tt := range verifiers {
		t.Run(tt.name, func(t *testing.T) {
			// The challenge matches the verifier: only its form can fail.
			code := ann.authzCode(t, authParams(s256(tt.verifier)))
			status, _, resp := f.post(t, "/token", redeemForm(code, tt.verifier), "", "")
			switch {
			case tt.ok && status != 200:
				t.Errorf("refused: %d %v", status, resp)
			case !tt.ok && (status != 400 || resp["error"] != "invalid_grant" && resp["error"] != "invalid_request"):
				t.Errorf("%d %v, want 400 invalid_grant or invalid_request", status, resp)
			}
		})
	}

	t.Run("25 wrong verifier: invalid_grant, and the code is spent", func(t *testing.T) {
		code, verifier := ann.newAuthzCode(t)
		status, _, resp := f.post(t, "/token", redeemForm(code, oauth2.GenerateVerifier()), "", "")
		if status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("wrong verifier: %d %v", status, resp)
		}
		status, _, resp = f.post(t, "/token", redeemForm(code, verifier), "", "")
		if status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("the right verifier after a wrong one: %d %v", status, resp)
		}
	})

	t.Run("26 verifier for a code without challenge", func(t *testing.T) {
		// /authorize issues no code without a challenge (22); one in the
		// store all the same (an older release, a bug) refuses any
		// verifier, and a made-up code is unknown.
		ctx := context.Background()
		u, err := f.st.UserByName(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		raw := "tgc_" + newSecret()
		now := f.srv.now()
		if err := f.st.CreateCode(ctx, &store.Code{Hash: hashSecret(raw), RedirectURI: loopbackRedirect, ExpiresAt: now.Add(time.Minute),
			Grant: &store.Grant{ID: newID(), ClientID: "trackctl", UserID: u.ID, Scopes: []string{"tracks:read"}, AuthTime: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		for _, code := range []string{raw, "tgc_" + newSecret()} {
			status, _, resp := f.post(t, "/token", redeemForm(code, oauth2.GenerateVerifier()), "", "")
			if status != 400 || resp["error"] != "invalid_grant" {
				t.Errorf("%d %v", status, resp)
			}
		}
	})

	t.Run("27 a reused code_challenge is logged", func(t *testing.T) {
		before := logs.count("code_challenge reused")
		v := authParams(s256(oauth2.GenerateVerifier()))
		ann.authzCode(t, v)
		if n := logs.count("code_challenge reused"); n != before {
			t.Errorf("a fresh challenge logged as reused")
		}
		ann.authzCode(t, v)
		if n := logs.count("WARN code_challenge reused"); n != before+1 {
			t.Errorf("reuse logged %d times, want once", n-before)
		}
	})
}

// TestItems28to33AuthorizationCode covers the authorization code: single
// use with revocation, atomic redemption, expiry, binding to the client
// and redirect URI, and entropy (AUTH.md 28–33).
func TestItems28to33AuthorizationCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.fakeClock()
	ann, _ := f.signedInAs(t, "ann", false)
	introspect := f.rsLookup(t)
	ctx := context.Background()
	cfg := f.oauthConfig("tracks:read")

	t.Run("28 second redemption: invalid_grant, first tokens revoked", func(t *testing.T) {
		q, verifier := ann.codeFlow(t, cfg, "", "", "")
		tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if introspect(tok.AccessToken)["active"] != true || introspect(tok.RefreshToken)["active"] != true {
			t.Fatal("tokens inactive before the reuse")
		}
		status, _, resp := f.post(t, "/token", redeemForm(q.Get("code"), verifier), "", "")
		if status != 400 || resp["error"] != "invalid_grant" || resp["access_token"] != nil {
			t.Errorf("second redemption: %d %v", status, resp)
		}
		if m := introspect(tok.AccessToken); !isInactive(m) {
			t.Errorf("access token after the reuse: %v", m)
		}
		if m := introspect(tok.RefreshToken); !isInactive(m) {
			t.Errorf("refresh token after the reuse: %v", m)
		}
		status, _, resp = f.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"trackctl"}, "refresh_token": {tok.RefreshToken}}, "", "")
		if status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("refresh after the reuse: %d %v", status, resp)
		}
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		if _, err := cfg.TokenSource(ctx, &expired).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("x/oauth2 refresh after the reuse: %v", err)
		}
	})

	t.Run("29 parallel redemptions: at most one token response", func(t *testing.T) {
		const n = 8
		for round := range 2 {
			code, verifier := ann.newAuthzCode(t)
			body := redeemForm(code, verifier).Encode()
			var wg sync.WaitGroup
			start := make(chan struct{})
			type result struct {
				status int
				resp   map[string]any
				err    error
			}
			results := make([]result, n)
			for i := range n {
				wg.Go(func() {
					<-start
					resp, err := http.Post(f.http.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(body))
					if err != nil {
						results[i].err = err
						return
					}
					defer resp.Body.Close()
					results[i].status = resp.StatusCode
					results[i].err = json.NewDecoder(resp.Body).Decode(&results[i].resp)
				})
			}
			close(start)
			wg.Wait()
			var ok []string
			for _, r := range results {
				switch {
				case r.err != nil:
					t.Errorf("round %d: %v", round, r.err)
				case r.status == 200:
					ok = append(ok, r.resp["access_token"].(string))
				case r.status != 400 || r.resp["error"] != "invalid_grant":
					t.Errorf("round %d: %d %v, want 200 or 400 invalid_grant", round, r.status, r.resp)
				}
			}
			if len(ok) > 1 {
				t.Errorf("round %d: %d token responses for one code", round, len(ok))
			}
			// The losers were second redemptions: the winner's tokens are revoked.
			for _, tok := range ok {
				if m := introspect(tok); !isInactive(m) {
					t.Errorf("round %d: 28: the winner's access token is active after other redemptions: %v", round, m)
				}
			}
		}
	})

	t.Run("30 code expires after 60 s", func(t *testing.T) {
		code, verifier := ann.newAuthzCode(t)
		clk.advance(59 * time.Second)
		if status, _, resp := f.post(t, "/token", redeemForm(code, verifier), "", ""); status != 200 {
			t.Errorf("after 59 s: %d %v", status, resp)
		}
		code, verifier = ann.newAuthzCode(t)
		clk.advance(61 * time.Second)
		if status, _, resp := f.post(t, "/token", redeemForm(code, verifier), "", ""); status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("after 61 s: %d %v", status, resp)
		}
	})

	t.Run("31 code of trackctl redeemed by another client", func(t *testing.T) {
		code, verifier := ann.newAuthzCode(t)
		form := redeemForm(code, verifier)
		form.Set("client_id", "phone")
		if status, _, resp := f.post(t, "/token", form, "", ""); status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("by phone: %d %v", status, resp)
		}
		if status, _, resp := f.post(t, "/token", redeemForm(code, verifier), "", ""); status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("by trackctl after phone tried it: %d %v", status, resp)
		}
		code, verifier = ann.newAuthzCode(t)
		form = redeemForm(code, verifier)
		form.Del("client_id")
		id, secret := f.srv.Website()
		if status, _, resp := f.post(t, "/token", form, id, secret); status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("by the website, authenticated: %d %v", status, resp)
		}
	})

	t.Run("32 redirect_uri at /token must equal the request's", func(t *testing.T) {
		for _, redirect := range []string{"-", "", "http://127.0.0.1:49153/callback", "http://[::1]:49152/callback", loopbackRedirect + "/",
			"http://127.0.0.1/callback"} {
			code, verifier := ann.newAuthzCode(t)
			form := redeemForm(code, verifier)
			form.Set("redirect_uri", redirect)
			if redirect == "-" {
				form.Del("redirect_uri")
			}
			if status, _, resp := f.post(t, "/token", form, "", ""); status != 400 || resp["error"] != "invalid_grant" {
				t.Errorf("redirect_uri %q: %d %v", redirect, status, resp)
			}
		}
		// Another port than the one the code was issued for.
		verifier := oauth2.GenerateVerifier()
		v := authParams(s256(verifier))
		v.Set("redirect_uri", "http://127.0.0.1:1/callback")
		code := ann.authzCode(t, v)
		if status, _, resp := f.post(t, "/token", redeemForm(code, verifier), "", ""); status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("code for port 1 redeemed for port 49152: %d %v", status, resp)
		}
	})

	t.Run("33 codes, tokens and device codes have at least 128 random bits", func(t *testing.T) {
		bits := func(what, s, prefix string) {
			t.Helper()
			raw, ok := strings.CutPrefix(s, prefix)
			b, err := base64.RawURLEncoding.DecodeString(raw)
			if !ok || err != nil || len(b)*8 < 128 {
				t.Errorf("%s %q: %d random bits (%v)", what, s, len(b)*8, err)
			}
		}
		seen := map[string]bool{}
		for range 3 {
			q, verifier := ann.codeFlow(t, cfg, "", "", "")
			code := q.Get("code")
			bits("code", code, "tgc_")
			tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			bits("refresh token", tok.RefreshToken, "tgr_")
			parts := strings.Split(tok.AccessToken, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims token.Claims
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			bits("access token jti", claims.ID, "")
			_, _, d := f.post(t, "/device_authorization", url.Values{"client_id": {"trackctl"}}, "", "")
			dc, _ := d["device_code"].(string)
			bits("device code", dc, "tgd_")
			for _, s := range []string{code, tok.RefreshToken, claims.ID, dc} {
				if seen[s] {
					t.Errorf("%q issued twice", s)
				}
				seen[s] = true
			}
		}
	})
}

// TestItems101and103SignInForm checks that failures do not tell whether a
// user exists, and the sign-in form's CSRF protection (AUTH.md 101, 103).
func TestItems101and103SignInForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.user(t, "zed-exists", authzPassword, false)

	t.Run("101 unknown user and wrong password look alike", func(t *testing.T) {
		csrfValue := regexp.MustCompile(`name="csrf" value="[^"]*"`)
		try := func(name string) (page, time.Duration) {
			b := f.browser(t)
			form := b.get(t, "/login")
			start := time.Now()
			p := b.submit(t, form, "/login", url.Values{"username": {name}, "password": {"wrong password"}})
			d := time.Since(start)
			p.body = strings.ReplaceAll(csrfValue.ReplaceAllString(p.body, ""), name, "NAME")
			return p, d
		}
		exists, dExists := try("zed-exists")
		missing, dMissing := try("zed-missing")
		t.Logf("wrong password %v, unknown user %v", dExists, dMissing)
		if exists.status != 401 || missing.status != exists.status {
			t.Errorf("status %d for a wrong password, %d for an unknown user", exists.status, missing.status)
		}
		if exists.body != missing.body {
			t.Errorf("bodies differ:\n%s\n%s", exists.body, missing.body)
		}
		for _, k := range []string{"Content-Type", "Content-Security-Policy", "Cache-Control"} {
			if exists.header.Get(k) != missing.header.Get(k) {
				t.Errorf("%s differs: %q, %q", k, exists.header.Get(k), missing.header.Get(k))
			}
		}
		// argon2id runs either way: both take well over a hash lookup.
		if dExists < 5*time.Millisecond || dMissing < 5*time.Millisecond {
			t.Errorf("timing: wrong password %v, unknown user %v", dExists, dMissing)
		}
	})

	t.Run("103 login CSRF", func(t *testing.T) {
		creds := url.Values{"username": {"zed-exists"}, "password": {authzPassword}}
		cases := []struct {
			name string
			form func(b *browser, p page) url.Values
		}{
			{"no csrf cookie", func(b *browser, p page) url.Values {
				b.plantCookie(csrfCookie, "")
				return p.hidden()
			}},
			{"no csrf field", func(b *browser, p page) url.Values {
				v := p.hidden()
				v.Del("csrf")
				return v
			}},
			{"wrong csrf field", func(b *browser, p page) url.Values {
				v := p.hidden()
				v.Set("csrf", newSecret())
				return v
			}},
			{"csrf of another browser", func(b *browser, p page) url.Values {
				other := f.browser(t)
				return other.get(t, "/login").hidden()
			}},
		}
		for _, tt := range cases {
			b := f.browser(t)
			p := b.get(t, "/login")
			form := tt.form(b, p)
			for k, v := range creds {
				form[k] = v
			}
			r := b.noRedirects().post(t, "/login", form)
			if r.status != http.StatusForbidden || setCookieNamed(t, r.header, sessionCookie) != nil {
				t.Errorf("%s: %d, session cookie %v", tt.name, r.status, setCookieNamed(t, r.header, sessionCookie))
			}
		}
		// Without any cookie at all, as a cross-site form post would come.
		form := url.Values{"csrf": {"x"}, "username": {"zed-exists"}, "password": {authzPassword}}
		req, _ := http.NewRequest("POST", f.http.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		if resp, err := noFollow.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site post: %v %v", resp.Status, err)
		} else {
			resp.Body.Close()
		}
	})
}

// TestItem102ThrottlePerAccount: five failures for one account lock it,
// even for the right password, and even for parallel guesses (AUTH.md 102).
func TestItem102ThrottlePerAccount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.fakeClock()
	f.user(t, "ann", authzPassword, false)

	// Eight guesses at once: only five may be checked.
	statuses := atOnce(8, func(i int) int {
		status, _, err := f.postLogin("ann", fmt.Sprintf("wrong password %d", i), nil)
		if err != nil {
			t.Error(err)
		}
		return status
	})
	if want := []int{401, 401, 401, 401, 401, 429, 429, 429}; !slices.Equal(statuses, want) {
		t.Errorf("eight parallel guesses: %v, want five checked (401) and three refused (429)", statuses)
	}
	for _, name := range []string{"ann", "ANN", " ann "} {
		status, body, err := f.postLogin(name, authzPassword, nil)
		if err != nil || status != 429 || !strings.Contains(body, "Too many failed attempts") {
			t.Errorf("right password for %q while locked: %d %v", name, status, err)
		}
	}
	clk.advance(14 * time.Minute)
	if status, _, _ := f.postLogin("ann", authzPassword, nil); status != 429 {
		t.Errorf("after 14 minutes: %d, want 429", status)
	}
	clk.advance(2 * time.Minute)
	if status, _, _ := f.postLogin("ann", authzPassword, nil); status != http.StatusSeeOther {
		t.Errorf("after 16 minutes: %d, want 303", status)
	}
}

// TestItem102ThrottlePerAddress: twenty failures from one address, for
// any names, lock the address, whatever X-Forwarded-For says (AUTH.md 102,
// 10).
func TestItem102ThrottlePerAddress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Each failure over HTTP costs an argon2id check: the first fourteen are
	// counted directly against the connection's address (which the server
	// must use, whatever the headers say), the next four over HTTP with
	// other names and forged forwarding headers.
	u, _ := url.Parse(f.http.URL)
	for range 14 {
		f.srv.loginAddr.take(u.Hostname(), f.srv.now())
	}
	for i := range 4 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}, "X-Real-Ip": {fmt.Sprintf("198.51.100.%d", i)}}
		if status, _, err := f.postLogin(fmt.Sprintf("nobody-%d", i), "wrong password", h); err != nil || status != 401 {
			t.Fatalf("failure %d: %d %v", 15+i, status, err)
		}
	}
	// Four more at once: only two may be checked.
	statuses := atOnce(4, func(i int) int {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("192.0.2.%d", i)}}
		status, _, err := f.postLogin(fmt.Sprintf("someone-%d", i), "wrong password", h)
		if err != nil {
			t.Error(err)
		}
		return status
	})
	if want := []int{401, 401, 429, 429}; !slices.Equal(statuses, want) {
		t.Errorf("four parallel guesses after 18 failures: %v, want two checked (401) and two refused (429)", statuses)
	}
	if status, _, _ := f.postLogin("someone-else", "a password", spoofed); status != 429 {
		t.Errorf("10: a spoofed X-Forwarded-For escapes the address limit: %d", status)
	}
}

// TestItems104to110TOTPAndSession signs in a TOTP user step by step: the
// redirects, the session cookie and its renewal, wrong and replayed codes,
// the TOTP lock, and the sign-in recorded in tokens (AUTH.md 19, 20, 103–
// 106, 109, 110).
func TestItems104to110TOTPAndSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.fakeClock()
	secret := f.user(t, "tia", authzPassword, true)
	b := f.browser(t)
	m := b.noRedirects()
	cfg := f.oauthConfig("tracks:read")
	b.plantCookie(sessionCookie, "planted-by-an-attacker")

	form := m.get(t, "/login")
	t.Run("109 csrf cookie attributes", func(t *testing.T) {
		c := setCookieNamed(t, form.header, csrfCookie)
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("csrf cookie %v", c)
		}
	})
	pwd := m.submit(t, form, "/login", url.Values{"username": {"tia"}, "password": {authzPassword}})
	var pwdSession string
	t.Run("20 109 password step: 303 and the session cookie", func(t *testing.T) {
		if pwd.status != http.StatusSeeOther || pwd.location(t).Path != "/login/totp" {
			t.Errorf("%d to %q", pwd.status, pwd.header.Get("Location"))
		}
		c := setCookieNamed(t, pwd.header, sessionCookie)
		if c == nil {
			t.Fatal("no session cookie")
		}
		// On this plain-http loopback issuer: no __Host- prefix, no Secure.
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.Secure || c.MaxAge <= 0 {
			t.Errorf("session cookie %q", c.Raw)
		}
		if c.Value == "planted-by-an-attacker" || len(c.Value) < 43 {
			t.Errorf("session id %q", c.Value)
		}
		pwdSession = c.Value
	})

	params := authParams(s256(oauth2.GenerateVerifier()))
	t.Run("19 half signed in: no code, prompt=none gives login_required", func(t *testing.T) {
		p := b.get(t, authorizePath(params))
		if p.status != 200 || p.url.Path != "/login/totp" {
			t.Errorf("ended at %s with %d", p.url, p.status)
		}
		v := authParams(params.Get("code_challenge"))
		v.Set("prompt", "none")
		q := m.get(t, authorizePath(v)).location(t).Query()
		if q.Get("error") != "login_required" || q.Has("code") || q.Get("state") != "st-9" || q.Get("iss") != f.http.URL {
			t.Errorf("prompt=none: %v", q)
		}
	})

	totpForm := m.get(t, "/login/totp?"+url.Values{"return_to": {authorizePath(params)}}.Encode())
	checkPageHeaders(t, totpForm)
	code := f.totpCode(t, secret)
	t.Run("104 wrong code: 401", func(t *testing.T) {
		p := m.submit(t, totpForm, "/login/totp", url.Values{"code": {wrongTOTP(t, secret, f.srv.now())}})
		if p.status != http.StatusUnauthorized || setCookieNamed(t, p.header, sessionCookie) != nil {
			t.Errorf("%d", p.status)
		}
	})
	t.Run("103 TOTP form without or with a wrong csrf: 403", func(t *testing.T) {
		for _, csrf := range []string{"", "wrong", pwdSession} {
			p := m.post(t, "/login/totp", url.Values{"code": {code}, "csrf": {csrf}, "return_to": {"/"}})
			if p.status != http.StatusForbidden {
				t.Errorf("csrf %q: %d", csrf, p.status)
			}
		}
	})
	var session string
	t.Run("20 109 TOTP step: 303 and a new session id", func(t *testing.T) {
		p := m.submit(t, totpForm, "/login/totp", url.Values{"code": {code}})
		if p.status != http.StatusSeeOther || p.location(t).Path != "/authorize" {
			t.Fatalf("%d to %q: %.300s", p.status, p.header.Get("Location"), p.body)
		}
		c := setCookieNamed(t, p.header, sessionCookie)
		if c == nil || c.Value == pwdSession || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Fatalf("session cookie %v after TOTP, %q before", c, pwdSession)
		}
		session = c.Value
		// The password-only session is gone.
		old := f.browser(t)
		old.plantCookie(sessionCookie, pwdSession)
		if p := old.get(t, "/login/totp"); p.url.Path != "/login" || p.status != 200 {
			t.Errorf("the old session still works: at %s with %d", p.url, p.status)
		}
	})
	t.Run("110 tokens carry amr pwd otp and auth_time", func(t *testing.T) {
		signedIn := f.srv.now()
		q, verifier := b.codeFlow(t, cfg, "", "", "")
		tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.verifier(t, f.srv.APIAudience()).Verify(context.Background(), tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(c.AMR, " ") != "pwd otp" || c.AuthTime < signedIn.Unix()-5 || c.AuthTime > signedIn.Unix() {
			t.Errorf("amr %v auth_time %d, signed in at %d", c.AMR, c.AuthTime, signedIn.Unix())
		}
	})
	t.Run("105 the same code in a second browser is refused", func(t *testing.T) {
		b2 := f.browser(t)
		p := b2.submit(t, b2.get(t, "/login"), "/login", url.Values{"username": {"tia"}, "password": {authzPassword}})
		p = b2.submit(t, p, "/login/totp", url.Values{"code": {code}})
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "already used") {
			t.Errorf("replayed code: %d", p.status)
		}
		t.Run("106 five wrong codes lock the step for minutes", func(t *testing.T) {
			for i := range 4 { // the replay was the first failure
				if p := b2.submit(t, p, "/login/totp", url.Values{"code": {wrongTOTP(t, secret, f.srv.now())}}); p.status != http.StatusUnauthorized {
					t.Fatalf("wrong code %d: %d", i+2, p.status)
				}
			}
			clk.advance(30 * time.Second) // a step not used yet
			locked := b2.submit(t, p, "/login/totp", url.Values{"code": {f.totpCode(t, secret)}})
			if locked.status != http.StatusTooManyRequests || !strings.Contains(locked.body, "Try again in 5 minutes") {
				t.Errorf("the right code after five wrong ones: %d %.300s", locked.status, locked.body)
			}
			clk.advance(4 * time.Minute)
			if p := b2.submit(t, p, "/login/totp", url.Values{"code": {f.totpCode(t, secret)}}); p.status != http.StatusTooManyRequests {
				t.Errorf("after 4.5 minutes: %d", p.status)
			}
			// The lock is the user's: the complete session is not touched.
			if q, _ := b.codeFlow(t, cfg, "", "", ""); q.Get("code") == "" {
				t.Error("the signed-in browser lost its session")
			}
			clk.advance(time.Minute)
			if p := b2.noRedirects().submit(t, p, "/login/totp", url.Values{"code": {f.totpCode(t, secret)}}); p.status != http.StatusSeeOther {
				t.Errorf("after 5.5 minutes: %d", p.status)
			}
		})
	})
	t.Run("106 parallel wrong codes: five checked at most", func(t *testing.T) {
		b3 := f.browser(t)
		p := b3.submit(t, b3.get(t, "/login"), "/login", url.Values{"username": {"tia"}, "password": {authzPassword}})
		form := p.hidden()
		form.Set("code", wrongTOTP(t, secret, f.srv.now()))
		body, cookie := form.Encode(), b3.jarCookie(sessionCookie)
		statuses := atOnce(8, func(i int) int {
			req, _ := http.NewRequest("POST", f.http.URL+"/login/totp", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Error(err)
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		})
		if want := []int{401, 401, 401, 401, 401, 429, 429, 429}; !slices.Equal(statuses, want) {
			t.Errorf("eight parallel wrong codes: %v, want five checked (401) and three refused (429)", statuses)
		}
	})
	if session == "" || b.jarCookie(sessionCookie) != session {
		t.Errorf("the browser's session cookie %q, want %q", b.jarCookie(sessionCookie), session)
	}
}

// TestItem109HostCookieOnHTTPS: with an https issuer the cookies are
// __Host- and Secure (AUTH.md 109).
func TestItem109HostCookieOnHTTPS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(ctx, Config{Issuer: "https://auth.example", Logger: slog.New(slog.DiscardHandler)}, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.cookieName(sessionCookie); got != "__Host-tg_session" {
		t.Errorf("session cookie name %q", got)
	}
	rec := httptest.NewRecorder()
	s.setCookie(rec, sessionCookie, "v", time.Hour)
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://auth.example/login", nil))
	for _, name := range []string{"__Host-tg_session", "__Host-tg_csrf"} {
		c := setCookieNamed(t, rec.Header(), name)
		if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: %v", name, c)
		}
	}
	// A cookie without the prefix is not read as the session.
	req := httptest.NewRequest("GET", "https://auth.example/login", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "x"})
	if s.session(req) != nil {
		t.Error("tg_session read on an https issuer")
	}
}

// TestItem110PromptAndAuthTime: prompt=none and prompt=login, and the
// auth_time and amr of tokens (AUTH.md 110, 19).
func TestItem110PromptAndAuthTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.fakeClock()
	f.user(t, "ann", authzPassword, false)
	cfg := f.oauthConfig("tracks:read")
	ctx := context.Background()
	v := f.verifier(t, f.srv.APIAudience())
	claims := func(b *browser, opts ...oauth2.AuthCodeOption) *token.Claims {
		t.Helper()
		q, verifier := b.codeFlow(t, cfg, "ann", authzPassword, "", opts...)
		tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	b := f.browser(t)
	t.Run("prompt=none without a session: login_required", func(t *testing.T) {
		u := cfg.AuthCodeURL("st-n", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none"))
		loc := b.noRedirects().get(t, u).location(t)
		q := loc.Query()
		if !strings.HasPrefix(loc.String(), loopbackRedirect+"?") || q.Get("error") != "login_required" || q.Get("state") != "st-n" ||
			q.Get("iss") != f.http.URL || q.Has("code") {
			t.Errorf("redirected to %s", loc)
		}
	})
	first := f.srv.now().Unix()
	c1 := claims(b)
	t.Run("110 amr pwd and auth_time", func(t *testing.T) {
		if strings.Join(c1.AMR, " ") != "pwd" || c1.AuthTime < first-1 || c1.AuthTime > first+5 {
			t.Errorf("amr %v auth_time %d, signed in at %d", c1.AMR, c1.AuthTime, first)
		}
	})
	clk.advance(10 * time.Minute)
	t.Run("110 a later code of the session keeps auth_time", func(t *testing.T) {
		if c := claims(b, oauth2.SetAuthURLParam("prompt", "none")); c.AuthTime != c1.AuthTime {
			t.Errorf("auth_time %d, want %d", c.AuthTime, c1.AuthTime)
		}
	})
	t.Run("prompt=login forces the form again", func(t *testing.T) {
		u := cfg.AuthCodeURL("st-l", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login"))
		p := b.get(t, u)
		if p.status != 200 || !strings.Contains(p.body, `action="/login"`) {
			t.Fatalf("prompt=login with a session: %d at %s", p.status, p.url)
		}
		if c := claims(b, oauth2.SetAuthURLParam("prompt", "login")); c.AuthTime < c1.AuthTime+600 {
			t.Errorf("auth_time %d after signing in again, first %d", c.AuthTime, c1.AuthTime)
		}
	})
}

// deviceCSRF returns the anti-CSRF token of b's session, from the device
// confirmation page.
func (b *browser) deviceCSRF(t *testing.T) string {
	t.Helper()
	_, _, d := b.f.post(t, "/device_authorization", url.Values{"client_id": {"trackctl"}, "scope": {"tracks:read"}}, "", "")
	uc, _ := d["user_code"].(string)
	csrf := b.get(t, "/device?"+url.Values{"user_code": {uc}}.Encode()).hidden().Get("csrf")
	if csrf == "" {
		t.Fatal("no csrf on the device confirmation page")
	}
	return csrf
}

// TestItems50and114Logout: POST /logout needs the session's CSRF token, ends
// the session and revokes the user's grants (AUTH.md 50, 114 at the AS).
func TestItems50and114Logout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ann, _ := f.signedInAs(t, "ann", false)
	introspect := f.rsLookup(t)
	cfg := f.oauthConfig("tracks:read")
	q, verifier := ann.codeFlow(t, cfg, "", "", "")
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	csrf := ann.deviceCSRF(t)
	m := ann.noRedirects()

	t.Run("114 without or with a wrong csrf: 403, nothing ends", func(t *testing.T) {
		other := f.browser(t) // ann in another browser: another session
		other.signIn(t, other.get(t, "/login"), "ann", authzPassword, "")
		for _, form := range []url.Values{{}, {"csrf": {""}}, {"csrf": {"wrong"}}, {"csrf": {other.deviceCSRF(t)}}} {
			if p := m.post(t, "/logout", form); p.status != http.StatusForbidden {
				t.Errorf("csrf %q: %d", form.Get("csrf"), p.status)
			}
		}
		if introspect(tok.RefreshToken)["active"] != true || introspect(tok.AccessToken)["active"] != true {
			t.Error("tokens revoked by a refused sign-out")
		}
		if q, _ := ann.codeFlow(t, cfg, "", "", ""); q.Get("code") == "" {
			t.Error("session ended by a refused sign-out")
		}
	})
	t.Run("50 114 with the csrf: 303, session ended, grants revoked", func(t *testing.T) {
		// 18: a post_logout_redirect_uri is not followed.
		p := m.post(t, "/logout", url.Values{"csrf": {csrf}, "return_to": {"/login"}, "post_logout_redirect_uri": {"https://evil.example/"}})
		if p.status != http.StatusSeeOther || p.location(t).String() != "/login" {
			t.Errorf("%d to %q", p.status, p.header.Get("Location"))
		}
		if c := setCookieNamed(t, p.header, sessionCookie); c == nil || c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("session cookie not cleared: %v", c)
		}
		if m := introspect(tok.RefreshToken); !isInactive(m) {
			t.Errorf("refresh token after sign-out: %v", m)
		}
		if m := introspect(tok.AccessToken); !isInactive(m) {
			t.Errorf("access token after sign-out: %v", m)
		}
		status, _, resp := f.post(t, "/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"trackctl"}, "refresh_token": {tok.RefreshToken}}, "", "")
		if status != 400 || resp["error"] != "invalid_grant" {
			t.Errorf("refresh after sign-out: %d %v", status, resp)
		}
		if loc := m.get(t, authorizePath(authParams(s256(oauth2.GenerateVerifier())))).location(t); loc.Path != "/login" {
			t.Errorf("/authorize after sign-out: %s", loc)
		}
	})
}

// atOnce runs n attempts released together and returns their statuses,
// sorted.
func atOnce(n int, attempt func(i int) int) []int {
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range statuses {
		wg.Go(func() {
			<-start
			statuses[i] = attempt(i)
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(statuses)
	return statuses
}
