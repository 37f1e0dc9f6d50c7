package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fixture is an issuer's JWKS on loopback and a Verifier of its tokens.
type fixture struct {
	jwks       *jwksServer
	key        Key // the issuer's signing key
	mislabeled Key // in the JWKS, but its JWK says alg ES256
	noAlg      Key // in the JWKS, but its JWK has no alg
	other      Key // another issuer's key, never in our JWKS
	v          *Verifier
}

// revokedJTI is the jti the fixture's Verifier reports revoked.
const revokedJTI = "revoked-jti"

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f := &fixture{key: mustKey(tb), mislabeled: mustKey(tb), noAlg: mustKey(tb), other: mustKey(tb)}
	f.jwks = newJWKSServer(tb)
	f.jwks.setDoc(jwksWith(tb, []Key{f.key, f.mislabeled, f.noAlg}, func(i int, jwk map[string]any) {
		switch i {
		case 1:
			jwk["alg"] = "ES256"
		case 2:
			delete(jwk, "alg")
		}
	}))
	f.v = newTestVerifier(tb, f.jwks, func(c *VerifierConfig) {
		c.UnknownKIDRefresh = time.Hour
		c.Revoked = func(jti string) bool { return jti == revokedJTI }
	})
	return f
}

// verifyCase is one token and the error Verify must wrap (nil: accepted).
type verifyCase struct {
	name  string
	token string
	want  error
}

