package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://cloud.trackgate.test"
	testAudience = "https://api.trackgate.test/"
	testClientID = "trackctl"
)

// jwksServer is an issuer's jwks_uri on loopback: it serves whatever JWKS it
// was last given and counts the requests.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64
	fail     atomic.Bool // answer 503

	mu   sync.Mutex
	doc  []byte
	hang chan struct{} // non-nil: requests wait until it is closed or they are canceled
}

// newJWKSServer serves the JWKS of keys until the test ends.
func newJWKSServer(tb testing.TB, keys ...Key) *jwksServer {
	tb.Helper()
	s := &jwksServer{}
	s.setKeys(tb, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		doc, hang := s.doc, s.hang
		s.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
				return
			}
		}
		if s.fail.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(doc)
	}))
	tb.Cleanup(s.Close)
	return s
}

// setKeys makes the server publish the JWKS of keys.
func (s *jwksServer) setKeys(tb testing.TB, keys ...Key) {
	tb.Helper()
	doc, err := JWKS(keys)
	if err != nil {
		tb.Fatal(err)
	}
	s.setDoc(doc)
}

// setDoc makes the server publish doc.
func (s *jwksServer) setDoc(doc []byte) {
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

// hangRequests makes requests wait until the returned function is called.
func (s *jwksServer) hangRequests() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hang = ch
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.hang = nil
		s.mu.Unlock()
		close(ch)
	}
}

// newTestVerifier starts a Verifier on s's JWKS, edited by edit, and stops it
// (waiting for its refresh loop) when the test ends.
func newTestVerifier(tb testing.TB, s *jwksServer, edit func(*VerifierConfig)) *Verifier {
	tb.Helper()
	v, err := startVerifier(tb, s, edit)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// startVerifier is newTestVerifier that returns NewVerifier's error.
func startVerifier(tb testing.TB, s *jwksServer, edit func(*VerifierConfig)) (*Verifier, error) {
	tb.Helper()
	cfg := VerifierConfig{
		JWKSURL:  s.URL + "/.well-known/jwks.json",
		Issuer:   testIssuer,
		Audience: testAudience,
		Logger:   testLogger(tb),
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	tb.Cleanup(func() {
		cancel()
		<-v.Done()
	})
	return v, nil
}

// testLogger logs to the test's output, shown when it fails or with -v.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustKey generates a key or fails the test.
func mustKey(tb testing.TB) Key {
	tb.Helper()
	k, err := GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// validClaims returns the claims of a valid access token, issued now.
func validClaims() *Claims {
	now := time.Now().Truncate(time.Second)
	return &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    testIssuer,
			Subject:   "device-42",
			Audience:  jwt.ClaimStrings{testAudience},
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(randomID()),
		},
		ClientID: testClientID,
		Scope:    "tracks:read positions:write",
		AMR:      []string{"pwd", "otp"},
		AuthTime: now.Add(-time.Minute).Unix(),
	}
}

// randomID returns 16 random bytes.
func randomID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

// mustSign signs c with k or fails the test.
func mustSign(tb testing.TB, k Key, c *Claims) string {
	tb.Helper()
	s, err := Sign(k, c)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// claimsMap returns validClaims as a JSON object, edited by edit, so that a
// test can drop claims or give them the wrong type.
func claimsMap(tb testing.TB, edit func(map[string]any)) map[string]any {
	tb.Helper()
	b, err := json.Marshal(validClaims())
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	return m
}

// header returns the header Sign writes for k, edited by edit.
func header(k Key, edit func(map[string]any)) map[string]any {
	h := map[string]any{"alg": Alg, "typ": Type, "kid": k.ID}
	if edit != nil {
		edit(h)
	}
	return h
}

// set returns an edit that sets key to val.
func set(key string, val any) func(map[string]any) {
	return func(m map[string]any) { m[key] = val }
}

// del returns an edit that deletes key.
func del(key string) func(map[string]any) {
	return func(m map[string]any) { delete(m, key) }
}

// b64 is base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// forge serializes header and claims as a compact JWS and signs them with
// sign, which may do anything: a forger controls every byte.
func forge(tb testing.TB, header map[string]any, claims any, sign func(input []byte) []byte) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	input := b64(h) + "." + b64(c)
	return input + "." + b64(sign([]byte(input)))
}

// edSign signs with an Ed25519 key.
func edSign(k Key) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(k.Private, in) }
}

// jwksWith returns the JWKS of keys with each key's JSON object edited by
// edit (called with the key's index).
func jwksWith(tb testing.TB, keys []Key, edit func(i int, jwk map[string]any)) []byte {
	tb.Helper()
	doc, err := JWKS(keys)
	if err != nil {
		tb.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		tb.Fatal(err)
	}
	for i, k := range set.Keys {
		edit(i, k)
	}
	out, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
