// Package token issues and verifies trackgate's access tokens: JWTs signed
// with Ed25519 (JWS alg "EdDSA") whose header carries typ "at+jwt" and the
// signing key's kid (RFC 9068).
//
// The issuer (the cloud's authorization server) holds [Key]s, signs with
// [Sign] and publishes the public halves with [JWKS]. Every verifier (the
// broker's auth hook, the cloud's REST API) builds one [Verifier] that takes
// keys only from the issuer's jwks_uri, keeps them fresh in the background,
// optionally caches them on disk so an edge gateway keeps verifying while the
// issuer is unreachable, and checks each token against the verifier-side
// items of the auth checklist (alg allow-list, typ, crit, iss, aud, exp, nbf,
// iat, size cap, strict compact serialization).
package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Errors that [Verifier.Verify] wraps, so that callers can map a rejection to
// a response with errors.Is. Every one of them means "invalid_token" to an
// OAuth resource server (RFC 6750 §3.1).
var (
	ErrMalformed    = errors.New("malformed token")                          // not a compact JWS of a JSON header and JSON claims, or a jku, jwk, x5u or x5c header
	ErrTooLarge     = errors.New("token too large")                          // longer than MaxSize
	ErrSignature    = errors.New("invalid signature")                        // the signature does not verify with the kid's key
	ErrExpired      = errors.New("token expired")                            // exp passed, beyond the leeway
	ErrNotYetValid  = errors.New("token not yet valid")                      // nbf or iat in the future, beyond the leeway
	ErrIssuer       = errors.New("wrong or missing issuer")                  // iss is not exactly the Issuer
	ErrAudience     = errors.New("wrong or missing audience")                // the Audience is not in aud
	ErrType         = errors.New("wrong or missing token type")              // header typ is not the Type
	ErrRevoked      = errors.New("token revoked")                            // Revoked reported the jti
	ErrUnknownKey   = errors.New("unknown signing key")                      // no kid, or one the JWKS lacks after the refresh allowed
	ErrAlgorithm    = errors.New("algorithm not accepted")                   // header alg is not EdDSA, or the JWK's alg is not
	ErrCritical     = errors.New("critical header extension not understood") // any crit header: we understand no extension
	ErrMissingClaim = errors.New("required claim missing")                   // no exp, iat, sub, jti or client_id
)

// Alg is the only JWS algorithm trackgate signs with and accepts.
const Alg = "EdDSA"

// Type is the JWT header typ of an access token (RFC 9068 §2.1).
const Type = "at+jwt"

// MaxKIDLen is the longest key id, in bytes. A token naming a longer kid is
// rejected as an unknown key without looking it up.
const MaxKIDLen = 256

// Claims are the claims of an access token (RFC 9068 §2.2). [Sign] and
// [Verifier.Verify] require iss, sub, aud, exp, iat, jti and client_id; scope
// may be empty.
type Claims struct {
	jwt.RegisteredClaims          // iss, sub, aud, exp, iat, nbf, jti
	ClientID             string   `json:"client_id"`
	Scope                string   `json:"scope,omitempty"`     // space-separated
	AMR                  []string `json:"amr,omitempty"`       // authentication methods: "pwd", "otp"
	AuthTime             int64    `json:"auth_time,omitempty"` // Unix seconds of the user's sign-in
	// Owner is the name of the user a device token's device belongs to.
	Owner string `json:"owner,omitempty"`
	// Devices are the devices whose positions a person's broker token may
	// read (the live map): the ids the user owned when it was issued.
	Devices []string `json:"devices,omitempty"`
}

// HasScope reports whether s is one of the token's space-separated scopes.
func (c *Claims) HasScope(s string) bool {
	return s != "" && slices.Contains(c.Scopes(), s)
}

// Scopes returns the token's scopes, split at white space.
func (c *Claims) Scopes() []string {
	return strings.Fields(c.Scope)
}

// checkRequired returns an error wrapping ErrMissingClaim that names every
// required claim c lacks.
func (c *Claims) checkRequired() error {
	var missing []string
	if c.Issuer == "" {
		missing = append(missing, "iss")
	}
	if c.Subject == "" {
		missing = append(missing, "sub")
	}
	if len(c.Audience) == 0 || slices.Contains(c.Audience, "") {
		missing = append(missing, "aud")
	}
	if c.ExpiresAt == nil {
		missing = append(missing, "exp")
	}
	if c.IssuedAt == nil {
		missing = append(missing, "iat")
	}
	if c.ID == "" {
		missing = append(missing, "jti")
	}
	if c.ClientID == "" {
		missing = append(missing, "client_id")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingClaim, strings.Join(missing, ", "))
	}
	return nil
}
