package auth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

// service registers a service client and returns its id and secret.
func (f *fixture) service(t *testing.T, name string, scopes ...string) (string, string) {
	t.Helper()
	id, secret, err := f.srv.AddServiceClient(context.Background(), name, scopes)
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}

// post sends a form to path, with Basic credentials when user is set, and
// returns the status, headers and decoded JSON body.
func (f *fixture) post(t *testing.T, path string, form url.Values, user, pass string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON", req.Method, req.URL.Path, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, resp.Header, m
}

// ccToken gets a token with the client credentials grant through
// golang.org/x/oauth2.
func (f *fixture) ccToken(t *testing.T, id, secret string, scopes ...string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: f.http.URL + "/token", Scopes: scopes}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if tok.RefreshToken != "" {
		t.Error("42: client_credentials response has a refresh token")
	}
	return tok.AccessToken
}

func TestMetadata(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		req, _ := http.NewRequest("GET", f.http.URL+path, nil)
		status, _, m := do(t, req)
		if status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
		t.Run("2 issuer is byte-identical", func(t *testing.T) {
			if m["issuer"] != f.http.URL {
				t.Errorf("issuer %v, want %s", m["issuer"], f.http.URL)
			}
		})
		t.Run("3 S256 only", func(t *testing.T) {
			if got, _ := json.Marshal(m["code_challenge_methods_supported"]); string(got) != `["S256"]` {
				t.Errorf("code_challenge_methods_supported %s", got)
			}
		})
		t.Run("5 no implicit or password grant", func(t *testing.T) {
			for _, g := range m["grant_types_supported"].([]any) {
				if g == "implicit" || g == "password" {
					t.Errorf("grant %v advertised", g)
				}
			}
		})
	}
}

