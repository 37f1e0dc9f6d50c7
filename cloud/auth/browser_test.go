package auth

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"trackgate/internal/token"
)

// browser is a client with a cookie jar that follows redirects on the
// server and stops at one that leaves it (to a client's redirect URI).
type browser struct {
	f *fixture
	c *http.Client
}

func (f *fixture) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(f.http.URL, "http://")
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host {
			return http.ErrUseLastResponse
		}
		return nil
	}}}
}

// page is a response read whole.
type page struct {
	status int
	header http.Header
	url    *url.URL // where the browser ended up
	body   string
}

func (b *browser) do(t *testing.T, req *http.Request) page {
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, url: resp.Request.URL, body: string(body)}
}

// get fetches a URL (absolute, or a path on the server).
func (b *browser) get(t *testing.T, u string) page {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.f.http.URL + u
	}
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(t, req)
}

// post submits a form to a path on the server.
func (b *browser) post(t *testing.T, path string, form url.Values) page {
	t.Helper()
	req, _ := http.NewRequest("POST", b.f.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// hidden returns the hidden fields of the page's form.
func (p page) hidden() url.Values {
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(p.body, -1) {
		v.Set(m[1], htmlUnescape(m[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&#43;", "+").Replace(s)
}

// location is the redirect a page answered with.
func (p page) location(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil || p.status/100 != 3 {
		t.Fatalf("expected a redirect, got %d %q (at %s): %.300s", p.status, p.header.Get("Location"), p.url, p.body)
	}
	return u
}

// submit fills the login or TOTP form of p with fields and posts it.
func (b *browser) submit(t *testing.T, p page, path string, fields url.Values) page {
	t.Helper()
	form := p.hidden()
	for k, v := range fields {
		form[k] = v
	}
	return b.post(t, path, form)
}

// signIn signs the browser in from page p (the sign-in form), answering
// the TOTP step with the code of secret when the user has one.
func (b *browser) signIn(t *testing.T, p page, user, password, secret string) page {
	t.Helper()
	if !strings.Contains(p.body, `action="/login"`) {
		t.Fatalf("not the sign-in page: %d at %s: %.300s", p.status, p.url, p.body)
	}
	p = b.submit(t, p, "/login", url.Values{"username": {user}, "password": {password}})
	if secret == "" {
		return p
	}
	code, err := totp.GenerateCode(secret, b.f.srv.now())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.body, `action="/login/totp"`) {
		t.Fatalf("not the TOTP page: %d at %s: %.300s", p.status, p.url, p.body)
	}
	return b.submit(t, p, "/login/totp", url.Values{"code": {code}})
}

// user adds a user; with totp set it enrols TOTP and returns the secret.
func (f *fixture) user(t *testing.T, name, password string, withTOTP bool) string {
	t.Helper()
	ctx := context.Background()
	if err := f.srv.AddUser(ctx, name, password); err != nil {
		t.Fatal(err)
	}
	if !withTOTP {
		return ""
	}
	uri, err := f.srv.EnrolTOTP(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	return u.Query().Get("secret")
}

// oauthConfig is trackctl's configuration: a public client with a loopback
// redirect on a port of its choosing.
func (f *fixture) oauthConfig(scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    "trackctl",
		Endpoint:    oauth2.Endpoint{AuthURL: f.http.URL + "/authorize", TokenURL: f.http.URL + "/token", DeviceAuthURL: f.http.URL + "/device_authorization", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://127.0.0.1:49152/callback",
		Scopes:      scopes,
	}
}

// codeFlow runs the authorization code flow with PKCE in browser b (signing
// in if need be) and returns the callback's query and the verifier.
func (b *browser) codeFlow(t *testing.T, cfg *oauth2.Config, user, password, secret string, opts ...oauth2.AuthCodeOption) (url.Values, string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	p := b.get(t, cfg.AuthCodeURL("st-1", append(opts, oauth2.S256ChallengeOption(verifier))...))
	if p.status == http.StatusOK {
		p = b.signIn(t, p, user, password, secret)
	}
	loc := p.location(t)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != cfg.RedirectURL {
		t.Fatalf("redirected to %s, want %s", loc, cfg.RedirectURL)
	}
	return loc.Query(), verifier
}

// TestCodeFlowWithOAuth2AndOIDC is the happy path: x/oauth2 as the client,
// the sign-in form with TOTP driven through a cookie jar, go-oidc verifying
// the ID token through discovery, then a refresh (AUTH.md items 4, 21, 54,
// 55, 63, 104, 110).
func TestCodeFlowWithOAuth2AndOIDC(t *testing.T) {
	f := newFixture(t)
	secret := f.user(t, "ann", "correct horse battery", true)
	b := f.browser(t)
	cfg := f.oauthConfig("openid", "tracks:read")
	q, verifier := b.codeFlow(t, cfg, "ann", "correct horse battery", secret, oauth2.SetAuthURLParam("nonce", "n-42"))
	if q.Get("state") != "st-1" || q.Get("iss") != f.http.URL {
		t.Errorf("4 21: callback %v", q)
	}
	ctx := context.Background()
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || time.Until(tok.Expiry) > 15*time.Minute || time.Until(tok.Expiry) < 14*time.Minute {
		t.Errorf("63: token %+v", tok)
	}
	c, err := f.verifier(t, f.srv.APIAudience()).Verify(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "usr:ann" || c.ClientID != "trackctl" || c.Scope != "openid tracks:read" ||
		strings.Join(c.AMR, " ") != "pwd otp" || c.AuthTime == 0 {
		t.Errorf("54 110: claims %+v", c)
	}

	provider, err := oidc.NewProvider(ctx, f.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "trackctl", SupportedSigningAlgs: []string{oidc.EdDSA}}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != "n-42" || idt.Subject != "usr:ann" {
		t.Errorf("ID token %+v", idt)
	}
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Subject != "usr:ann" {
		t.Errorf("userinfo %+v, %v", info, err)
	}
	// 69: the ID token is not an access token.
	if _, err := f.verifier(t, f.srv.APIAudience()).Verify(ctx, raw); err == nil {
		t.Error("69: the ID token passed as an access token")
	}

	// A refresh through x/oauth2 gives new tokens.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	next, err := cfg.TokenSource(ctx, &expired).Token()
	if err != nil {
		t.Fatal(err)
	}
	if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken || next.RefreshToken == "" {
		t.Error("44: refresh gave no new tokens")
	}
}

// TestItem50CredentialChangesRevoke: a new password or a new TOTP secret
// revokes the user's refresh tokens and their access tokens.
func TestItem50CredentialChangesRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "ann", "correct horse battery", false)
	cfg := f.oauthConfig("tracks:read")
	for _, change := range []struct {
		name string
		do   func() error
	}{
		{"password change", func() error { return f.srv.SetPassword(ctx, "ann", "correct horse battery") }},
		{"first TOTP enrolment keeps grants", nil},
		{"TOTP reset", func() error { _, err := f.srv.EnrolTOTP(ctx, "ann"); return err }},
	} {
		t.Run("50 "+change.name, func(t *testing.T) {
			var secret string
			if u, _ := f.st.UserByName(ctx, "ann"); u.TOTPSecret != "" {
				uri, err := f.srv.EnrolTOTP(ctx, "ann")
				if err != nil {
					t.Fatal(err)
				}
				pu, _ := url.Parse(uri)
				secret = pu.Query().Get("secret")
			}
			f.srv.now = func() time.Time { return time.Now().Add(time.Duration(len(change.name)) * time.Minute) }
			q, verifier := f.browser(t).codeFlow(t, cfg, "ann", "correct horse battery", secret)
			tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			do := change.do
			if do == nil {
				do = func() error { _, err := f.srv.EnrolTOTP(ctx, "ann"); return err }
			}
			if err := do(); err != nil {
				t.Fatal(err)
			}
			expired := *tok
			expired.Expiry = time.Now().Add(-time.Minute)
			_, err = cfg.TokenSource(ctx, &expired).Token()
			revoked, _ := f.st.Revoked(ctx, unverifiedClaims(t, tok.AccessToken).ID)
			if keep := change.do == nil; keep != (err == nil) || keep == revoked {
				t.Errorf("refresh after %s: %v; access token revoked %v", change.name, err, revoked)
			}
		})
	}
}

// unverifiedClaims reads a token's claims without checking it (to find the
// jti of a token that no longer verifies).
func unverifiedClaims(t *testing.T, raw string) *token.Claims {
	t.Helper()
	c := &token.Claims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLogoutPage: GET /logout shows a sign-out form carrying the session's
// CSRF token; posting it signs out (AUTH.md items 50, 114 at the AS).
func TestLogoutPage(t *testing.T) {
	f := newFixture(t)
	f.user(t, "ann", "correct horse battery", false)
	b := f.browser(t)
	b.signIn(t, b.get(t, "/login"), "ann", "correct horse battery", "")
	p := b.get(t, "/logout?return_to=/login")
	if p.status != 200 || !strings.Contains(p.body, `action="/logout"`) || p.hidden().Get("csrf") == "" {
		t.Fatalf("sign-out page: %d %.300s", p.status, p.body)
	}
	p = b.submit(t, p, "/logout", nil)
	if !strings.Contains(p.body, `action="/login"`) {
		t.Fatalf("after sign-out: %d at %s", p.status, p.url)
	}
	if p := b.get(t, "/logout"); !strings.Contains(p.body, "You are signed out") {
		t.Errorf("signed-out page: %.300s", p.body)
	}
}
