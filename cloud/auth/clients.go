package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"trackgate/cloud/store"
	"trackgate/internal/atomicfile"
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
	ScopeOperator        = "operator"         // mqtt: every topic, $SYS included (monitoring)
	ScopeRevocationsRead = "revocations:read" // api: read the revoked token ids (verifiers)
	ScopeIntrospect      = "introspect"       // the client may call /introspect (a resource server); never in a token
	ScopeTracksRead      = "tracks:read"      // api
	ScopeTracksWrite     = "tracks:write"     // api
	ScopeDevicesRead     = "devices:read"     // api
	ScopeDevicesWrite    = "devices:write"    // api
	ScopeBridge          = "bridge"           // mqtt: publish any device's positions and status (the firmware-bridge)
	ScopeDevicesResolve  = "devices:resolve"  // api: look devices up by protocol identifier (the firmware-bridge)
	ScopeGateway         = "gateway"          // mqtt: publish the positions, status and session messages of the devices the token's devices claim lists (a person's enrolled gateway)
)

// mqttScopes are the scopes of broker tokens; every other token scope is an
// API scope.
var mqttScopes = []string{ScopeDevice, ScopeIngest, ScopeOperator, ScopeBridge, ScopeGateway}

// ServiceScopes are the scopes of a service client made by `cloud client
// add --service` unless others are given.
var ServiceScopes = []string{ScopeIngest, ScopeRevocationsRead, ScopeIntrospect}

// BridgeScopes are the scopes of a firmware-bridge's service client: a
// broker token to publish the devices' positions, an API token to find
// devices by protocol identifier.
var BridgeScopes = []string{ScopeBridge, ScopeDevicesResolve}

// userAPIScopes are the scopes of people's API tokens.
var userAPIScopes = []string{ScopeOpenID, ScopeTracksRead, ScopeTracksWrite, ScopeDevicesRead, ScopeDevicesWrite}

// seededClients are the first-party public clients every cloud has; the
// website, a confidential client, is seeded with its secret by
// seedClients.
var seededClients = []store.Client{
	{ID: "trackctl", Name: "trackctl (command line)", RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/callback"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode}, Scopes: userAPIScopes},
	{ID: "gateway", Name: "trackgate gateway", GrantTypes: []string{GrantDeviceCode, GrantRefreshToken},
		Scopes: []string{ScopeDevicesRead, ScopeDevicesWrite, ScopeRevocationsRead, ScopeGateway}},
	{ID: "phone", Name: "trackgate phone app", RedirectURIs: []string{"trackgate:/callback"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: userAPIScopes},
}

// WebsiteClientID is the client id of the cloud's own website (a
// confidential client: a backend for its front end).
const WebsiteClientID = "website"

// websiteSecretFile holds the website's client secret in the data
// directory (mode 0600); the store keeps only its hash.
const websiteSecretFile = "website-client.secret"

// ClientStore keeps OAuth clients.
type ClientStore interface {
	CreateClient(ctx context.Context, c *store.Client) error
	PutClient(ctx context.Context, c *store.Client) error
	Client(ctx context.Context, id string) (*store.Client, error)
}

// seedClients registers the first-party clients, or brings them up to
// date: the public ones, and the website with its secret from dir (made
// there when missing).
func (s *Server) seedClients(ctx context.Context, dir string) error {
	for _, c := range seededClients {
		if err := s.st.PutClient(ctx, &c); err != nil {
			return fmt.Errorf("seed client %s: %w", c.ID, err)
		}
	}
	path := filepath.Join(dir, websiteSecretFile)
	secret, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret = []byte("tgs_" + newSecret())
		err = atomicfile.Write(path, secret)
	}
	if err != nil {
		return fmt.Errorf("website client secret: %w", err)
	}
	s.websiteSecret = strings.TrimSpace(string(secret))
	return s.st.PutClient(ctx, &store.Client{ID: WebsiteClientID, Name: "trackgate website", SecretHash: hashSecret(s.websiteSecret),
		RedirectURIs: []string{s.url("/auth/callback")}, GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken},
		Scopes: userAPIScopes})
}

// Website returns the website's client id and secret.
func (s *Server) Website() (id, secret string) { return WebsiteClientID, s.websiteSecret }

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

// AddAppClient registers a client that acts for people through the
// authorization code flow with PKCE (and refresh tokens) at the given
// redirect URIs, with scopes (all user scopes when none). A confidential
// client gets a secret, returned once; only its hash is kept.
func (s *Server) AddAppClient(ctx context.Context, name string, redirectURIs, scopes []string, confidential bool) (id, secret string, err error) {
	if !validUserName(name) {
		return "", "", fmt.Errorf("client name %q: 1-64 characters of A-Z a-z 0-9 . _ @ -", name)
	}
	if len(redirectURIs) == 0 {
		return "", "", errors.New("give at least one redirect URI")
	}
	for _, u := range redirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return "", "", err
		}
	}
	if len(scopes) == 0 {
		scopes = userAPIScopes
	}
	for _, sc := range scopes {
		if !slices.Contains(userAPIScopes, sc) {
			return "", "", fmt.Errorf("scope %q is not for people's tokens (%s)", sc, strings.Join(userAPIScopes, " "))
		}
	}
	c := &store.Client{ID: name, Name: name, RedirectURIs: redirectURIs, Scopes: scopes,
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}}
	if confidential {
		secret = "tgs_" + newSecret()
		c.SecretHash = hashSecret(secret)
	}
	if err := s.st.CreateClient(ctx, c); err != nil {
		return "", "", err
	}
	return c.ID, secret, nil
}

// checkRedirectURI refuses a redirect URI that could leak codes (RFC 9700
// §2.1, §4.1.3; RFC 8252 §7): it must be https, http on a loopback address
// (any port will match), or an app's private-use scheme; never a fragment,
// a wildcard or "localhost".
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs():
		return fmt.Errorf("redirect URI %q: not an absolute URI", raw)
	case strings.Contains(raw, "#"):
		return fmt.Errorf("redirect URI %q: no fragment allowed", raw)
	case strings.Contains(raw, "*"):
		return fmt.Errorf("redirect URI %q: no wildcards: URIs match exactly", raw)
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		if u.Port() != "" {
			return fmt.Errorf("redirect URI %q: register loopback URIs without a port: any port matches", raw)
		}
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("redirect URI %q: plain http only on 127.0.0.1 or [::1] (not localhost)", raw)
	case u.Scheme == "javascript" || u.Scheme == "data" || u.Scheme == "file":
		return fmt.Errorf("redirect URI %q: scheme %s not allowed", raw, u.Scheme)
	}
	return nil // a native app's private-use scheme
}

func knownScope(sc string) bool {
	return slices.Contains(userAPIScopes, sc) || slices.Contains(mqttScopes, sc) || sc == ScopeRevocationsRead || sc == ScopeIntrospect || sc == ScopeDevicesResolve
}

// newSecret returns 256 random bits, base64url.
func newSecret() string {
	b := make([]byte, 32)
	randRead(b)
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