// TestClientCredentials covers the token endpoint and client authentication
// (AUTH.md items 5, 6, 34–38, 40–43, 54–57, 63).
func TestClientCredentials(t *testing.T) {
	f := newFixture(t)
	id, secret := f.service(t, "ingest-bridge")
	good := url.Values{"grant_type": {"client_credentials"}, "scope": {"ingest"}}

	t.Run("happy path with x/oauth2 and checks of the token", func(t *testing.T) {
		raw := f.ccToken(t, id, secret, "revocations:read")
		c, err := f.verifier(t, f.srv.APIAudience()).Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		// 54: the claims; 56: aud is the resource, not a client id; 57: ≤ 15 min.
		if c.Subject != ServicePrefix+id || c.ClientID != id || c.Scope != "revocations:read" || c.ID == "" ||
			c.Audience[0] != f.srv.APIAudience() || c.ExpiresAt.Sub(c.IssuedAt.Time) > 15*time.Minute {
			t.Errorf("claims %+v", c)
		}
	})
	t.Run("6 63 no-store and expires_in matches the token", func(t *testing.T) {
		status, h, m := f.post(t, "/token", good, id, secret)
		if status != 200 || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
			t.Fatalf("%d %v", status, h)
		}
		c, err := f.verifier(t, AudienceMQTT).Verify(context.Background(), m["access_token"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if d := m["expires_in"].(float64) - c.ExpiresAt.Sub(c.IssuedAt.Time).Seconds(); d < -1 || d > 1 {
			t.Errorf("expires_in %v, token lives %v", m["expires_in"], c.ExpiresAt.Sub(c.IssuedAt.Time))
		}
		if _, ok := m["refresh_token"]; ok {
			t.Error("42: refresh token in a client_credentials response")
		}
	})

	basicBody := func(form url.Values) url.Values {
		out := url.Values{}
		for k, v := range form {
			out[k] = v
		}
		return out
	}
	withPost := basicBody(good)
	withPost.Set("client_id", id)
	withPost.Set("client_secret", secret)
	tests := []struct {
		name        string
		form        url.Values
		user, pass  string
		query       string
		contentType string
		status      int
		err         string
		challenge   bool
	}{
		{name: "client_secret_post works", form: withPost, status: 200},
		{name: "5 password grant", form: url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, user: id, pass: secret, status: 400, err: "unsupported_grant_type"},
		{name: "34 credentials in the query string", form: good, query: "client_id=" + id + "&client_secret=" + secret, status: 400, err: "invalid_request"},
		{name: "34 not a form", form: good, user: id, pass: secret, contentType: "application/json", status: 400, err: "invalid_request"},
		{name: "35 wrong secret with Basic", form: good, user: id, pass: "wrong", status: 401, err: "invalid_client", challenge: true},
		{name: "35 wrong secret in the body", form: func() url.Values { v := basicBody(withPost); v.Set("client_secret", "wrong"); return v }(), status: 401, err: "invalid_client"},
		{name: "35 unknown client", form: good, user: "nobody", pass: secret, status: 401, err: "invalid_client", challenge: true},
		{name: "36 two authentication methods", form: withPost, user: id, pass: secret, status: 400, err: "invalid_request"},
		{name: "5 grant not supported", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:saml2-bearer"}}, user: id, pass: secret, status: 400, err: "unsupported_grant_type"},
		{name: "37 service client not registered for the device grant", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {"x"}}, user: id, pass: secret, status: 400, err: "unauthorized_client"},
		{name: "37 38 public client not registered for client_credentials", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"trackctl"}}, status: 400, err: "unauthorized_client"},
		{name: "43 scope beyond the client's", form: url.Values{"grant_type": {"client_credentials"}, "scope": {"tracks:write"}}, user: id, pass: secret, status: 400, err: "invalid_scope"},
		{name: "43 introspect is never in a token", form: url.Values{"grant_type": {"client_credentials"}, "scope": {"introspect"}}, user: id, pass: secret, status: 400, err: "invalid_scope"},
		{name: "56 scopes of two audiences", form: url.Values{"grant_type": {"client_credentials"}, "scope": {"ingest revocations:read"}}, user: id, pass: secret, status: 400, err: "invalid_scope"},
		{name: "16 repeated parameter", form: url.Values{"grant_type": {"client_credentials", "client_credentials"}}, user: id, pass: secret, status: 400, err: "invalid_request"},
		{name: "missing grant type", form: url.Values{}, user: id, pass: secret, status: 400, err: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := f.http.URL + "/token"
			if tt.query != "" {
				target += "?" + tt.query
			}
			req, _ := http.NewRequest("POST", target, strings.NewReader(tt.form.Encode()))
			ct := tt.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			req.Header.Set("Content-Type", ct)
			if tt.user != "" {
				req.SetBasicAuth(url.QueryEscape(tt.user), url.QueryEscape(tt.pass))
			}
			status, h, m := do(t, req)
			if status != tt.status {
				t.Fatalf("status %d %v, want %d", status, m, tt.status)
			}
			if tt.err != "" && m["error"] != tt.err {
				t.Errorf("41: error %v, want %s", m, tt.err)
			}
			if tt.challenge != (h.Get("WWW-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("40 secrets stored hashed", func(t *testing.T) {
		c, err := f.st.Client(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.SecretHash == secret || strings.Contains(c.SecretHash, secret) || len(c.SecretHash) != 64 {
			t.Errorf("stored %q", c.SecretHash)
		}
		if len(strings.TrimPrefix(secret, "tgs_")) < 43 {
			t.Errorf("33: secret %q shorter than 256 bits", secret)
		}
	})
}

// TestIntrospectionAndRevocation covers RFC 7662 and RFC 7009 (AUTH.md 77–80,
// 82, 83, 85, 86) and the revocation list verifiers poll.
func TestIntrospectionAndRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rs, rsSecret := f.service(t, "resource-server", "introspect", "revocations:read")
	other, otherSecret := f.service(t, "other", "ingest")
	a, aSecret := f.service(t, "client-a", "ingest")
	tokA := f.ccToken(t, a, aSecret, "ingest")
	introspect := func(tok string) map[string]any {
		t.Helper()
		status, h, m := f.post(t, "/introspect", url.Values{"token": {tok}}, rs, rsSecret)
		if status != 200 || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("introspect: %d %v", status, m)
		}
		return m
	}
	t.Run("77 unauthenticated or not a resource server", func(t *testing.T) {
		if status, _, _ := f.post(t, "/introspect", url.Values{"token": {tokA}}, "", ""); status != 401 {
			t.Errorf("anonymous: %d", status)
		}
		if status, _, _ := f.post(t, "/introspect", url.Values{"token": {tokA}}, other, otherSecret); status != 401 {
			t.Errorf("a client without the introspect scope: %d", status)
		}
	})
	var jtiA string
	t.Run("79 active token", func(t *testing.T) {
		m := introspect(tokA)
		jtiA, _ = m["jti"].(string)
		if m["active"] != true || m["client_id"] != a || m["sub"] != ServicePrefix+a || m["scope"] != "ingest" || m["iss"] != f.http.URL ||
			m["exp"] == nil || m["iat"] == nil || m["aud"] == nil {
			t.Errorf("%v", m)
		}
	})
	t.Run("78 unknown token is exactly active false", func(t *testing.T) {
		for _, tok := range []string{"garbage", tokA + "x", strings.Repeat("a", 10000)} {
			m := introspect(tok)
			if len(m) != 1 || m["active"] != false {
				t.Errorf("%v", m)
			}
		}
	})
	t.Run("80 token in the query string refused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", f.http.URL+"/introspect?token="+tokA, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(rs, rsSecret)
		if status, _, _ := do(t, req); status != 400 {
			t.Errorf("status %d", status)
		}
	})
	t.Run("85 another client cannot revoke", func(t *testing.T) {
		status, _, m := f.post(t, "/revoke", url.Values{"token": {tokA}}, other, otherSecret)
		if status != 400 || m["error"] != "unauthorized_client" {
			t.Errorf("%d %v", status, m)
		}
		if introspect(tokA)["active"] != true {
			t.Error("token revoked by another client")
		}
	})
	t.Run("83 unknown token revokes with 200", func(t *testing.T) {
		if status, _, _ := f.post(t, "/revoke", url.Values{"token": {"nonsense"}}, a, aSecret); status != 200 {
			t.Errorf("status %d", status)
		}
	})
	t.Run("82 86 revoke, any hint", func(t *testing.T) {
		status, _, _ := f.post(t, "/revoke", url.Values{"token": {tokA}, "token_type_hint": {"something_else"}}, a, aSecret)
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		if m := introspect(tokA); len(m) != 1 || m["active"] != false {
			t.Errorf("after revocation: %v", m)
		}
		if status, _, _ := f.post(t, "/revoke", url.Values{"token": {tokA}}, a, aSecret); status != 200 {
			t.Errorf("83 second revocation: %d", status)
		}
	})
	t.Run("revocation list for verifiers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/revocations", nil)
		status, h, m := do(t, req)
		if status != 200 {
			t.Fatalf("public list: status %d %v", status, m)
		}
		list, _ := json.Marshal(m["revocations"])
		if jtiA == "" || !strings.Contains(string(list), `"jti":"`+jtiA+`"`) {
			t.Errorf("revocations %s lack the revoked token %q", list, jtiA)
		}
		etag := h.Get("ETag")
		req, _ = http.NewRequest("GET", f.http.URL+"/api/v1/revocations", nil)
		req.Header.Set("If-None-Match", etag)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("unchanged list with If-None-Match %q: %d, want 304", etag, resp.StatusCode)
		}
	})
	t.Run("76 insufficient scope is 403", func(t *testing.T) {
		id, secret, err := f.srv.AddServiceClient(ctx, "tracks-reader", []string{"tracks:read"})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", f.http.URL+"/api/v1/devices", strings.NewReader(`{"id":"x"}`))
		req.Header.Set("Authorization", "Bearer "+f.ccToken(t, id, secret))
		if status, h, m := do(t, req); status != 403 || m["code"] != "insufficient_scope" || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%d %v %v", status, h, m)
		}
	})
}

// TestParallelTokens issues tokens from several goroutines: every one is
// distinct and verifies.
func TestParallelTokens(t *testing.T) {
	f := newFixture(t)
	id, secret := f.service(t, "svc")
	v := f.verifier(t, AudienceMQTT)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, m := f.post(t, "/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"ingest"}}, id, secret)
			tok, _ := m["access_token"].(string)
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[c.ID] {
				t.Errorf("jti %s issued twice", c.ID)
			}
			seen[c.ID] = true
		}()
	}
	wg.Wait()
}