// cases returns the forged and genuine tokens of the verifier-side checklist
// (AUTH.md items 54–75); each name starts with its item number.
func (f *fixture) cases(tb testing.TB) []verifyCase {
	tb.Helper()
	k := f.key
	sign := edSign(k)
	claims := func(edit func(map[string]any)) map[string]any { return claimsMap(tb, edit) }
	now := time.Now().Unix()
	good := mustSign(tb, k, validClaims())
	head, rest, _ := strings.Cut(good, ".")
	payload, sig, _ := strings.Cut(rest, ".")

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	hs256 := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	none := func([]byte) []byte { return nil }
	twice := func(e1, e2 func(map[string]any)) func(map[string]any) {
		return func(m map[string]any) { e1(m); e2(m) }
	}

	// A signature whose last character carries bits beyond the 64 bytes:
	// it decodes leniently to the same bytes, and must not be accepted.
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", sig[len(sig)-1])
	straySig := sig[:len(sig)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last|1])
	flipped := []byte(sig)
	flipped[20] = map[bool]byte{true: 'B', false: 'A'}[flipped[20] == 'A']

	withRevoked := validClaims()
	withRevoked.ID = revokedJTI
	multiAud := validClaims()
	multiAud.Audience = append(multiAud.Audience, "mqtt://broker.trackgate.test")

	return []verifyCase{
		{"54 valid token", good, nil},
		{"54 aud list holding ours", mustSign(tb, k, multiAud), nil},
		{"54 missing sub", forge(tb, header(k, nil), claims(del("sub")), sign), ErrMissingClaim},
		{"54 missing jti", forge(tb, header(k, nil), claims(del("jti")), sign), ErrMissingClaim},
		{"54 missing client_id", forge(tb, header(k, nil), claims(del("client_id")), sign), ErrMissingClaim},
		{"54 missing iat", forge(tb, header(k, nil), claims(del("iat")), sign), ErrMissingClaim},
		{"54 scope not a string", forge(tb, header(k, nil), claims(set("scope", []string{"a"})), sign), ErrMalformed},

		{"65 alg none", forge(tb, header(k, set("alg", "none")), claims(nil), none), ErrAlgorithm},
		{"65 alg none with a signature", forge(tb, header(k, set("alg", "none")), claims(nil), sign), ErrAlgorithm},
		{"65 alg NONE", forge(tb, header(k, set("alg", "NONE")), claims(nil), none), ErrAlgorithm},
		{"65 alg noNE", forge(tb, header(k, set("alg", "noNE")), claims(nil), none), ErrAlgorithm},
		{"65 alg missing", forge(tb, header(k, del("alg")), claims(nil), sign), ErrAlgorithm},
		{"65 alg not a string", forge(tb, header(k, set("alg", 1)), claims(nil), sign), ErrAlgorithm},
		{"65 alg eddsa in lower case", forge(tb, header(k, set("alg", "eddsa")), claims(nil), sign), ErrAlgorithm},
		{"65 HS256 keyed with the public key", forge(tb, header(k, set("alg", "HS256")), claims(nil), hs256(k.Public())), ErrAlgorithm},
		{"65 HS256 keyed with the JWK x", forge(tb, header(k, set("alg", "HS256")), claims(nil), hs256([]byte(b64(k.Public())))), ErrAlgorithm},
		{"65 RS256", forge(tb, header(k, set("alg", "RS256")), claims(nil), func(in []byte) []byte {
			h := sha256.Sum256(in)
			s, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, h[:])
			if err != nil {
				tb.Fatal(err)
			}
			return s
		}), ErrAlgorithm},
		{"65 ES256", forge(tb, header(k, set("alg", "ES256")), claims(nil), func(in []byte) []byte {
			h := sha256.Sum256(in)
			r, s, err := ecdsa.Sign(rand.Reader, ecKey, h[:])
			if err != nil {
				tb.Fatal(err)
			}
			return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		}), ErrAlgorithm},

		{"66 header alg EdDSA, JWK alg ES256", mustSign(tb, f.mislabeled, validClaims()), ErrAlgorithm},
		{"66 JWK without alg is not used", mustSign(tb, f.noAlg, validClaims()), ErrUnknownKey},

		{"67 wrong iss", forge(tb, header(k, nil), claims(set("iss", "https://evil.test")), sign), ErrIssuer},
		{"67 iss differing in case", forge(tb, header(k, nil), claims(set("iss", strings.ToUpper(testIssuer))), sign), ErrIssuer},
		{"67 missing iss", forge(tb, header(k, nil), claims(del("iss")), sign), ErrIssuer},
		{"67 signed by another issuer's key", mustSign(tb, f.other, validClaims()), ErrUnknownKey},
		{"67 another key claiming our kid", forge(tb, header(k, nil), claims(nil), edSign(f.other)), ErrSignature},

		{"68 missing aud", forge(tb, header(k, nil), claims(del("aud")), sign), ErrAudience},
		{"68 empty aud", forge(tb, header(k, nil), claims(set("aud", "")), sign), ErrAudience},
		{"68 wrong aud", forge(tb, header(k, nil), claims(set("aud", "mqtt://broker.trackgate.test")), sign), ErrAudience},
		{"68 aud as a string", forge(tb, header(k, nil), claims(set("aud", testAudience)), sign), nil},

		{"69 typ JWT", forge(tb, header(k, set("typ", "JWT")), claims(nil), sign), ErrType},
		{"69 typ missing", forge(tb, header(k, del("typ")), claims(nil), sign), ErrType},
		{"69 typ not a string", forge(tb, header(k, set("typ", []string{Type})), claims(nil), sign), ErrType},
		{"69 typ application/at+jwt", forge(tb, header(k, set("typ", "application/at+jwt")), claims(nil), sign), nil},
		{"69 typ AT+JWT", forge(tb, header(k, set("typ", "AT+JWT")), claims(nil), sign), nil},
		{"69 ID token: typ JWT, aud a client id", forge(tb, header(k, set("typ", "JWT")), claims(set("aud", testClientID)), sign), ErrType},
		{"69 aud a client id", forge(tb, header(k, nil), claims(set("aud", testClientID)), sign), ErrAudience},

		{"70 missing exp", forge(tb, header(k, nil), claims(del("exp")), sign), ErrMissingClaim},
		{"70 expired beyond leeway", forge(tb, header(k, nil), claims(twice(set("exp", now-31), set("iat", now-600))), sign), ErrExpired},
		{"70 expired inside leeway", forge(tb, header(k, nil), claims(twice(set("exp", now-20), set("iat", now-600))), sign), nil},
		{"70 nbf in the future", forge(tb, header(k, nil), claims(set("nbf", now+300)), sign), ErrNotYetValid},
		{"70 nbf inside leeway", forge(tb, header(k, nil), claims(set("nbf", now+20)), sign), nil},
		{"70 iat in the future", forge(tb, header(k, nil), claims(set("iat", now+300)), sign), ErrNotYetValid},
		{"70 iat inside leeway", forge(tb, header(k, nil), claims(set("iat", now+20)), sign), nil},
		{"70 exp not a number", forge(tb, header(k, nil), claims(set("exp", "tomorrow")), sign), ErrMalformed},

		{"71 crit exp", forge(tb, header(k, set("crit", []string{"exp"})), claims(set("exp", now+60)), sign), ErrCritical},
		{"71 crit b64", forge(tb, header(k, twice(set("crit", []string{"b64"}), set("b64", false))), claims(nil), sign), ErrCritical},
		{"71 crit empty", forge(tb, header(k, set("crit", []string{})), claims(nil), sign), ErrCritical},

		{"72 jku", forge(tb, header(k, set("jku", "https://evil.test/jwks.json")), claims(nil), sign), ErrMalformed},
		{"72 x5u", forge(tb, header(k, set("x5u", "https://evil.test/cert.pem")), claims(nil), sign), ErrMalformed},
		{"72 jwk", forge(tb, header(f.other, set("jwk", map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(f.other.Public())})), claims(nil), edSign(f.other)), ErrMalformed},
		{"72 x5c", forge(tb, header(k, set("x5c", []string{"MIIBszCCAVmgAwIBAgIU"})), claims(nil), sign), ErrMalformed},

		{"73 kid SQL injection", forge(tb, header(k, set("kid", "x' OR '1'='1'; DROP TABLE keys; --")), claims(nil), sign), ErrUnknownKey},
		{"73 kid path traversal", forge(tb, header(k, set("kid", "../../../../etc/passwd")), claims(nil), sign), ErrUnknownKey},
		{"73 kid NUL", forge(tb, header(k, set("kid", k.ID+"\x00")), claims(nil), sign), ErrUnknownKey},
		{"73 kid 257 bytes", forge(tb, header(k, set("kid", strings.Repeat("k", MaxKIDLen+1))), claims(nil), sign), ErrUnknownKey},
		{"73 kid not a string", forge(tb, header(k, set("kid", 7)), claims(nil), sign), ErrUnknownKey},
		{"73 kid empty", forge(tb, header(k, set("kid", "")), claims(nil), sign), ErrUnknownKey},
		{"73 kid missing", forge(tb, header(k, del("kid")), claims(nil), sign), ErrUnknownKey},

		{"74 corrupted signature", head + "." + payload + "." + string(flipped), ErrSignature},
		{"74 truncated signature", head + "." + payload + "." + sig[:40], ErrSignature},
		{"74 empty signature", head + "." + payload + ".", ErrSignature},
		{"74 stray bits in the signature", head + "." + payload + "." + straySig, ErrMalformed},
		{"74 payload of another token", head + "." + strings.Split(mustSign(tb, k, validClaims()), ".")[1] + "." + sig, ErrSignature},
		{"74 extra segment", good + "." + sig, ErrMalformed},
		{"74 extra empty segment", good + ".", ErrMalformed},
		{"74 two segments", head + "." + payload, ErrMalformed},
		{"74 padding", head + "." + payload + "." + sig + "==", ErrMalformed},
		{"74 padded header", head + "=." + payload + "." + sig, ErrMalformed},
		{"74 JWS JSON serialization", jwsJSON(tb, good), ErrMalformed},
		{"74 white space", good + "\n", ErrMalformed},
		{"74 Bearer prefix", "Bearer " + good, ErrMalformed},
		{"74 standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", ErrMalformed},
		{"74 header not JSON", b64([]byte("alg=EdDSA")) + "." + payload + "." + sig, ErrMalformed},
		{"74 header JSON null", b64([]byte("null")) + "." + payload + "." + sig, ErrAlgorithm},
		{"74 payload not JSON", forge(tb, header(k, nil), "not an object", sign), ErrMalformed},
		{"74 empty payload", head + ".." + sig, ErrMalformed},
		{"74 empty", "", ErrMalformed},

		{"75 1 MiB", strings.Repeat("A", 1<<20), ErrTooLarge},
		{"75 one byte over 8 KiB", head + "." + strings.Repeat("A", DefaultMaxSize-len(head)-len(sig)-1) + "." + sig, ErrTooLarge},

		{"revoked jti", mustSign(tb, k, withRevoked), ErrRevoked},
	}
}

