package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"trackgate/cloud/store"
)

// userPassword is the password of the users these tests add.
const userPassword = "correct horse battery"

// srvClock is the server's clock for expiries moved by tests: the real time
// plus an offset (the store stamps rotations with the real time).
type srvClock struct{ off atomic.Int64 }

// moveClock makes the server's expiry clock movable. Call it before any request.
func (f *fixture) moveClock() *srvClock {
	c := &srvClock{}
	f.srv.now = func() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }
	return c
}

func (c *srvClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// trackctlTokens runs trackctl's code flow in b, signing in as user (password
// only) when b has no session, and redeems the code through x/oauth2.
func (b *browser) trackctlTokens(t *testing.T, user string, scopes ...string) (*oauth2.Config, *oauth2.Token) {
	t.Helper()
	cfg := b.f.oauthConfig(scopes...)
	q, verifier := b.codeFlow(t, cfg, user, userPassword, "")
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token from the code flow")
	}
	return cfg, tok
}

// refreshAs posts a refresh_token grant for public client clientID (in the
// body) to /token, with extra parameters.
func (f *fixture) refreshAs(t *testing.T, clientID, rt string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {GrantRefreshToken}, "client_id": {clientID}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	status, _, m := f.post(t, "/token", form, "", "")
	return status, m
}

// refreshOK refreshes rt as trackctl and returns the response.
func (f *fixture) refreshOK(t *testing.T, rt string, extra url.Values) map[string]any {
	t.Helper()
	status, m := f.refreshAs(t, "trackctl", rt, extra)
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, m)
	}
	return m
}

// wantOAuthError checks an OAuth error response.
func wantOAuthError(t *testing.T, status int, m map[string]any, wantStatus int, code string) {
	t.Helper()
	if status != wantStatus || m["error"] != code {
		t.Errorf("got %d %v, want %d %s", status, m, wantStatus, code)
	}
	if _, ok := m["refresh_token"]; ok {
		t.Errorf("error response carries a refresh token: %v", m)
	}
}

var resourceServers atomic.Int64

// resourceServer registers a resource server (a service client with the
// default scopes, introspect among them) and returns its lookup.
func (f *fixture) resourceServer(t *testing.T) func(t *testing.T, tok string) map[string]any {
	t.Helper()
	id, secret := f.service(t, fmt.Sprintf("rs-%d", resourceServers.Add(1)))
	return func(t *testing.T, tok string) map[string]any {
		t.Helper()
		status, _, m := f.post(t, "/introspect", url.Values{"token": {tok}}, id, secret)
		if status != http.StatusOK {
			t.Fatalf("introspect: %d %v", status, m)
		}
		return m
	}
}

// exactlyInactive reports whether an introspection answer is exactly {"active":false}.
func exactlyInactive(m map[string]any) bool { return len(m) == 1 && m["active"] == false }

func jsonStr(m map[string]any, k string) string { s, _ := m[k].(string); return s }

var refreshTokenFormat = regexp.MustCompile(`^tgr_[A-Za-z0-9_-]{43}$`)

