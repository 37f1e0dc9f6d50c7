package brokertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"trackgate/internal/token"
)

// Issuer is a real HTTP token issuer for tests and benchmarks of a broker
// that verifies tokens: it serves a JWKS of its signing key and a
// revocation list that tests edit, and signs tokens.
type Issuer struct {
	URL string // the iss of its tokens, and where it serves
	Key token.Key

	mu      sync.Mutex
	revoked []token.Revocation
	srv     *httptest.Server
}

// NewIssuer starts an issuer on loopback, stopped when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	k, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{Key: k}
	jwks, err := token.JWKS([]token.Key{k})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	mux.HandleFunc("GET /api/v1/revocations", func(w http.ResponseWriter, _ *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"revocations": append([]token.Revocation{}, iss.revoked...)})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	return iss
}

// Close stops serving: the issuer becomes unreachable.
func (iss *Issuer) Close() { iss.srv.Close() }

// Revoke adds a token id to the revocation list.
func (iss *Issuer) Revoke(jti string) {
	iss.mu.Lock()
	iss.revoked = append(iss.revoked, token.Revocation{TokenID: jti, ExpiresAt: time.Now().Add(time.Hour)})
	iss.mu.Unlock()
}

// Claims returns valid broker-token claims for sub with scope, living an
// hour, with a unique jti.
func (iss *Issuer) Claims(sub, scope string) *token.Claims {
	now := time.Now()
	return &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: iss.URL, Subject: sub, Audience: jwt.ClaimStrings{"mqtt"},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID: strings.ReplaceAll(sub, ":", "-") + "-" + now.Format("150405.000000000"),
		},
		ClientID: sub, Scope: scope,
	}
}

// Sign signs c with the issuer's key.
func (iss *Issuer) Sign(t testing.TB, c *token.Claims) string {
	t.Helper()
	raw, err := token.Sign(iss.Key, c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
