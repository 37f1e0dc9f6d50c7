package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

// tracker is a device with its own key pair (AUTH.md section L).
type tracker struct {
	id     string
	key    crypto.Signer
	method jwt.SigningMethod
}

func newTracker(t *testing.T, id string, ed bool) *tracker {
	t.Helper()
	if ed {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &tracker{id: id, key: priv, method: jwt.SigningMethodEdDSA}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &tracker{id: id, key: priv, method: jwt.SigningMethodES256}
}

// jwk is the tracker's public key as a JWK.
func (tr *tracker) jwk(t *testing.T) json.RawMessage {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	var m map[string]string
	switch pub := tr.key.Public().(type) {
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		m = map[string]string{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		m = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}
	}
	out, _ := json.Marshal(m)
	return out
}

// assertion signs a client assertion with claims changed by edit.
func (tr *tracker) assertion(t *testing.T, f *fixture, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": tr.id, "sub": tr.id, "aud": f.http.URL + "/token", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": newID()}
	if edit != nil {
		edit(c)
	}
	s, err := jwt.NewWithClaims(tr.method, c).SignedString(tr.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func assertionForm(a string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {AssertionType}, "client_assertion": {a}}
}

// TestTrackerCredentials covers trackers with their own keys: pairing by a
// signed-in user, client credentials with private_key_jwt, and unpairing
// (AUTH.md items 36, 39, 42, 94–97).
func TestTrackerCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "ann", "correct horse battery", false)
	es, ed := newTracker(t, "tracker-es", false), newTracker(t, "tracker-ed", true)

	// 98: pairing binds the device to an account through a signed-in user.
	q, verifier := f.browser(t).codeFlow(t, f.oauthConfig("devices:write"), "ann", "correct horse battery", "")
	tok, err := f.oauthConfig().Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	addDevice := func(body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", f.http.URL+"/api/v1/devices", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		status, _, m := do(t, req)
		return status, m
	}
	if status, m := addDevice(map[string]any{"id": es.id, "jwk": es.jwk(t)}); status != 201 || m["token"] != nil {
		t.Fatalf("94: pairing a tracker: %d %v", status, m)
	}
	if _, err := f.srv.AddDevice(ctx, "ann", ed.id, "", ed.jwk(t)); err != nil {
		t.Fatal(err)
	}

	t.Run("94 a key with private parts or of another type is refused", func(t *testing.T) {
		var withD map[string]string
		json.Unmarshal(es.jwk(t), &withD)
		withD["d"] = "c2VjcmV0"
		priv, _ := json.Marshal(withD)
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
		rsaJWK, _ := json.Marshal(map[string]string{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB"})
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		raw, _ := p384.PublicKey.Bytes()
		p384JWK, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-384", "x": base64.RawURLEncoding.EncodeToString(raw[1:49]), "y": base64.RawURLEncoding.EncodeToString(raw[49:])})
		for name, jwk := range map[string]json.RawMessage{"private d": priv, "RSA": rsaJWK, "P-384": p384JWK, "not JSON": json.RawMessage(`"x"`)} {
			if status, m := addDevice(map[string]any{"id": "bad-" + strings.ReplaceAll(name, " ", "-"), "jwk": jwk}); status != 400 {
				t.Errorf("%s: %d %v", name, status, m)
			}
		}
	})

	for _, tr := range []*tracker{es, ed} {
		t.Run("95 42 "+tr.method.Alg()+" tracker gets a broker token and no refresh token", func(t *testing.T) {
			status, _, m := f.post(t, "/token", assertionForm(tr.assertion(t, f, nil)), "", "")
			if status != 200 || m["refresh_token"] != nil {
				t.Fatalf("%d %v", status, m)
			}
			c, err := f.srv.mqttVerifier.Verify(ctx, m["access_token"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != tr.id || c.ClientID != tr.id || c.Scope != "device" || c.ExpiresAt.Sub(c.IssuedAt.Time) > 15*time.Minute {
				t.Errorf("claims %+v", c)
			}
		})
	}

	other := newTracker(t, es.id, false) // the same id, another key
	for _, tt := range []struct {
		name  string
		form  func() url.Values
		error string
	}{
		{"39 wrong aud", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { c["aud"] = "https://elsewhere.example/token" }))
		}, "invalid_client"},
		{"39 no aud", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { delete(c, "aud") }))
		}, "invalid_client"},
		{"39 expired", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }))
		}, "invalid_client"},
		{"39 no exp", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { delete(c, "exp") }))
		}, "invalid_client"},
		{"39 lives longer than 5 minutes", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() }))
		}, "invalid_client"},
		{"39 no jti", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { delete(c, "jti") }))
		}, "invalid_client"},
		{"39 iss is not the client", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { c["sub"] = ed.id; c["iss"] = ed.id }))
		}, "invalid_client"},
		{"39 sub is not the client", func() url.Values {
			return assertionForm(es.assertion(t, f, func(c jwt.MapClaims) { c["sub"] = ed.id }))
		}, "invalid_client"},
		{"39 signed with another key", func() url.Values { return assertionForm(other.assertion(t, f, nil)) }, "invalid_client"},
		{"39 client_id differs from iss", func() url.Values {
			v := assertionForm(es.assertion(t, f, nil))
			v.Set("client_id", ed.id)
			return v
		}, "invalid_client"},
		{"65 alg none", func() url.Values {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": es.id, "sub": es.id, "aud": f.http.URL, "exp": time.Now().Add(time.Minute).Unix(), "jti": "x"}).
				SignedString(jwt.UnsafeAllowNoneSignatureType)
			return assertionForm(s)
		}, "invalid_client"},
		{"wrong assertion type", func() url.Values {
			v := assertionForm(es.assertion(t, f, nil))
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return v
		}, "invalid_client"},
		{"36 an assertion and a secret", func() url.Values {
			v := assertionForm(es.assertion(t, f, nil))
			v.Set("client_secret", "x")
			return v
		}, "invalid_request"},
		{"a tracker cannot use a secret", func() url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "client_id": {es.id}, "client_secret": {"x"}}
		}, "invalid_client"},
		{"a tracker is not a public client", func() url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "client_id": {es.id}}
		}, "invalid_client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, m := f.post(t, "/token", tt.form(), "", "")
			if status/100 == 2 || m["error"] != tt.error {
				t.Errorf("%d %v, want %s", status, m, tt.error)
			}
		})
	}

	t.Run("39 a replayed jti is refused", func(t *testing.T) {
		a := es.assertion(t, f, nil)
		if status, _, m := f.post(t, "/token", assertionForm(a), "", ""); status != 200 {
			t.Fatalf("first use: %d %v", status, m)
		}
		if status, _, m := f.post(t, "/token", assertionForm(a), "", ""); status != 401 || m["error"] != "invalid_client" {
			t.Errorf("replay: %d %v", status, m)
		}
	})

	t.Run("36 Basic and an assertion", func(t *testing.T) {
		if status, _, m := f.post(t, "/token", assertionForm(es.assertion(t, f, nil)), es.id, "x"); status != 400 || m["error"] != "invalid_request" {
			t.Errorf("%d %v", status, m)
		}
	})

	t.Run("97 a tracker's token cannot call the user API", func(t *testing.T) {
		_, _, m := f.post(t, "/token", assertionForm(es.assertion(t, f, nil)), "", "")
		req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/account", nil)
		req.Header.Set("Authorization", "Bearer "+m["access_token"].(string))
		if status, _, m := do(t, req); status != 403 {
			t.Errorf("%d %v", status, m)
		}
	})

	t.Run("96 an unpaired tracker gets no new token, and its tokens are revoked", func(t *testing.T) {
		_, _, m := f.post(t, "/token", assertionForm(ed.assertion(t, f, nil)), "", "")
		jti := unverifiedClaims(t, m["access_token"].(string)).ID
		if err := f.srv.RemoveDevice(ctx, ed.id); err != nil {
			t.Fatal(err)
		}
		if revoked, _ := f.st.Revoked(ctx, jti); !revoked {
			t.Error("the tracker's token is not revoked")
		}
		if status, _, m := f.post(t, "/token", assertionForm(ed.assertion(t, f, nil)), "", ""); status != 401 {
			t.Errorf("token after unpairing: %d %v", status, m)
		}
	})
}