// TestRefreshTokens covers rotation and reuse detection of refresh tokens
// (AUTH.md F 44, 45, 47, 48, 51, 53) and the /refresh alias.
func TestRefreshTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.user(t, "ann", userPassword, false)
	b := f.browser(t)
	ctx := context.Background()
	apiVerifier := f.verifier(t, f.srv.APIAudience())
	var issued []string // every refresh token seen, for item 51
	seen := func(m map[string]any) string {
		rt := jsonStr(m, "refresh_token")
		issued = append(issued, rt)
		return rt
	}

	t.Run("44 every refresh returns a new refresh token and the old one stops working", func(t *testing.T) {
		introspect := f.resourceServer(t)
		cfg, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read")
		issued = append(issued, tok.RefreshToken)
		// x/oauth2 refreshes an expired token and hands back the rotated one.
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		next, err := cfg.TokenSource(ctx, &expired).Token()
		if err != nil {
			t.Fatal(err)
		}
		if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
			t.Fatalf("x/oauth2 refresh: %+v", next)
		}
		issued = append(issued, next.RefreshToken)
		// Raw: a chain of rotations, every one new.
		chain := []string{tok.RefreshToken, next.RefreshToken}
		for range 3 {
			status, h, m := f.post(t, "/token", url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"trackctl"},
				"refresh_token": {chain[len(chain)-1]}}, "", "")
			if status != 200 || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
				t.Fatalf("6: refresh %d %v %v", status, h, m)
			}
			rt := seen(m)
			for _, old := range chain {
				if rt == old {
					t.Fatalf("refresh token %s issued twice", rt)
				}
			}
			if m["token_type"] != "Bearer" || m["access_token"] == nil || m["expires_in"] == nil || m["id_token"] == nil ||
				m["scope"] != "openid tracks:read" {
				t.Errorf("response %v", m)
			}
			chain = append(chain, rt)
		}
		// Every previous token is dead; the last one is the live one.
		for _, old := range chain[:len(chain)-1] {
			if m := introspect(t, old); !exactlyInactive(m) {
				t.Errorf("78: rotated token introspects as %v", m)
			}
		}
		if m := introspect(t, chain[len(chain)-1]); m["active"] != true {
			t.Errorf("current token introspects as %v", m)
		}
		status, m := f.refreshAs(t, "trackctl", chain[1], nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
	})

	// Item 45 with every way of presenting the rotated token.
	for _, tc := range []struct {
		name  string
		path  string
		extra url.Values
	}{
		{"45 reuse revokes the family", "/token", nil},
		{"45 reuse at /refresh revokes the family", "/refresh", nil},
		{"45 reuse asking a narrower scope revokes the family", "/token", url.Values{"scope": {"tracks:read"}}},
		{"45 reuse asking a wider scope revokes the family", "/token", url.Values{"scope": {"devices:write"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			introspect := f.resourceServer(t)
			_, sibling := b.trackctlTokens(t, "ann", "openid", "tracks:read") // another grant of the same user
			_, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read")
			r1 := f.refreshOK(t, tok.RefreshToken, nil)
			form := url.Values{"client_id": {"trackctl"}, "refresh_token": {tok.RefreshToken}}
			if tc.path == "/token" {
				form.Set("grant_type", GrantRefreshToken)
			}
			for k, v := range tc.extra {
				form[k] = v
			}
			status, _, m := f.post(t, tc.path, form, "", "")
			wantOAuthError(t, status, m, 400, "invalid_grant")
			for name, tok := range map[string]string{"current refresh token": seen(r1), "current access token": jsonStr(r1, "access_token"),
				"first access token": tok.AccessToken} {
				if m := introspect(t, tok); !exactlyInactive(m) {
					t.Errorf("%s after reuse: %v", name, m)
				}
			}
			if _, err := apiVerifier.Verify(ctx, jsonStr(r1, "access_token")); err == nil {
				t.Error("the current access token still verifies after reuse")
			}
			status, m = f.refreshAs(t, "trackctl", jsonStr(r1, "refresh_token"), nil)
			wantOAuthError(t, status, m, 400, "invalid_grant")
			if m := introspect(t, sibling.RefreshToken); m["active"] != true {
				t.Errorf("another grant of the user revoked too: %v", m)
			}
		})
	}

	t.Run("47 refresh by another client", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		websiteID, websiteSecret := f.srv.Website()
		svc, svcSecret := f.service(t, "svc-47")
		for _, tc := range []struct {
			name       string
			form       url.Values
			user, pass string
			status     int
			err        string
		}{
			{"47 public phone app, client_id in the body", url.Values{"client_id": {"phone"}}, "", "", 400, "invalid_grant"},
			{"47 public gateway", url.Values{"client_id": {"gateway"}}, "", "", 400, "invalid_grant"},
			{"47 confidential website authenticated", nil, websiteID, websiteSecret, 400, "invalid_grant"},
			{"47 confidential website without its secret", url.Values{"client_id": {websiteID}}, "", "", 401, "invalid_client"},
			{"47 confidential website with a wrong secret", nil, websiteID, "tgs_wrong", 401, "invalid_client"},
			{"37 service client without the refresh grant", nil, svc, svcSecret, 400, "unauthorized_client"},
			{"47 unknown client", url.Values{"client_id": {"nobody"}}, "", "", 401, "invalid_client"},
			{"47 no client at all", url.Values{}, "", "", 401, "invalid_client"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tok.RefreshToken}}
				for k, v := range tc.form {
					form[k] = v
				}
				status, _, m := f.post(t, "/token", form, tc.user, tc.pass)
				wantOAuthError(t, status, m, tc.status, tc.err)
			})
		}
		// None of it spent the token: its own client still refreshes with it.
		seen(f.refreshOK(t, tok.RefreshToken, nil))
	})

	t.Run("48 scopes at refresh", func(t *testing.T) {
		introspect := f.resourceServer(t)
		_, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read", "devices:read")
		granted := "devices:read openid tracks:read"
		rt := tok.RefreshToken
		for _, tc := range []struct {
			name, scope string
			err         string // "" for success
			want        string // the scope of the new tokens
			idToken     bool
		}{
			{"48 wider than granted", "tracks:read devices:write", "invalid_scope", "", false},
			{"48 unknown scope", "admin", "invalid_scope", "", false},
			{"48 a broker scope", "device", "invalid_scope", "", false},
			{"48 introspect is never granted", "introspect", "invalid_scope", "", false},
			{"48 narrower is honoured", "tracks:read", "", "tracks:read", false},
			{"48 narrower again, in another order", "tracks:read openid", "", "openid tracks:read", true},
			{"48 the full grant back after narrowing", "openid devices:read tracks:read", "", granted, true},
			{"48 no scope is the grant's", "", "", granted, true},
			{"48 an empty scope is the grant's", "-", "", granted, true},
			{"48 repeated scope once", "tracks:read tracks:read", "", "tracks:read", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var extra url.Values
				switch tc.scope {
				case "":
				case "-":
					extra = url.Values{"scope": {""}}
				default:
					extra = url.Values{"scope": {tc.scope}}
				}
				status, m := f.refreshAs(t, "trackctl", rt, extra)
				if tc.err != "" {
					wantOAuthError(t, status, m, 400, tc.err)
					return // the token is not spent: the next case uses it
				}
				if status != 200 {
					t.Fatalf("%d %v", status, m)
				}
				rt = seen(m)
				if m["scope"] != tc.want {
					t.Errorf("response scope %q, want %q", m["scope"], tc.want)
				}
				c, err := apiVerifier.Verify(ctx, jsonStr(m, "access_token"))
				if err != nil {
					t.Fatal(err)
				}
				if c.Scope != tc.want {
					t.Errorf("token scope %q, want %q", c.Scope, tc.want)
				}
				if (m["id_token"] != nil) != tc.idToken {
					t.Errorf("id_token present %v, want %v", m["id_token"] != nil, tc.idToken)
				}
				// 53: the refresh token stays bound to the original grant.
				if in := introspect(t, rt); in["active"] != true || in["scope"] != granted || in["client_id"] != "trackctl" || in["sub"] != "usr:ann" {
					t.Errorf("53: new refresh token introspects as %v", in)
				}
			})
		}
	})

	t.Run("53 a refresh response is bound to the grant's client, user and audience", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		m := f.refreshOK(t, tok.RefreshToken, nil)
		seen(m)
		c, err := apiVerifier.Verify(ctx, jsonStr(m, "access_token"))
		if err != nil {
			t.Fatal(err)
		}
		if c.ClientID != "trackctl" || c.Subject != "usr:ann" || len(c.Audience) != 1 || c.Audience[0] != f.srv.APIAudience() ||
			c.Scope != "tracks:read" || strings.Join(c.AMR, " ") != "pwd" {
			t.Errorf("claims %+v", c)
		}
		// The phone app asking with the new token gets nothing either.
		status, m2 := f.refreshAs(t, "phone", jsonStr(m, "refresh_token"), nil)
		wantOAuthError(t, status, m2, 400, "invalid_grant")
	})

	t.Run("refresh alias", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		rt := tok.RefreshToken
		svc, svcSecret := f.service(t, "svc-alias")
		for _, tc := range []struct {
			name       string
			form       url.Values
			user, pass string
			status     int
			err        string
		}{
			{"POST /refresh without grant_type", url.Values{}, "", "", 200, ""},
			{"POST /refresh with grant_type refresh_token", url.Values{"grant_type": {GrantRefreshToken}}, "", "", 200, ""},
			{"5 POST /refresh with another grant_type", url.Values{"grant_type": {GrantClientCredentials}}, "", "", 400, "unsupported_grant_type"},
			{"5 POST /refresh with the password grant", url.Values{"grant_type": {"password"}}, "", "", 400, "unsupported_grant_type"},
			{"POST /refresh with the code grant", url.Values{"grant_type": {GrantAuthorizationCode}, "code": {"x"}}, "", "", 400, "unsupported_grant_type"},
			{"POST /refresh client_credentials by a service client", url.Values{"grant_type": {GrantClientCredentials}, "client_id": nil}, svc, svcSecret, 400, "unsupported_grant_type"},
			{"POST /refresh without refresh_token", url.Values{"refresh_token": nil}, "", "", 400, "invalid_request"},
			{"16 POST /refresh with refresh_token twice", url.Values{"refresh_token": {"a", "b"}}, "", "", 400, "invalid_request"},
			{"51 POST /refresh with an altered token", url.Values{"refresh_token": {"alter"}}, "", "", 400, "invalid_grant"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"client_id": {"trackctl"}, "refresh_token": {rt}}
				for k, v := range tc.form {
					if v == nil {
						delete(form, k)
					} else if k == "refresh_token" && v[0] == "alter" {
						form.Set(k, alterToken(rt))
					} else {
						form[k] = v
					}
				}
				status, h, m := f.post(t, "/refresh", form, tc.user, tc.pass)
				if tc.err != "" {
					wantOAuthError(t, status, m, tc.status, tc.err)
					return
				}
				if status != 200 || h.Get("Cache-Control") != "no-store" || m["scope"] != "tracks:read" {
					t.Fatalf("%d %v %v", status, h, m)
				}
				rt = seen(m)
			})
		}
	})

	t.Run("51 refresh tokens are opaque 256-bit random strings stored as hashes", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		issued = append(issued, tok.RefreshToken)
		for rt := tok.RefreshToken; len(issued) < 20; {
			rt = seen(f.refreshOK(t, rt, nil))
		}
		distinct := map[string]bool{}
		for _, rt := range issued {
			if !refreshTokenFormat.MatchString(rt) {
				t.Errorf("33: refresh token %q is not tgr_ and 43 base64url characters", rt)
				continue
			}
			if raw, err := base64.RawURLEncoding.DecodeString(rt[4:]); err != nil || len(raw) != 32 {
				t.Errorf("33: refresh token %q: %d random bytes, %v", rt, len(raw), err)
			}
			if distinct[rt] {
				t.Errorf("refresh token %s issued twice", rt)
			}
			distinct[rt] = true
		}
		assertHashedOnly(t, f.dir, issued)
	})
}