// jwsJSON rewrites a compact JWS in the flattened JWS JSON serialization.
func jwsJSON(tb testing.TB, compact string) string {
	tb.Helper()
	p := strings.Split(compact, ".")
	b, err := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// allErrors are the errors Verify wraps; a rejection wraps exactly one.
var allErrors = []error{ErrMalformed, ErrTooLarge, ErrSignature, ErrExpired, ErrNotYetValid, ErrIssuer,
	ErrAudience, ErrType, ErrRevoked, ErrUnknownKey, ErrAlgorithm, ErrCritical, ErrMissingClaim}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	for _, tc := range f.cases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := f.v.Verify(ctx, tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want it accepted", err)
				}
				if c.Subject != "device-42" || c.ClientID != testClientID || !c.HasScope("tracks:read") {
					t.Fatalf("claims %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Fatalf("rejected token returned claims %+v", c)
			}
			var wrapped []error
			for _, e := range allErrors {
				if errors.Is(err, e) {
					wrapped = append(wrapped, e)
				}
			}
			if len(wrapped) != 1 {
				t.Fatalf("Verify: %v wraps %v, want exactly one package error", err, wrapped)
			}
		})
	}
}

// TestVerifyReturnsTheClaims checks items 54, 55 and 60 end to end: the
// claims Sign was given come back whole, and the header is the one the
// checklist asks for, with a kid present in the JWKS.
func TestVerifyReturnsTheClaims(t *testing.T) {
	f := newFixture(t)
	want := validClaims()
	tok := mustSign(t, f.key, want)

	got, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("claims\n got %s\nwant %s", gotJSON, wantJSON)
	}
	for _, member := range []string{`"iss"`, `"sub"`, `"aud"`, `"exp"`, `"iat"`, `"jti"`, `"client_id"`, `"scope"`} {
		if !strings.Contains(string(gotJSON), member) {
			t.Errorf("54: claims lack %s: %s", member, gotJSON)
		}
	}

	h, err := segment.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(h, &hdr); err != nil {
		t.Fatal(err)
	}
	if len(hdr) != 3 || hdr["alg"] != "EdDSA" || hdr["typ"] != "at+jwt" || hdr["kid"] != f.key.ID {
		t.Fatalf("55/60: header %s, want exactly alg EdDSA, typ at+jwt, kid %s", h, f.key.ID)
	}
	if _, ok := f.v.keys.Load().algs[f.key.ID]; !ok {
		t.Fatalf("60: kid %s not in the JWKS the verifier fetched", f.key.ID)
	}
}

