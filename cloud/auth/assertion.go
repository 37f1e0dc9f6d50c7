package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"trackgate/cloud/store"
)

// AssertionType is the client_assertion_type of private_key_jwt (RFC 7523
// §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLife is the longest an assertion may live (policy: RFC 7523
// leaves it open), which also bounds the replay guard's memory.
const maxAssertionLife = 5 * time.Minute

// errDeviceKey is a tracker key that cannot be registered.
var errDeviceKey = errors.New("bad device key")

// parseClientJWK checks a client's public key, a JWK of an ES256 (P-256)
// or Ed25519 key without private parts, and returns it as stored.
func parseClientJWK(raw []byte) (string, error) {
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return "", fmt.Errorf("%w: JWK: %v", errDeviceKey, err)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := fields[private]; ok {
			return "", fmt.Errorf("%w: the JWK holds private key material (%q): give the public key only; the private key never leaves the device", errDeviceKey, private)
		}
	}
	if _, err := clientKey(string(raw)); err != nil {
		return "", fmt.Errorf("%w: %v", errDeviceKey, err)
	}
	out, _ := json.Marshal(fields)
	return string(out), nil
}

// clientKey returns the public key of a stored JWK and the one algorithm
// assertions signed with it may use.
func clientKey(jwk string) (jwtKey, error) {
	k, err := jwkset.NewJWKFromRawJSON(json.RawMessage(jwk), jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return jwtKey{}, fmt.Errorf("JWK: %w", err)
	}
	switch pub := k.Key().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return jwtKey{}, errors.New("JWK: an EC key must be on P-256 (ES256)")
		}
		return jwtKey{key: pub, alg: jwt.SigningMethodES256.Alg()}, nil
	case ed25519.PublicKey:
		return jwtKey{key: pub, alg: jwt.SigningMethodEdDSA.Alg()}, nil
	}
	return jwtKey{}, fmt.Errorf("JWK: key type %T: use an ES256 (EC P-256) or Ed25519 key", k.Key())
}

type jwtKey struct {
	key any
	alg string
}

// assertionClient authenticates a client by its assertion (private_key_jwt,
// RFC 7523 §3): signed by the client's registered key with its algorithm,
// iss and sub the client id, aud this server (its issuer or token
// endpoint), an exp at most 5 minutes ahead, and a jti not seen before.
func (s *Server) assertionClient(ctx context.Context, form url.Values) (*store.Client, *oauthError) {
	fail := func(format string, a ...any) (*store.Client, *oauthError) {
		return nil, errorf("invalid_client", format, a...)
	}
	if form.Get("client_assertion_type") != AssertionType {
		return fail("client_assertion_type must be %s", AssertionType)
	}
	raw := form.Get("client_assertion")
	if len(raw) > 8<<10 {
		return fail("client assertion too large")
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil || claims.Issuer == "" {
		return fail("malformed client assertion")
	}
	id := claims.Issuer
	if form.Has("client_id") && form.Get("client_id") != id {
		return fail("client_id differs from the assertion's issuer")
	}
	c, err := s.st.Client(ctx, id)
	if err != nil || c.JWK == "" {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("client lookup", "err", err)
		}
		return fail("unknown client, or one without a registered key")
	}
	key, err := clientKey(c.JWK)
	if err != nil {
		return nil, s.serverError("client key", err)
	}
	now := s.now()
	_, err = jwt.NewParser(
		jwt.WithValidMethods([]string{key.alg}),
		jwt.WithIssuer(id), jwt.WithSubject(id),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return now }),
	).ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return key.key, nil })
	switch {
	case err != nil:
		return fail("client assertion: %v", err)
	case !audienceIs(claims.Audience, s.cfg.Issuer, s.url("/token")):
		return fail("client assertion: aud must be %s or %s", s.cfg.Issuer, s.url("/token"))
	case claims.ID == "":
		return fail("client assertion: jti is required")
	case claims.ExpiresAt.Sub(now) > maxAssertionLife:
		return fail("client assertion: exp more than %v ahead", maxAssertionLife)
	}
	if err := s.st.UseAssertionID(ctx, id, claims.ID, claims.ExpiresAt.Time); err != nil {
		if errors.Is(err, store.ErrUsed) {
			return fail("client assertion replayed (jti seen before)")
		}
		return nil, s.serverError("assertion id", err)
	}
	return c, nil
}

// audienceIs reports whether aud names one of want.
func audienceIs(aud jwt.ClaimStrings, want ...string) bool {
	for _, a := range aud {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}
