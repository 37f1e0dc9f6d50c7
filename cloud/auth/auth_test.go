package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"trackgate/cloud/store"
	"trackgate/internal/token"
)

type fixture struct {
	srv         *Server
	st          *store.Store
	dir         string
	http        *httptest.Server
	revokeCalls atomic.Int64 // calls of Config.OnRevoke
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, dir: dir}
	f.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(f.http.Close)
	f.srv, err = New(ctx, Config{Issuer: f.http.URL, Logger: slog.New(slog.DiscardHandler),
		OnRevoke: func() { f.revokeCalls.Add(1) }}, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) verifier(t *testing.T, audience string) *token.Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := token.NewVerifier(ctx, token.VerifierConfig{
		JWKSURL: f.http.URL + "/.well-known/jwks.json", Issuer: f.http.URL, Audience: audience,
		Revoked: func(jti string) bool { ok, _ := f.st.Revoked(context.Background(), jti); return ok },
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	h2, _ := HashPassword("correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, tt := range []struct {
		password string
		want     bool
	}{{"correct horse", true}, {"correct hors", false}, {"", false}, {strings.Repeat("x", MaxPassword+1), false}} {
		if ok, err := CheckPassword(h, tt.password); ok != tt.want || err != nil {
			t.Errorf("CheckPassword(%.20q) = %v, %v", tt.password, ok, err)
		}
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=0,t=1,p=1$AA$AA", "plain"} {
		if _, err := CheckPassword(bad, "x"); err == nil {
			t.Errorf("CheckPassword(%q): no error", bad)
		}
	}
	for _, short := range []string{"", "1234567"} {
		if _, err := HashPassword(short); err == nil {
			t.Errorf("HashPassword(%q): no error", short)
		}
	}
}

// TestItem105TOTPNotAcceptedTwice enrols TOTP and checks codes: the current
// one once, ±1 step of skew, never the same step twice (AUTH.md 104, 105,
// 107).
func TestItem105TOTPNotAcceptedTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.srv.AddUser(ctx, "ann", "correct horse"); err != nil {
		t.Fatal(err)
	}
	uri, err := f.srv.EnrolTOTP(ctx, "ann")
	if err != nil || !strings.HasPrefix(uri, "otpauth://totp/trackgate:ann?") {
		t.Fatalf("uri %q, %v", uri, err)
	}
	secret := uri[strings.Index(uri, "secret=")+7:]
	secret = secret[:strings.IndexAny(secret+"&", "&")]
	if len(secret) < 32 { // base32 of 160 bits
		t.Errorf("secret %q shorter than 160 bits", secret)
	}
	u, _ := f.st.UserByName(ctx, "ann")
	if strings.Contains(u.TOTPSecret, secret) {
		t.Error("TOTP secret stored in the clear")
	}
	now := time.Now()
	code := func(at time.Time) string {
		c, err := totp.GenerateCode(secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	check := func(c string, at time.Time) bool {
		u, _ := f.st.UserByName(ctx, "ann")
		ok, err := f.srv.CheckTOTP(ctx, u, c, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if check(code(now.Add(-90*time.Second)), now) || check(code(now.Add(90*time.Second)), now) {
		t.Error("a code two steps away accepted")
	}
	if !check(code(now.Add(-30*time.Second)), now) {
		t.Error("the previous step's code refused")
	}
	if !check(code(now), now) {
		t.Error("the current code refused")
	}
	if check(code(now), now) {
		t.Error("the current code accepted twice")
	}
	if check(code(now.Add(-30*time.Second)), now) {
		t.Error("an older step accepted after a newer one")
	}
	if check("000000", now.Add(30*time.Second)) && code(now.Add(30*time.Second)) != "000000" {
		t.Error("a wrong code accepted")
	}
}

// TestDeviceTokens registers a device, verifies its token against the
// published JWKS as the broker would, and revokes it.
func TestDeviceTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.srv.AddUser(ctx, "ann", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AddDevice(ctx, "bob", "van", "", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("device of an unknown owner: %v", err)
	}
	if _, err := f.srv.AddDevice(ctx, "ann", "bad/id", "", nil); err == nil {
		t.Fatal("device id with a slash accepted")
	}
	tok, err := f.srv.AddDevice(ctx, "ann", "van", "the van", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AddDevice(ctx, "ann", "van", "", nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second device van: %v", err)
	}
	v := f.verifier(t, AudienceMQTT)
	c, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "van" || c.ClientID != "van" || !c.HasScope(ScopeDevice) || c.Issuer != f.http.URL ||
		c.ExpiresAt.Sub(c.IssuedAt.Time) != 365*24*time.Hour || len(c.ID) < 22 {
		t.Errorf("claims %+v", c)
	}
	if _, err := f.verifier(t, "https://api.example/").Verify(ctx, tok); !errors.Is(err, token.ErrAudience) {
		t.Errorf("device token at the API: %v, want an audience error", err)
	}
	if err := f.srv.RemoveDevice(ctx, "van"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); !errors.Is(err, token.ErrRevoked) {
		t.Errorf("token of a removed device: %v, want revoked", err)
	}
}

// TestItem59JWKS checks the published key set: public keys only, unique
// kid, use sig, alg EdDSA, cacheable and public (AUTH.md 59, 62).
func TestItem59JWKS(t *testing.T) {
	f := newFixture(t)
	resp, err := http.Get(f.http.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=300") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("%s: %v", body, err)
	}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWK has private member %q", private)
			}
		}
		if k["use"] != "sig" || k["alg"] != "EdDSA" || k["kid"] == "" {
			t.Errorf("JWK %v", k)
		}
	}
}

// TestItem61KeyRotation rotates the signing key: the new key is published
// at once but signs only after the lead; the old key signs until then and
// stays published while its tokens may live (AUTH.md 60, 61).
func TestItem61KeyRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	old, err := f.srv.Keys().Signer(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.srv.Keys().Rotate(ctx, now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(at time.Time) string {
		keys, err := f.srv.Keys().Published(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, k := range keys {
			s = append(s, k.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(now); got != old.ID+","+rec.ID {
		t.Errorf("published after rotation: %s, want old and new", got)
	}
	if k, _ := f.srv.Keys().Signer(ctx, now.Add(9*time.Minute)); k.ID != old.ID {
		t.Errorf("signer before the lead: %s, want the old key", k.ID)
	}
	if k, _ := f.srv.Keys().Signer(ctx, now.Add(11*time.Minute)); k.ID != rec.ID {
		t.Errorf("signer after the lead: %s, want the new key", k.ID)
	}
	if got := ids(now.Add(366 * 24 * time.Hour)); got != rec.ID {
		t.Errorf("published a year on: %s, want the new key only", got)
	}
	for _, id := range []string{old.ID, rec.ID} {
		fi, err := os.Stat(filepath.Join(f.dir, "keys", id+".pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file %s: %v %v", id, fi.Mode().Perm(), err)
		}
	}
	// A key file others can read is refused.
	os.Chmod(filepath.Join(f.dir, "keys", old.ID+".pem"), 0o644)
	if _, err := OpenKeyRing(ctx, f.st, f.dir, time.Hour); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key accepted: %v", err)
	}
}

// TestOnRevokeTellsBrokers: removing a device and revoking an access token
// at /revoke call OnRevoke (the cloud then asks its broker to fetch the
// revocation list at once); a failed removal does not.
func TestOnRevokeTellsBrokers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.srv.AddUser(ctx, "ann", userPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.AddDevice(ctx, "ann", "van-1", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.RemoveDevice(ctx, "van-1"); err != nil {
		t.Fatal(err)
	}
	if got := f.revokeCalls.Load(); got != 1 {
		t.Fatalf("after removing a device: %d calls, want 1", got)
	}
	if err := f.srv.RemoveDevice(ctx, "van-1"); err == nil {
		t.Fatal("removing a removed device succeeded")
	}
	id, secret := f.service(t, "svc", "ingest")
	tok := f.ccToken(t, id, secret, "ingest")
	if status, _, _ := f.post(t, "/revoke", url.Values{"token": {tok}}, id, secret); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if got := f.revokeCalls.Load(); got != 2 {
		t.Fatalf("after /revoke: %d calls, want 2", got)
	}
}
