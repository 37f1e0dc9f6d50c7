package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestGenerateKey(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	if a.ID == b.ID {
		t.Fatalf("two keys share kid %s", a.ID)
	}
	id, err := segment.DecodeString(a.ID)
	if err != nil || len(id) != 16 {
		t.Fatalf("kid %q: %d bytes (%v), want 128 bits of base64url", a.ID, len(id), err)
	}
	if !a.Public().Equal(a.Private.Public()) {
		t.Fatal("Public is not the private key's public half")
	}
}

// TestKeyDoesNotLeak checks that printing or logging a Key shows its kid and
// never its private key.
func TestKeyDoesNotLeak(t *testing.T) {
	k := mustKey(t)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("signing", "key", k)
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), logged.String()} {
		if !strings.Contains(out, k.ID) {
			t.Errorf("%q does not name kid %s", out, k.ID)
		}
		for _, secret := range []string{fmt.Sprint([]byte(k.Private)), b64(k.Private), b64(k.Private.Seed())} {
			if strings.Contains(out, secret) {
				t.Errorf("%q shows the private key", out)
			}
		}
	}
}

func TestKeyPEM(t *testing.T) {
	k := mustKey(t)
	p, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("PEM:\n%s", p)
	}
	got, err := ParseKeyPEM(k.ID, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || !got.Private.Equal(k.Private) {
		t.Fatalf("round trip gave %v, want %v", got, k)
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkixDER, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"empty":          nil,
		"not PEM":        []byte("hello"),
		"public key":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkixDER}),
		"ECDSA key":      pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: ecDER}),
		"trailing data":  append(bytes.Clone(p), "junk"...),
		"two keys":       append(bytes.Clone(p), p...),
		"encrypted":      pem.EncodeToMemory(&pem.Block{Type: pemType, Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}),
		"corrupt PKCS#8": pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: []byte{0x30, 0x03, 1, 2, 3}}),
	} {
		if _, err := ParseKeyPEM(k.ID, in); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
	if _, err := ParseKeyPEM("", p); err == nil {
		t.Error("empty kid: parsed, want an error")
	}
}

// TestItem59JWKS checks the published set: public members only, a unique
// kid, use sig and alg EdDSA on every key.
func TestItem59JWKS(t *testing.T) {
	keys := []Key{mustKey(t), mustKey(t), mustKey(t)}
	doc, err := JWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	var set map[string][]map[string]any
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	if len(set) != 1 || len(set["keys"]) != len(keys) {
		t.Fatalf("JWKS %s: want {keys: [3 keys]}", doc)
	}
	seen := map[string]bool{}
	for i, jwk := range set["keys"] {
		var members []string
		for m := range jwk {
			members = append(members, m)
		}
		slices.Sort(members)
		if !slices.Equal(members, []string{"alg", "crv", "kid", "kty", "use", "x"}) {
			t.Errorf("key %d has members %v, want exactly alg crv kid kty use x", i, members)
		}
		if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" || jwk["use"] != "sig" || jwk["alg"] != "EdDSA" {
			t.Errorf("key %d: %v", i, jwk)
		}
		kid := jwk["kid"].(string)
		if seen[kid] || kid != keys[i].ID {
			t.Errorf("key %d: kid %s repeated or not %s", i, kid, keys[i].ID)
		}
		seen[kid] = true
		if x, err := segment.DecodeString(jwk["x"].(string)); err != nil || !keys[i].Public().Equal(ed25519.PublicKey(x)) {
			t.Errorf("key %d: x is not the public key (%v)", i, err)
		}
	}
	if strings.Contains(string(doc), b64(keys[0].Private.Seed())) {
		t.Fatal("JWKS contains a private key")
	}

	if _, err := JWKS([]Key{keys[0], keys[0]}); err == nil {
		t.Error("JWKS with a repeated kid: no error")
	}
	if _, err := JWKS([]Key{{ID: "", Private: keys[0].Private}}); err == nil {
		t.Error("JWKS with an empty kid: no error")
	}
	if doc, err := JWKS(nil); err != nil || string(doc) != `{"keys":[]}` {
		t.Errorf("empty JWKS: %s, %v", doc, err)
	}
}

func TestSignRefusesIncompleteClaims(t *testing.T) {
	k := mustKey(t)
	for name, edit := range map[string]func(*Claims){
		"iss":       func(c *Claims) { c.Issuer = "" },
		"sub":       func(c *Claims) { c.Subject = "" },
		"aud":       func(c *Claims) { c.Audience = nil },
		"empty aud": func(c *Claims) { c.Audience = jwt.ClaimStrings{""} },
		"exp":       func(c *Claims) { c.ExpiresAt = nil },
		"iat":       func(c *Claims) { c.IssuedAt = nil },
		"jti":       func(c *Claims) { c.ID = "" },
		"client_id": func(c *Claims) { c.ClientID = "" },
	} {
		c := validClaims()
		edit(c)
		if _, err := Sign(k, c); !errors.Is(err, ErrMissingClaim) {
			t.Errorf("without %s: %v, want ErrMissingClaim", name, err)
		}
	}
	if _, err := Sign(k, nil); err == nil {
		t.Error("nil claims: no error")
	}
	if _, err := Sign(Key{ID: k.ID}, validClaims()); err == nil {
		t.Error("no private key: no error")
	}
	if _, err := Sign(Key{ID: strings.Repeat("k", MaxKIDLen+1), Private: k.Private}, validClaims()); err == nil {
		t.Error("kid too long: no error")
	}
}

func TestScopes(t *testing.T) {
	c := &Claims{Scope: " tracks:read  positions:write\tadmin "}
	if got := c.Scopes(); !slices.Equal(got, []string{"tracks:read", "positions:write", "admin"}) {
		t.Fatalf("Scopes: %q", got)
	}
	for s, want := range map[string]bool{"tracks:read": true, "admin": true, "tracks": false, "": false, "tracks:read positions:write": false} {
		if got := c.HasScope(s); got != want {
			t.Errorf("HasScope(%q) = %v, want %v", s, got, want)
		}
	}
	if (&Claims{}).HasScope("") {
		t.Error("empty scope has the empty scope")
	}
}

// TestFetch checks a verifier whose keys come from a function (the issuer
// verifying its own tokens): no URL is needed, and a key added to what the
// function returns is found on an unknown kid.
func TestFetch(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	var mu sync.Mutex
	keys := []Key{k1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewVerifier(ctx, VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, UnknownKIDRefresh: time.Millisecond, Logger: testLogger(t),
		Fetch: func(context.Context) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return JWKS(keys)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, mustSign(t, k1, validClaims())); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	keys = append(keys, k2)
	mu.Unlock()
	if _, err := v.Verify(ctx, mustSign(t, k2, validClaims())); err != nil {
		t.Fatalf("new key: %v", err)
	}
}
