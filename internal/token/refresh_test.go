package token

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		<-tick.C
	}
}

// TestItem72KeySourceHeadersNeverFetch forges tokens whose jku, x5u, jwk or
// x5c header points at a second server, or carries the forger's key: none is
// accepted, the second server gets no request, and the JWKS none either.
func TestItem72KeySourceHeadersNeverFetch(t *testing.T) {
	f := newFixture(t)
	var decoyHits atomic.Int64
	decoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		decoyHits.Add(1)
		doc, _ := JWKS([]Key{f.other})
		_, _ = w.Write(doc)
	}))
	defer decoy.Close()

	attacker := f.other
	jwk := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.Public()), "kid": attacker.ID, "alg": "EdDSA"}
	claims := claimsMap(t, nil)
	tokens := map[string]string{
		"jku with an unknown kid": forge(t, header(attacker, set("jku", decoy.URL+"/jwks.json")), claims, edSign(attacker)),
		"jku with our kid":        forge(t, header(f.key, set("jku", decoy.URL+"/jwks.json")), claims, edSign(attacker)),
		"x5u":                     forge(t, header(attacker, set("x5u", decoy.URL+"/cert.pem")), claims, edSign(attacker)),
		"jwk with an unknown kid": forge(t, header(attacker, set("jwk", jwk)), claims, edSign(attacker)),
		"jwk with our kid":        forge(t, header(f.key, set("jwk", jwk)), claims, edSign(attacker)),
		"x5c":                     forge(t, header(attacker, set("x5c", []string{"MIIBszCCAVmgAwIBAgIU"})), claims, edSign(attacker)),
	}
	before := f.jwks.requests.Load()
	for name, tok := range tokens {
		if c, err := f.v.Verify(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
	if n := decoyHits.Load(); n != 0 {
		t.Fatalf("the URL named in a header got %d requests, want 0", n)
	}
	if n := f.jwks.requests.Load() - before; n != 0 {
		t.Fatalf("forged key-source headers caused %d JWKS fetches, want 0", n)
	}
}

// TestItem73UnknownKIDFlood sends 1000 tokens with random and hostile kids,
// in ten waves of 100 at once: they cause at most one extra JWKS fetch within
// UnknownKIDRefresh, and none waits longer than its context.
func TestItem73UnknownKIDFlood(t *testing.T) {
	k := mustKey(t)
	s := newJWKSServer(t, k)
	v := newTestVerifier(t, s, func(c *VerifierConfig) { c.UnknownKIDRefresh = time.Hour })
	claims := claimsMap(t, nil)
	tokens := make([]string, 1000)
	for i := range tokens {
		kid := b64(randomID())
		switch i % 10 {
		case 1:
			kid = "' OR 1=1; --" + kid
		case 2:
			kid = "../../" + kid
		}
		tokens[i] = forge(t, header(k, set("kid", kid)), claims, edSign(k))
	}

	const timeout = 2 * time.Second
	before := s.requests.Load()
	var slow atomic.Int64
	for wave := range 10 {
		var wg sync.WaitGroup
		for _, tok := range tokens[wave*100 : (wave+1)*100] {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				start := time.Now()
				_, err := v.Verify(ctx, tok)
				if !errors.Is(err, ErrUnknownKey) {
					t.Errorf("Verify: %v, want ErrUnknownKey", err)
				}
				if time.Since(start) > timeout+500*time.Millisecond {
					slow.Add(1)
				}
			})
		}
		wg.Wait()
	}
	if n := s.requests.Load() - before; n > 1 {
		t.Fatalf("1000 unknown kids caused %d JWKS fetches, want at most 1", n)
	}
	if n := slow.Load(); n > 0 {
		t.Fatalf("%d requests waited longer than their context", n)
	}
	if _, err := v.Verify(context.Background(), mustSign(t, k, validClaims())); err != nil {
		t.Fatalf("a genuine token after the flood: %v", err)
	}
}

// TestItem73HangingJWKSDoesNotStall makes the JWKS endpoint hang: a token
// with an unknown kid waits no longer than its context, and a token with a
// known kid does not wait at all.
func TestItem73HangingJWKSDoesNotStall(t *testing.T) {
	k := mustKey(t)
	s := newJWKSServer(t, k)
	v := newTestVerifier(t, s, func(c *VerifierConfig) { c.UnknownKIDRefresh = time.Hour })
	release := s.hangRequests()
	defer release()

	unknown := mustSign(t, mustKey(t), validClaims())
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		_, err := v.Verify(ctx, unknown)
		cancel()
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify: %v, want ErrUnknownKey", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("an unknown kid waited %v on a hanging JWKS, its context allowed 100ms", d)
		}
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(done, unknown); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify with a done context: %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(done, mustSign(t, k, validClaims())); err != nil {
		t.Fatalf("a known kid while the JWKS hangs: %v", err)
	}
	if n := s.requests.Load(); n > 2 {
		t.Fatalf("%d JWKS requests, want the first and at most one for the unknown kid", n)
	}
}