// TestItem75TooLargeIsCheap checks that an oversized token is rejected
// before anything is decoded: no allocation grows with it.
func TestItem75TooLargeIsCheap(t *testing.T) {
	f := newFixture(t)
	huge := strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 50_000)
	ctx := context.Background()
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := f.v.Verify(ctx, huge); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Verify: %v, want ErrTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 1024 {
		t.Fatalf("%d bytes allocated to reject a %d-byte token, want under 1 KiB", perRun, len(huge))
	}
}

// TestVerifierConfig checks that NewVerifier refuses a config it cannot
// honour, naming the key.
func TestVerifierConfig(t *testing.T) {
	s := newJWKSServer(t, mustKey(t))
	for _, tc := range []struct {
		name string
		edit func(*VerifierConfig)
		want string
	}{
		{"no JWKSURL", func(c *VerifierConfig) { c.JWKSURL = "" }, "JWKSURL"},
		{"file JWKSURL", func(c *VerifierConfig) { c.JWKSURL = "file:///etc/jwks.json" }, "JWKSURL"},
		{"no Issuer", func(c *VerifierConfig) { c.Issuer = "" }, "Issuer"},
		{"no Audience", func(c *VerifierConfig) { c.Audience = "" }, "Audience"},
		{"Leeway over policy", func(c *VerifierConfig) { c.Leeway = 61 * time.Second }, "Leeway"},
		{"negative Leeway", func(c *VerifierConfig) { c.Leeway = -time.Second }, "Leeway"},
		{"negative MaxSize", func(c *VerifierConfig) { c.MaxSize = -1 }, "MaxSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := startVerifier(t, s, tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewVerifier: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		v := newTestVerifier(t, s, nil)
		c := v.cfg
		if c.Type != Type || c.Leeway != DefaultLeeway || c.MaxSize != DefaultMaxSize || c.Refresh != DefaultRefresh ||
			c.UnknownKIDRefresh != DefaultUnknownKIDRefresh || c.HTTPClient.Timeout != DefaultHTTPTimeout {
			t.Fatalf("defaults: %+v", c)
		}
	})
}
