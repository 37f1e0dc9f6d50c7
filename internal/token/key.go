package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"

	"github.com/golang-jwt/jwt/v5"
)

// pemType is the PEM block type of a PKCS#8 private key.
const pemType = "PRIVATE KEY"

// Key is one Ed25519 signing key with its key id (the JWS kid). It holds a
// secret: its String and LogValue show only the kid.
type Key struct {
	ID      string             // the kid: 1 to MaxKIDLen bytes, unique in the issuer's JWKS
	Private ed25519.PrivateKey // the signing key
}

// GenerateKey returns a new Ed25519 key whose kid is 128 random bits,
// base64url-encoded without padding.
func GenerateKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id) // crypto/rand.Read never returns an error
	return Key{ID: base64.RawURLEncoding.EncodeToString(id), Private: priv}, nil
}

// Public returns the public half of k.
func (k Key) Public() ed25519.PublicKey {
	return k.Private.Public().(ed25519.PublicKey)
}

// String returns the key id only, never the private key.
func (k Key) String() string { return "token.Key(" + k.ID + ")" }

// GoString returns the key id only, never the private key.
func (k Key) GoString() string { return k.String() }

// LogValue logs the key id only, never the private key.
func (k Key) LogValue() slog.Value { return slog.GroupValue(slog.String("kid", k.ID)) }

// check reports whether k has a usable key id and private key.
func (k Key) check() error {
	if k.ID == "" || len(k.ID) > MaxKIDLen {
		return fmt.Errorf("key id %q: want 1 to %d bytes", k.ID, MaxKIDLen)
	}
	if len(k.Private) != ed25519.PrivateKeySize {
		return fmt.Errorf("key %s: private key is %d bytes, want %d", k.ID, len(k.Private), ed25519.PrivateKeySize)
	}
	return nil
}

// MarshalPEM encodes the private key as a PKCS#8 "PRIVATE KEY" PEM block, for
// a file the caller writes with mode 0600. The kid is not part of it: the
// caller stores it beside the key (for example as the file name).
func (k Key) MarshalPEM() ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("key %s: marshal PKCS#8: %w", k.ID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// ParseKeyPEM decodes a key written by [Key.MarshalPEM] and gives it the key
// id id. The input must hold exactly one unencrypted PKCS#8 Ed25519 key.
func ParseKeyPEM(id string, data []byte) (Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, fmt.Errorf("key %s: no PEM block", id)
	}
	if block.Type != pemType || len(block.Headers) != 0 {
		return Key{}, fmt.Errorf("key %s: PEM block %q: want an unencrypted %q", id, block.Type, pemType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Key{}, fmt.Errorf("key %s: data after the PEM block", id)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("key %s: parse PKCS#8: %w", id, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("key %s: a %T, want an Ed25519 key", id, parsed)
	}
	k := Key{ID: id, Private: priv}
	if err := k.check(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// publicJWK is the JSON Web Key of an Ed25519 public key (RFC 8037 §2). It has
// no field for private material, so none can ever be published.
type publicJWK struct {
	KTY string `json:"kty"`
	CRV string `json:"crv"`
	X   string `json:"x"`
	KID string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS renders the JSON Web Key Set that the issuer serves at its jwks_uri:
// the public half of each key, in order, as kty "OKP", crv "Ed25519", x, kid,
// use "sig" and alg "EdDSA". Key ids must be unique.
func JWKS(keys []Key) ([]byte, error) {
	set := struct {
		Keys []publicJWK `json:"keys"`
	}{Keys: make([]publicJWK, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("JWKS: %w", err)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("JWKS: key id %q appears twice", k.ID)
		}
		seen[k.ID] = true
		set.Keys = append(set.Keys, publicJWK{
			KTY: "OKP",
			CRV: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(k.Public()),
			KID: k.ID,
			Use: "sig",
			Alg: Alg,
		})
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	return out, nil
}

// Sign returns the compact serialization of an access token with claims c,
// signed by k, with header {alg: EdDSA, typ: at+jwt, kid: k.ID}. It fills in
// nothing: the caller sets every claim, and Sign refuses claims that lack one
// [Verifier.Verify] requires (iss, sub, aud, exp, iat, jti, client_id).
func Sign(k Key, c *Claims) (string, error) {
	if err := k.check(); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	if c == nil {
		return "", errors.New("sign: nil claims")
	}
	if err := c.checkRequired(); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return sign(k, Type, c)
}

// IDClaims are the claims of an OpenID Connect ID token (OpenID Connect
// Core §2): its aud is the client, never a resource.
type IDClaims struct {
	jwt.RegisteredClaims          // iss, sub, aud (the client id), exp, iat, jti
	AuthTime             int64    `json:"auth_time,omitempty"`
	Nonce                string   `json:"nonce,omitempty"`
	AMR                  []string `json:"amr,omitempty"`
	AZP                  string   `json:"azp,omitempty"`
	PreferredUsername    string   `json:"preferred_username,omitempty"`
}

// IDType is the typ header of ID tokens, which tells them from access
// tokens.
const IDType = "JWT"

// SignID returns an ID token with claims c signed by k, with header
// {alg: EdDSA, typ: JWT, kid: k.ID}. A verifier of access tokens refuses
// it: its typ and aud differ.
func SignID(k Key, c *IDClaims) (string, error) {
	if err := k.check(); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	if c == nil || c.Issuer == "" || c.Subject == "" || len(c.Audience) == 0 || c.ExpiresAt == nil || c.IssuedAt == nil {
		return "", fmt.Errorf("sign ID token: %w: iss, sub, aud, exp and iat are required", ErrMissingClaim)
	}
	return sign(k, IDType, c)
}

func sign(k Key, typ string, c jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["typ"] = typ
	t.Header["kid"] = k.ID
	s, err := t.SignedString(k.Private)
	if err != nil {
		return "", fmt.Errorf("sign with key %s: %w", k.ID, err)
	}
	return s, nil
}