// TestRotation checks item 61 from the verifier's side: a key added to the
// JWKS is picked up on its first token (within the rate limit) and by the
// background refresh, and a removed key stops verifying after a refresh.
func TestRotation(t *testing.T) {
	t.Run("unknown kid", func(t *testing.T) {
		a, b, c := mustKey(t), mustKey(t), mustKey(t)
		s := newJWKSServer(t, a)
		v := newTestVerifier(t, s, func(cfg *VerifierConfig) { cfg.UnknownKIDRefresh = time.Hour })

		s.setKeys(t, a, b)
		if _, err := v.Verify(context.Background(), mustSign(t, b, validClaims())); err != nil {
			t.Fatalf("token of a key just added: %v", err)
		}
		if n := s.requests.Load(); n != 2 {
			t.Fatalf("%d JWKS requests, want 2 (start, unknown kid)", n)
		}
		s.setKeys(t, a, b, c)
		if _, err := v.Verify(context.Background(), mustSign(t, c, validClaims())); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("second new key within UnknownKIDRefresh: %v, want ErrUnknownKey", err)
		}
		if n := s.requests.Load(); n != 2 {
			t.Fatalf("%d JWKS requests, want no more within UnknownKIDRefresh", n)
		}
	})

	t.Run("unknown kid after the rate limit", func(t *testing.T) {
		a, b, c := mustKey(t), mustKey(t), mustKey(t)
		s := newJWKSServer(t, a)
		v := newTestVerifier(t, s, func(cfg *VerifierConfig) { cfg.UnknownKIDRefresh = 50 * time.Millisecond })
		s.setKeys(t, a, b)
		if _, err := v.Verify(context.Background(), mustSign(t, b, validClaims())); err != nil {
			t.Fatal(err)
		}
		s.setKeys(t, a, b, c)
		tok := mustSign(t, c, validClaims())
		eventually(t, 5*time.Second, "the third key never verified", func() bool {
			_, err := v.Verify(context.Background(), tok)
			return err == nil
		})
	})

	t.Run("background refresh", func(t *testing.T) {
		a, b := mustKey(t), mustKey(t)
		s := newJWKSServer(t, a)
		v := newTestVerifier(t, s, func(cfg *VerifierConfig) {
			cfg.Refresh = 20 * time.Millisecond
			cfg.UnknownKIDRefresh = time.Hour
		})
		// Spend the one unknown-kid fetch, so that only the background
		// refresh can bring the new key.
		if _, err := v.Verify(context.Background(), mustSign(t, mustKey(t), validClaims())); !errors.Is(err, ErrUnknownKey) {
			t.Fatal(err)
		}
		s.setKeys(t, a, b)
		tokB := mustSign(t, b, validClaims())
		eventually(t, 5*time.Second, "the added key never verified", func() bool {
			_, err := v.Verify(context.Background(), tokB)
			return err == nil
		})

		s.setKeys(t, b)
		tokA := mustSign(t, a, validClaims())
		eventually(t, 5*time.Second, "the removed key still verifies", func() bool {
			_, err := v.Verify(context.Background(), tokA)
			return errors.Is(err, ErrUnknownKey)
		})
		if _, err := v.Verify(context.Background(), tokB); err != nil {
			t.Fatalf("the remaining key: %v", err)
		}
	})

	t.Run("failed refresh keeps the keys", func(t *testing.T) {
		a := mustKey(t)
		s := newJWKSServer(t, a)
		v := newTestVerifier(t, s, func(cfg *VerifierConfig) { cfg.Refresh = 10 * time.Millisecond })
		s.fail.Store(true)
		n := s.requests.Load()
		eventually(t, 5*time.Second, "no refresh attempted", func() bool { return s.requests.Load() > n })
		if _, err := v.Verify(context.Background(), mustSign(t, a, validClaims())); err != nil {
			t.Fatalf("after a failed refresh: %v", err)
		}
		s.fail.Store(false)
		s.setDoc([]byte(`{"keys":[]}`))
		n = s.requests.Load()
		eventually(t, 5*time.Second, "no refresh attempted", func() bool { return s.requests.Load() > n+1 })
		if _, err := v.Verify(context.Background(), mustSign(t, a, validClaims())); err != nil {
			t.Fatalf("after an empty JWKS: %v", err)
		}
	})
}

// TestCache checks CacheFile: written with mode 0600 and nothing else left in
// its directory, used when the issuer is down, ignored when corrupt or
// writable by others.
func TestCache(t *testing.T) {
	k := mustKey(t)
	s := newJWKSServer(t, k)
	dir := t.TempDir()
	cache := filepath.Join(dir, "jwks.json")
	withCache := func(c *VerifierConfig) { c.CacheFile = cache }
	tok := mustSign(t, k, validClaims())

	t.Run("written", func(t *testing.T) {
		newTestVerifier(t, s, withCache)
		fi, err := os.Stat(cache)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("cache mode %v, want 0600", fi.Mode().Perm())
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			t.Fatalf("directory holds %v (%v), want the cache alone", entries, err)
		}
	})

	t.Run("used while the issuer is down", func(t *testing.T) {
		s.fail.Store(true)
		defer s.fail.Store(false)
		v := newTestVerifier(t, s, withCache)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("with the cached keys: %v", err)
		}
		if _, err := startVerifier(t, s, nil); err == nil {
			t.Fatal("NewVerifier without cache and with the issuer down: no error")
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		if err := os.WriteFile(cache, []byte(`{"keys":[{"kty":`), 0o600); err != nil {
			t.Fatal(err)
		}
		s.fail.Store(true)
		if _, err := startVerifier(t, s, withCache); err == nil {
			t.Fatal("corrupt cache and the issuer down: no error")
		}
		s.fail.Store(false)
		v := newTestVerifier(t, s, withCache)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(cache)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := JWKS([]Key{k}); string(raw) != string(want) {
			t.Fatalf("cache not rewritten: %s", raw)
		}
	})

	t.Run("writable by others", func(t *testing.T) {
		if err := os.Chmod(cache, 0o666); err != nil {
			t.Fatal(err)
		}
		s.fail.Store(true)
		defer s.fail.Store(false)
		if _, err := startVerifier(t, s, withCache); err == nil {
			t.Fatal("cache writable by others was trusted")
		}
	})
}
