package broker_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/token"
)

// issuer is a real HTTP issuer for broker tests: it serves a JWKS of its
// signing key and a revocation list that tests edit, and signs tokens.
type issuer struct {
	URL string // the iss of its tokens, and where it serves
	Key token.Key

	mu      sync.Mutex
	revoked []token.Revocation
	srv     *httptest.Server
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	k, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{Key: k}
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

// revoke adds a token id to the revocation list.
func (iss *issuer) revoke(jti string) {
	iss.mu.Lock()
	iss.revoked = append(iss.revoked, token.Revocation{TokenID: jti, ExpiresAt: time.Now().Add(time.Hour)})
	iss.mu.Unlock()
}

// claims returns valid broker-token claims for sub with scope, living an
// hour.
func (iss *issuer) claims(sub, scope string) *token.Claims {
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

// sign signs c with the issuer's key.
func (iss *issuer) sign(t testing.TB, c *token.Claims) string {
	t.Helper()
	raw, err := token.Sign(iss.Key, c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// deviceToken is a device token for id (scope device).
func (iss *issuer) deviceToken(t testing.TB, id string) string {
	return iss.sign(t, iss.claims(id, broker.ScopeDevice))
}

// startBroker runs a broker that verifies the issuer's tokens (keys and
// revocations over HTTP, revocations fetched every 100 ms), with TCP and
// WebSocket listeners on loopback; edit may change the config first.
func startBroker(t testing.TB, iss *issuer, edit func(*broker.Config)) *brokertest.Broker {
	t.Helper()
	cfg := broker.Config{
		Auth:   broker.AuthConfig{Issuer: iss.URL, RevocationsInterval: 100 * time.Millisecond, Data: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&cfg)
	}
	return brokertest.Start(t, cfg)
}