// alterToken changes the last character of a token.
func alterToken(tok string) string {
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	return tok[:len(tok)-1] + last
}

// assertHashedOnly checks that no raw refresh token (nor its random part)
// is in the database files in dir, while their hashes are.
func assertHashedOnly(t *testing.T, dir string, tokens []string) {
	t.Helper()
	db := readDBFiles(t, dir)
	hashes := 0
	for _, rt := range tokens {
		if bytes.Contains(db, []byte(rt[4:])) {
			t.Errorf("51: raw refresh token %s is in the database", rt)
		}
		if bytes.Contains(db, []byte(hashSecret(rt))) {
			hashes++
		}
	}
	if hashes == 0 {
		t.Error("no refresh token hash found in the database files: is this the right database?")
	}
}

// readDBFiles returns the bytes of the database files in dir (with the WAL).
func readDBFiles(t *testing.T, dir string) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "trackgate.db*"))
	var db []byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		db = append(db, b...)
	}
	if len(db) == 0 {
		t.Fatalf("no database files in %s", dir)
	}
	return db
}

// TestRefreshGraceWindow covers the grace window (AUTH.md 46, 53).
func TestRefreshGraceWindow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.srv.cfg.RefreshGrace = 5 * time.Second
	clk := f.moveClock()
	f.user(t, "ann", userPassword, false)
	b := f.browser(t)
	introspect := f.resourceServer(t)

	t.Run("46 the window is at most 10 s", func(t *testing.T) {
		for _, grace := range []time.Duration{-time.Second, MaxRefreshGrace + time.Second} {
			_, err := New(context.Background(), Config{Issuer: f.http.URL, RefreshGrace: grace, Logger: slog.New(slog.DiscardHandler)}, f.st, f.dir)
			if err == nil {
				t.Errorf("grace window %v accepted", grace)
			}
		}
		if MaxRefreshGrace > 10*time.Second {
			t.Errorf("MaxRefreshGrace %v", MaxRefreshGrace)
		}
	})

	var issued []string
	t.Run("46 reuse inside the window returns the same successor", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read")
		first := f.refreshOK(t, tok.RefreshToken, nil)
		clk.advance(4 * time.Second)
		again := f.refreshOK(t, tok.RefreshToken, nil)
		if again["refresh_token"] != first["refresh_token"] || again["access_token"] != first["access_token"] ||
			again["scope"] != first["scope"] || again["id_token"] != first["id_token"] {
			t.Errorf("retry inside the window: %v, want %v", again, first)
		}
		// 53: the phone app gets nothing of it, inside the window or not.
		status, m := f.refreshAs(t, "phone", tok.RefreshToken, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		// 48: nor does a wider scope.
		status, m = f.refreshAs(t, "trackctl", tok.RefreshToken, url.Values{"scope": {"devices:write"}})
		wantOAuthError(t, status, m, 400, "invalid_scope")
		if m := introspect(t, jsonStr(first, "refresh_token")); m["active"] != true {
			t.Errorf("the successor after retries: %v", m)
		}
		issued = append(issued, tok.RefreshToken, jsonStr(first, "refresh_token"))
	})

	t.Run("46 reuse after the window revokes the family", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		first := f.refreshOK(t, tok.RefreshToken, nil)
		issued = append(issued, tok.RefreshToken, jsonStr(first, "refresh_token"))
		clk.advance(6 * time.Second)
		status, m := f.refreshAs(t, "trackctl", tok.RefreshToken, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		for _, tk := range []string{jsonStr(first, "refresh_token"), jsonStr(first, "access_token"), tok.AccessToken} {
			if m := introspect(t, tk); !exactlyInactive(m) {
				t.Errorf("45: %.12s… after reuse outside the window: %v", tk, m)
			}
		}
		status, m = f.refreshAs(t, "trackctl", jsonStr(first, "refresh_token"), nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		// Presenting it yet again gives nothing either.
		status, m = f.refreshAs(t, "trackctl", tok.RefreshToken, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
	})

	t.Run("51 the kept successor is sealed", func(t *testing.T) {
		assertHashedOnly(t, f.dir, issued)
	})
}

// TestRefreshRace fires parallel refreshes of one token (AUTH.md 52).
func TestRefreshRace(t *testing.T) {
	t.Parallel()
	const n = 8
	for _, grace := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprintf("52 parallel refreshes with grace %v", grace), func(t *testing.T) {
			f := newFixture(t)
			f.srv.cfg.RefreshGrace = grace
			f.user(t, "ann", userPassword, false)
			_, tok := f.browser(t).trackctlTokens(t, "ann", "tracks:read")
			type result struct {
				status int
				body   map[string]any
				err    error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					form := url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"trackctl"}, "refresh_token": {tok.RefreshToken}}
					results[i].status, results[i].body, results[i].err = postFormAnon(f.http.URL+"/token", form)
				})
			}
			close(start)
			wg.Wait()
			var ok []map[string]any
			for _, r := range results {
				switch {
				case r.err != nil:
					t.Fatal(r.err)
				case r.status == 200:
					ok = append(ok, r.body)
				case r.status != 400 || r.body["error"] != "invalid_grant":
					t.Errorf("loser: %d %v", r.status, r.body)
				}
			}
			t.Logf("%d of %d refreshes succeeded", len(ok), n)
			if grace == 0 {
				if len(ok) > 1 {
					t.Fatalf("%d parallel refreshes of one token succeeded", len(ok))
				}
				if len(ok) == 1 {
					// The losers presented a rotated token: the family is revoked.
					status, m := f.refreshAs(t, "trackctl", jsonStr(ok[0], "refresh_token"), nil)
					wantOAuthError(t, status, m, 400, "invalid_grant")
				}
				return
			}
			if len(ok) == 0 {
				t.Fatal("no refresh succeeded")
			}
			for _, m := range ok {
				if m["refresh_token"] != ok[0]["refresh_token"] || m["access_token"] != ok[0]["access_token"] {
					t.Errorf("two successors inside the grace window: %v and %v", m["refresh_token"], ok[0]["refresh_token"])
				}
			}
			f.refreshOK(t, jsonStr(ok[0], "refresh_token"), nil)
		})
	}
}

