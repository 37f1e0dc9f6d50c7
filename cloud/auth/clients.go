package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"trackgate/cloud/store"
)

// Grant types.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Scopes. Each belongs to one audience: a token is for the API or for the
// broker, never both.
const (
	ScopeIngest          = "ingest"           // mqtt: subscribe to every device's positions (the cloud's ingest bridge)
	ScopeRevocationsRead = "revocations:read" // api: read the revoked token ids (verifiers)
	ScopeIntrospect      = "introspect"       // the client may call /introspect (a resource server); never in a token
	ScopeTracksRead      = "tracks:read"      // api
	ScopeTracksWrite     = "tracks:write"     // api
	ScopeDevicesRead     = "devices:read"     // api
	ScopeDevicesWrite    = "devices:write"    // api
)

// mqttScopes are the scopes of broker tokens; every other token scope is an
// API scope.
var mqttScopes = []string{ScopeDevice, ScopeIngest}

// ServiceScopes are the scopes of a service client made by `cloud client
// add --service` unless others are given.
var ServiceScopes = []string{ScopeIngest, ScopeRevocationsRead, ScopeIntrospect}

// seededClients are the first-party clients every cloud has.
var seededClients = []store.Client{
	{ID: "trackctl", Name: "trackctl (command line)", RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode},
		Scopes:     []string{ScopeTracksRead, ScopeTracksWrite, ScopeDevicesRead, ScopeDevicesWrite}},
	{ID: "gateway", Name: "trackgate gateway", GrantTypes: []string{GrantDeviceCode, GrantRefreshToken},
		Scopes: []string{ScopeDevicesRead, ScopeDevicesWrite, ScopeRevocationsRead}},
	{ID: "phone", Name: "trackgate phone app", RedirectURIs: []string{"trackgate:/callback"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken},
		Scopes:     []string{ScopeTracksRead, ScopeTracksWrite, ScopeDevicesRead}},
}

// ClientStore keeps OAuth clients.
type ClientStore interface {
	CreateClient(ctx context.Context, c *store.Client) error
	Client(ctx context.Context, id string) (*store.Client, error)
}

// seedClients registers the first-party clients that are missing.
func (s *Server) seedClients(ctx context.Context) error {
	for _, c := range seededClients {
		c := c
		if err := s.st.CreateClient(ctx, &c); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("seed client %s: %w", c.ID, err)
		}
	}
	return nil
}

// AddServiceClient registers a confidential client for the client
// credentials grant with the given scopes (ServiceScopes when none) and
// returns its id and secret; only the secret's hash is kept.
func (s *Server) AddServiceClient(ctx context.Context, name string, scopes []string) (id, secret string, err error) {
	if !validUserName(name) {
		return "", "", fmt.Errorf("client name %q: 1-64 characters of A-Z a-z 0-9 . _ @ -", name)
	}
	if len(scopes) == 0 {
		scopes = ServiceScopes
	}
	for _, sc := range scopes {
		if !knownScope(sc) {
			return "", "", fmt.Errorf("unknown scope %q", sc)
		}
	}
	secret = "tgs_" + newSecret()
	c := &store.Client{ID: name, Name: name, SecretHash: hashSecret(secret), GrantTypes: []string{GrantClientCredentials}, Scopes: scopes}
	if err := s.st.CreateClient(ctx, c); err != nil {
		return "", "", err
	}
	return c.ID, secret, nil
}

func knownScope(sc string) bool {
	return slices.Contains([]string{ScopeDevice, ScopeIngest, ScopeRevocationsRead, ScopeIntrospect,
		ScopeTracksRead, ScopeTracksWrite, ScopeDevicesRead, ScopeDevicesWrite}, sc)
}

// newSecret returns 256 random bits, base64url.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret hashes a client secret for storage. Secrets are 256 random
// bits, so a fast hash is enough: there is nothing to guess.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// secretMatches compares a presented secret with a stored hash in constant
// time.
func secretMatches(hash, secret string) bool {
	got := hashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1 && hash != ""
}

// audienceOf returns the audience of a token with these scopes: the broker's
// for broker scopes, the API's otherwise; ok is false for a mix.
func (s *Server) audienceOf(scopes []string) (string, bool) {
	mqtt, api := 0, 0
	for _, sc := range scopes {
		if slices.Contains(mqttScopes, sc) {
			mqtt++
		} else {
			api++
		}
	}
	switch {
	case mqtt > 0 && api > 0:
		return "", false
	case mqtt > 0:
		return AudienceMQTT, true
	}
	return s.APIAudience(), true
}

// APIAudience is the audience of API tokens: the issuer's /api/ URL.
func (s *Server) APIAudience() string { return strings.TrimSuffix(s.cfg.Issuer, "/") + "/api/" }
