package cloud_test

import (
	"context"
	"crypto/rand"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"trackgate/cloud"
	"trackgate/cloud/auth"
)

// Scopes of people's access tokens in the tests.
var (
	// fullScopes may do everything the track API offers.
	fullScopes = []string{"openid", "tracks:read", "tracks:write", "devices:read", "devices:write"}
	// readScopes may only read: writes answer 403.
	readScopes = []string{"openid", "tracks:read", "devices:read"}
)

// trackctlRedirect is trackctl's loopback redirect. Nothing listens on it:
// the flow stops at the redirect and reads the code from its Location.
const trackctlRedirect = "http://127.0.0.1:49152/callback"

// openAuth opens a second handle on the running cloud's data directory (its
// SQL store and signing keys), to add users and devices as the `cloud user`
// and `cloud device` commands do. It is closed when the test ends.
func (s *stack) openAuth(t testing.TB) *auth.Server {
	t.Helper()
	a, st, err := cloud.OpenAuth(context.Background(), s.cfg.Data, s.cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return a
}

// hiddenField is a hidden input of the sign-in form.
var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// userToken gets an access token for user from the running cloud the way
// trackctl does: the authorization code flow with PKCE (golang.org/x/oauth2)
// for the public client "trackctl", signing in through the HTML form at
// /login with a cookie jar, then the code exchanged at /token. Without
// scopes it asks for fullScopes.
func (s *stack) userToken(t testing.TB, user, password string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = fullScopes
	}
	base, err := url.Parse(s.httpURL)
	if err != nil {
		t.Fatal(err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The browser follows redirects on the cloud and stops at the one that
	// leaves it: the redirect to trackctl's loopback callback.
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != base.Host {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("more than 10 redirects")
		}
		return nil
	}}
	cfg := &oauth2.Config{
		ClientID:    "trackctl",
		Endpoint:    oauth2.Endpoint{AuthURL: s.httpURL + "/authorize", TokenURL: s.httpURL + "/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: trackctlRedirect,
		Scopes:      scopes,
	}
	verifier, state := oauth2.GenerateVerifier(), rand.Text()

	// /authorize sends the browser to the sign-in form.
	resp, body := browse(t, browser, http.MethodGet, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/login"`) {
		t.Fatalf("authorize: want the sign-in form, got %s at %s: %.300s", resp.Status, resp.Request.URL, body)
	}
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	if form.Get("csrf") == "" || form.Get("return_to") == "" {
		t.Fatalf("the sign-in form has no csrf or return_to: %.500s", body)
	}
	form.Set("username", user)
	form.Set("password", password)

	// Signing in returns to /authorize, which redirects to the callback.
	resp, body = browse(t, browser, http.MethodPost, s.httpURL+"/login", form)
	if resp.StatusCode/100 != 3 {
		t.Fatalf("sign-in as %s: want a redirect to the callback, got %s at %s: %.300s", user, resp.Status, resp.Request.URL, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != trackctlRedirect {
		t.Fatalf("redirected to %s, want %s", loc, trackctlRedirect)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		t.Fatalf("authorization refused: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != state || q.Get("iss") != s.cfg.Auth.Issuer || q.Get("code") == "" {
		t.Fatalf("callback %v: want state %q, iss %q and a code", q, state, s.cfg.Auth.Issuer)
	}

	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 30 * time.Second})
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token exchange: %v", err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token exchange gave %+v", tok)
	}
	if got, _ := tok.Extra("scope").(string); got != "" {
		granted, asked := strings.Fields(got), slices.Clone(scopes)
		slices.Sort(granted)
		slices.Sort(asked)
		if !slices.Equal(granted, asked) {
			t.Fatalf("granted scope %q, asked for %q", got, strings.Join(scopes, " "))
		}
	}
	return tok.AccessToken
}

// browse sends a request (a form when form is not nil) and reads the answer.
func browse(t testing.TB, c *http.Client, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