// postFormAnon posts a form (no client authentication) and decodes the JSON
// answer; safe to call from any goroutine.
func postFormAnon(target string, form url.Values) (int, map[string]any, error) {
	resp, err := http.Post(target, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, m, nil
}

// TestRefreshExpiry moves the clock past the idle and absolute lifetimes
// of refresh tokens (AUTH.md 49, 78).
func TestRefreshExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.moveClock()
	f.user(t, "ann", userPassword, false)
	b := f.browser(t)
	introspect := f.resourceServer(t)
	const day = 24 * time.Hour

	t.Run("49 idle expiry after 30 days", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		m := introspect(t, tok.RefreshToken)
		exp, _ := m["exp"].(float64)
		iat, _ := m["iat"].(float64)
		if m["active"] != true || time.Duration(exp-iat)*time.Second != 30*day {
			t.Errorf("79: refresh token lives %v, want 30 days: %v", time.Duration(exp-iat)*time.Second, m)
		}
		clk.advance(29 * day)
		rt := jsonStr(f.refreshOK(t, tok.RefreshToken, nil), "refresh_token")
		clk.advance(30*day + time.Second)
		if m := introspect(t, rt); !exactlyInactive(m) {
			t.Errorf("78: idle-expired refresh token introspects as %v", m)
		}
		status, m := f.refreshAs(t, "trackctl", rt, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
	})

	t.Run("49 absolute lifetime of 90 days", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		rt := tok.RefreshToken
		for range 3 { // days 29, 58, 87: each within the idle time
			clk.advance(29 * day)
			rt = jsonStr(f.refreshOK(t, rt, nil), "refresh_token")
		}
		m := introspect(t, rt)
		exp, _ := m["exp"].(float64)
		if left := time.Unix(int64(exp), 0).Sub(f.srv.now()); m["active"] != true || left > 3*day+time.Minute {
			t.Errorf("refresh token on day 87 lives %v more, past the grant's 90 days: %v", left, m)
		}
		clk.advance(2 * day) // day 89
		rt = jsonStr(f.refreshOK(t, rt, nil), "refresh_token")
		clk.advance(day + time.Second) // day 90
		status, m := f.refreshAs(t, "trackctl", rt, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		if m := introspect(t, rt); !exactlyInactive(m) {
			t.Errorf("78: refresh token past the grant's lifetime introspects as %v", m)
		}
	})
}

// TestRefreshRevokedAtSignOut revokes a user's grants: all at once, and by
// signing out at the authorization server (AUTH.md 50).
func TestRefreshRevokedAtSignOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "ann", userPassword, false)
	f.user(t, "bob", userPassword, false)
	ann, bob := f.browser(t), f.browser(t)
	introspect := f.resourceServer(t)
	alive := func(t *testing.T, tok *oauth2.Token) bool {
		t.Helper()
		a, r := introspect(t, tok.AccessToken), introspect(t, tok.RefreshToken)
		if (a["active"] == true) != (r["active"] == true) {
			t.Errorf("access token active %v, refresh token active %v", a["active"], r["active"])
		}
		return r["active"] == true
	}

	t.Run("50 RevokeUserGrants revokes every grant of the user", func(t *testing.T) {
		_, a1 := ann.trackctlTokens(t, "ann", "tracks:read")
		_, a2 := ann.trackctlTokens(t, "ann", "openid")
		_, b1 := bob.trackctlTokens(t, "bob", "tracks:read")
		u, err := f.st.UserByName(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.st.RevokeUserGrants(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []*oauth2.Token{a1, a2} {
			if alive(t, tok) {
				t.Error("a grant of ann is alive")
			}
			status, m := f.refreshAs(t, "trackctl", tok.RefreshToken, nil)
			wantOAuthError(t, status, m, 400, "invalid_grant")
		}
		if !alive(t, b1) {
			t.Error("bob's grant revoked with ann's")
		}
	})

	t.Run("50 signing out revokes the user's grants", func(t *testing.T) {
		_, a1 := ann.trackctlTokens(t, "ann", "tracks:read")
		_, b1 := bob.trackctlTokens(t, "bob", "tracks:read")
		// Without the session's anti-CSRF token nothing happens.
		if p := ann.post(t, "/logout", url.Values{"csrf": {"forged"}}); p.status != http.StatusForbidden {
			t.Errorf("sign-out with a forged csrf: %d", p.status)
		}
		if !alive(t, a1) {
			t.Fatal("a forged sign-out revoked the grant")
		}
		p := ann.post(t, "/logout", url.Values{"csrf": {ann.sessionFormToken(t)}})
		if p.url.Path != "/" {
			t.Errorf("after sign-out at %s (%d)", p.url, p.status)
		}
		if alive(t, a1) {
			t.Error("ann's grant alive after she signed out")
		}
		status, m := f.refreshAs(t, "trackctl", a1.RefreshToken, nil)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		if !alive(t, b1) {
			t.Error("bob's grant revoked by ann's sign-out")
		}
		// The session is over: authorizing again asks for the password.
		if p := ann.get(t, f.oauthConfig("tracks:read").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))); !strings.Contains(p.body, `action="/login"`) {
			t.Errorf("authorize after sign-out: %d at %s", p.status, p.url)
		}
	})
}

// sessionFormToken returns the anti-CSRF token of b's sign-in session, as the
// signed-in pages embed it.
func (b *browser) sessionFormToken(t *testing.T) string {
	t.Helper()
	u, _ := url.Parse(b.f.http.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			ss, err := b.f.st.Session(context.Background(), hashSecret(c.Value))
			if err != nil {
				t.Fatal(err)
			}
			return ss.CSRF
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestRefreshIntrospectionAndRevocation covers introspection (AUTH.md 78,
// 79, 81) and revocation (82–86) of refresh tokens.
func TestRefreshIntrospectionAndRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.moveClock()
	f.user(t, "ann", userPassword, false)
	b := f.browser(t)
	introspect := f.resourceServer(t)

	t.Run("79 active refresh token", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read")
		m := introspect(t, tok.RefreshToken)
		for _, k := range []string{"scope", "client_id", "sub", "exp", "iat", "iss", "aud"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %s in %v", k, m)
			}
		}
		if m["active"] != true || m["scope"] != "openid tracks:read" || m["client_id"] != "trackctl" || m["sub"] != "usr:ann" ||
			m["iss"] != f.http.URL || m["token_type"] != "refresh_token" {
			t.Errorf("%v", m)
		}
		// Its audience is the authorization server: a resource server
		// checking aud never takes it for an access token.
		if aud := fmt.Sprint(m["aud"]); strings.Contains(aud, f.srv.APIAudience()) || strings.Contains(aud, AudienceMQTT) {
			t.Errorf("69: refresh token audience %v is a resource's", m["aud"])
		}
		now := float64(f.srv.now().Unix())
		iat, _ := m["iat"].(float64)
		exp, _ := m["exp"].(float64)
		if iat < now-5 || iat > now+1 || exp <= now {
			t.Errorf("iat %v exp %v, now %v", iat, exp, now)
		}
	})

	t.Run("78 rotated, revoked and altered refresh tokens are exactly active false", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		next := jsonStr(f.refreshOK(t, tok.RefreshToken, nil), "refresh_token")
		if m := introspect(t, tok.RefreshToken); !exactlyInactive(m) {
			t.Errorf("rotated: %v", m)
		}
		// Introspecting a rotated token is no reuse: the successor lives.
		if m := introspect(t, next); m["active"] != true {
			t.Errorf("successor after introspection of its predecessor: %v", m)
		}
		if m := introspect(t, alterToken(next)); !exactlyInactive(m) {
			t.Errorf("altered: %v", m)
		}
		if m := introspect(t, "tgr_"+newSecret()); !exactlyInactive(m) {
			t.Errorf("unknown: %v", m)
		}
		if status, _, _ := f.post(t, "/revoke", url.Values{"client_id": {"trackctl"}, "token": {next}}, "", ""); status != 200 {
			t.Fatalf("revoke: %d", status)
		}
		if m := introspect(t, next); !exactlyInactive(m) {
			t.Errorf("revoked: %v", m)
		}
	})

	t.Run("81 too many inactive lookups a minute give 429", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		rotated := tok.RefreshToken
		active := jsonStr(f.refreshOK(t, rotated, nil), "refresh_token")
		id, secret := f.service(t, "greedy-rs")
		lookup := func(tk string) (int, http.Header, map[string]any) {
			return f.post(t, "/introspect", url.Values{"token": {tk}}, id, secret)
		}
		for i := range 60 {
			tk := rotated
			if i%2 == 1 {
				tk = "tgr_" + newSecret()
			}
			if status, _, m := lookup(tk); status != 200 || !exactlyInactive(m) {
				t.Fatalf("lookup %d: %d %v", i+1, status, m)
			}
			if i == 30 { // active lookups do not count
				if status, _, m := lookup(active); status != 200 || m["active"] != true {
					t.Fatalf("active lookup: %d %v", status, m)
				}
			}
		}
		status, h, m := lookup(rotated)
		if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Errorf("61st inactive lookup: %d %v %v", status, h, m)
		}
		if status, _, _ := lookup(active); status != http.StatusTooManyRequests {
			t.Errorf("blocked caller, active token: %d", status)
		}
		if m := introspect(t, active); m["active"] != true {
			t.Errorf("another resource server is blocked too: %v", m)
		}
		clk.advance(61 * time.Second)
		if status, _, m := lookup(active); status != 200 || m["active"] != true {
			t.Errorf("a minute on: %d %v", status, m)
		}
	})

	revoke := func(t *testing.T, form url.Values, user, pass string) (int, map[string]any) {
		t.Helper()
		status, _, m := f.post(t, "/revoke", form, user, pass)
		return status, m
	}
	t.Run("82 83 84 86 revoking a refresh token revokes its grant", func(t *testing.T) {
		for _, hint := range []string{"", "refresh_token", "access_token", "no_such_type"} {
			t.Run("86 token_type_hint "+hint, func(t *testing.T) {
				_, tok := b.trackctlTokens(t, "ann", "openid", "tracks:read")
				next := f.refreshOK(t, tok.RefreshToken, nil)
				rt := jsonStr(next, "refresh_token")
				form := url.Values{"client_id": {"trackctl"}, "token": {rt}}
				if hint != "" {
					form.Set("token_type_hint", hint)
				}
				if status, m := revoke(t, form, "", ""); status != 200 {
					t.Fatalf("82: revoke %d %v", status, m)
				}
				for _, tk := range []string{rt, jsonStr(next, "access_token"), tok.AccessToken} {
					if m := introspect(t, tk); !exactlyInactive(m) {
						t.Errorf("84: %.12s… after revoking the refresh token: %v", tk, m)
					}
				}
				status, m := f.refreshAs(t, "trackctl", rt, nil)
				wantOAuthError(t, status, m, 400, "invalid_grant")
				if status, m := revoke(t, form, "", ""); status != 200 {
					t.Errorf("83: revoking again: %d %v", status, m)
				}
			})
		}
		if status, m := revoke(t, url.Values{"client_id": {"trackctl"}, "token": {"tgr_" + newSecret()}}, "", ""); status != 200 {
			t.Errorf("83: revoking an unknown refresh token: %d %v", status, m)
		}
	})

	t.Run("85 another client cannot revoke trackctl's refresh token", func(t *testing.T) {
		_, tok := b.trackctlTokens(t, "ann", "tracks:read")
		websiteID, websiteSecret := f.srv.Website()
		svc, svcSecret := f.service(t, "svc-85")
		for _, tc := range []struct {
			name       string
			form       url.Values
			user, pass string
			status     int
			err        string
		}{
			{"85 phone app, client_id in the body", url.Values{"client_id": {"phone"}}, "", "", 400, "unauthorized_client"},
			{"85 gateway, client_id in the body", url.Values{"client_id": {"gateway"}}, "", "", 400, "unauthorized_client"},
			{"85 website with its secret", nil, websiteID, websiteSecret, 400, "unauthorized_client"},
			{"85 service client with its secret", nil, svc, svcSecret, 400, "unauthorized_client"},
			{"85 website without its secret", url.Values{"client_id": {websiteID}}, "", "", 401, "invalid_client"},
			{"85 no client", nil, "", "", 401, "invalid_client"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}
				for k, v := range tc.form {
					form[k] = v
				}
				status, m := revoke(t, form, tc.user, tc.pass)
				wantOAuthError(t, status, m, tc.status, tc.err)
				if m := introspect(t, tok.RefreshToken); m["active"] != true {
					t.Fatalf("refresh token after %s tried to revoke it: %v", tc.name, m)
				}
				if m := introspect(t, tok.AccessToken); m["active"] != true {
					t.Fatalf("access token after %s tried to revoke the refresh token: %v", tc.name, m)
				}
			})
		}
		f.refreshOK(t, tok.RefreshToken, nil)
	})
}

// BenchmarkRefreshGrant measures refresh_token grants at POST /token over
// loopback HTTP, each rotating the token the previous one returned.
func BenchmarkRefreshGrant(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	u := &store.User{Name: "bench", PasswordHash: "unused"} // never signs in: no argon2id
	if err := f.st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	verifier, code, now := oauth2.GenerateVerifier(), "tgc_"+newSecret(), time.Now()
	err := f.st.CreateCode(ctx, &store.Code{Hash: hashSecret(code), RedirectURI: "http://127.0.0.1/callback", Challenge: s256(verifier),
		ExpiresAt: now.Add(codeTTL), Grant: &store.Grant{ID: newID(), ClientID: "trackctl", UserID: u.ID, Scopes: []string{ScopeTracksRead},
			AMR: []string{"pwd"}, AuthTime: now, ExpiresAt: now.Add(f.srv.cfg.RefreshMax)}})
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	post := func(form url.Values) map[string]any {
		resp, err := client.Post(f.http.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil {
			b.Fatalf("%d %s", resp.StatusCode, body)
		}
		return m
	}
	rt := jsonStr(post(url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {"trackctl"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1/callback"}, "code_verifier": {verifier}}), "refresh_token")
	for b.Loop() {
		rt = jsonStr(post(url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"trackctl"}, "refresh_token": {rt}}), "refresh_token")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// newBenchFixture is newFixture for a benchmark.
func newBenchFixture(b *testing.B) *fixture {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	f := &fixture{st: st, dir: dir}
	f.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.srv.Handler().ServeHTTP(w, r)
	}))
	b.Cleanup(f.http.Close)
	f.srv, err = New(ctx, Config{Issuer: f.http.URL, Logger: slog.New(slog.DiscardHandler)}, st, dir)
	if err != nil {
		b.Fatal(err)
	}
	return f
}
