// Package auth is the cloud's authorization server: users (argon2id
// passwords, TOTP), signing keys with rotation and their JWKS, and the
// tokens devices use as their MQTT password. Tokens are issued and checked
// with trackgate/internal/token.
package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"trackgate/cloud/store"
	"trackgate/internal/token"
	"trackgate/internal/topic"
)

// Audiences of the tokens the cloud issues.
const (
	AudienceMQTT = "mqtt" // the broker: device tokens
)

// ScopeDevice is the scope of a device token: publish its own positions,
// status and session, subscribe to its commands.
const ScopeDevice = "device"

// Config configures the authorization server.
type Config struct {
	// Issuer is the server's URL, the iss of every token.
	Issuer string
	// OnRevoke, if set, is called after the server revoked a token a
	// broker may hold (a device's, or an access token at /revoke), so that
	// brokers can be told to fetch the revocation list at once.
	OnRevoke func()
	// DeviceTokenTTL is the lifetime of device tokens (default 365 days):
	// long, for apps that cannot refresh, and revocable.
	DeviceTokenTTL time.Duration
	// RotationLead is how long a new signing key is published before it
	// signs (default 10 minutes: twice the verifiers' JWKS refresh).
	RotationLead time.Duration
	// AccessTokenTTL is the lifetime of access tokens (default and most
	// 15 minutes).
	AccessTokenTTL time.Duration
	// RefreshIdle is how long an unused refresh token lives (default 30
	// days); RefreshMax is the most a grant is refreshed for after sign-in
	// (default 90 days).
	RefreshIdle, RefreshMax time.Duration
	// RefreshGrace is how long a rotated refresh token presented again gets
	// the same successor (a client that lost the response retries) instead
	// of revoking its grant as reuse: 0 (the default) for none, at most
	// MaxRefreshGrace.
	RefreshGrace time.Duration
	// SessionTTL is how long a sign-in at the authorization server lasts
	// (default 12 hours).
	SessionTTL time.Duration
	Logger     *slog.Logger
}

// MaxRefreshGrace is the longest refresh grace window (policy).
const MaxRefreshGrace = 10 * time.Second

// Fixed lifetimes (policy).
const (
	codeTTL        = 60 * time.Second // authorization codes
	deviceCodeTTL  = 10 * time.Minute // device authorizations
	deviceInterval = 5 * time.Second  // polling interval of the device grant
)

// Store is what the authorization server keeps in the SQL store.
type Store interface {
	KeyStore
	CreateUser(ctx context.Context, u *store.User) error
	UserByName(ctx context.Context, name string) (*store.User, error)
	SetPassword(ctx context.Context, userID int64, hash string) error
	SetTOTP(ctx context.Context, userID int64, secret string) error
	UseTOTPStep(ctx context.Context, userID, step int64) (bool, error)
	CreateDevice(ctx context.Context, d *store.Device, c *store.Client) error
	Device(ctx context.Context, id string) (*store.Device, error)
	Devices(ctx context.Context, ownerID int64) ([]*store.Device, error)
	DeleteDevice(ctx context.Context, id string, tokenExpiry time.Time) error
	ClientStore
	GrantStore
	AddClientToken(ctx context.Context, clientID, jti string, expires time.Time) error
	UseAssertionID(ctx context.Context, clientID, jti string, expires time.Time) error
	Revoke(ctx context.Context, tokenID string, expires time.Time) error
	Revoked(ctx context.Context, tokenID string) (bool, error)
	Revocations(ctx context.Context) ([]store.Revocation, error)
	CreateWebSession(ctx context.Context, ws *store.WebSession) error
	WebSession(ctx context.Context, idHash string) (*store.WebSession, error)
	SetWebSessionRefresh(ctx context.Context, idHash, refresh string) error
	DeleteWebSession(ctx context.Context, idHash string) error
}

// Server is the authorization server.
type Server struct {
	cfg     Config
	st      Store
	keys    *KeyRing
	secrets *sealer
	log     *slog.Logger

	// The server's own verifiers, on its key ring.
	apiVerifier, mqttVerifier *token.Verifier

	now    func() time.Time // the clock of expiries (tests move it)
	secure bool             // the issuer is https: cookies are Secure and __Host-
	origin string           // the issuer's origin (scheme://host[:port])

	// Failure throttles: sign-ins per address and per account name, TOTP
	// codes per user, user codes per address, introspections per client.
	loginAddr, loginAccount, totpUser, userCodes, introspects *throttle
	websiteSecret                                             string // the website's client secret
	// The code challenges of recent authorization requests.
	challenges *throttle
	webRefresh webRefresh // the website sessions' recent refreshes
}

// New opens the server's keys in data directory dir (creating the first
// signing key and the secret-sealing key when missing).
func New(ctx context.Context, cfg Config, st Store, dir string) (*Server, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("auth: no issuer URL")
	}
	if cfg.DeviceTokenTTL <= 0 {
		cfg.DeviceTokenTTL = 365 * 24 * time.Hour
	}
	if cfg.RotationLead <= 0 {
		cfg.RotationLead = 10 * time.Minute
	}
	switch {
	case cfg.AccessTokenTTL == 0:
		cfg.AccessTokenTTL = MaxAccessTokenTTL
	case cfg.AccessTokenTTL < 0 || cfg.AccessTokenTTL > MaxAccessTokenTTL:
		return nil, fmt.Errorf("auth: access token lifetime %v: at most %v", cfg.AccessTokenTTL, MaxAccessTokenTTL)
	}
	if cfg.RefreshIdle <= 0 {
		cfg.RefreshIdle = 30 * 24 * time.Hour
	}
	if cfg.RefreshMax <= 0 {
		cfg.RefreshMax = 90 * 24 * time.Hour
	}
	if cfg.RefreshGrace < 0 || cfg.RefreshGrace > MaxRefreshGrace {
		return nil, fmt.Errorf("auth: refresh grace window %v: from 0 to %v", cfg.RefreshGrace, MaxRefreshGrace)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("auth: issuer %q: an https URL without query or fragment (http only on a loopback address)", cfg.Issuer)
	}
	keys, err := OpenKeyRing(ctx, st, dir, cfg.DeviceTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	sealer, err := openSealer(dir)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s := &Server{cfg: cfg, st: st, keys: keys, secrets: sealer, log: cfg.Logger, now: time.Now, secure: u.Scheme == "https",
		origin:       u.Scheme + "://" + u.Host,
		loginAddr:    newThrottle(20, 15*time.Minute),
		loginAccount: newThrottle(5, 15*time.Minute),
		totpUser:     newThrottle(5, 5*time.Minute),
		userCodes:    newThrottle(10, 15*time.Minute),
		introspects:  newThrottle(60, time.Minute),
		challenges:   newThrottle(1, challengeWindow),
	}
	for aud, v := range map[string]**token.Verifier{s.APIAudience(): &s.apiVerifier, AudienceMQTT: &s.mqttVerifier} {
		*v, err = token.NewVerifier(ctx, token.VerifierConfig{
			Fetch: func(ctx context.Context) ([]byte, error) {
				keys, err := s.keys.Published(ctx, time.Now())
				if err != nil {
					return nil, err
				}
				return token.JWKS(keys)
			},
			Issuer: cfg.Issuer, Audience: aud, Refresh: reloadEvery, UnknownKIDRefresh: time.Second,
			Revoked: func(jti string) bool {
				revoked, err := st.Revoked(context.Background(), jti)
				if err != nil {
					s.log.Error("revocation check", "err", err)
					return true // fail closed
				}
				return revoked
			},
			Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	if err := s.seedClients(ctx, dir); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return s, nil
}

// MaxAccessTokenTTL is the longest lifetime of an access token (policy).
const MaxAccessTokenTTL = 15 * time.Minute

// Keys returns the signing keys.
func (s *Server) Keys() *KeyRing { return s.keys }

// AddUser creates a user with a password.
func (s *Server) AddUser(ctx context.Context, name, password string) error {
	if !validUserName(name) {
		return fmt.Errorf("user name %q: 1-64 characters of A-Z a-z 0-9 . _ @ -", name)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return s.st.CreateUser(ctx, &store.User{Name: name, PasswordHash: hash})
}

// SetPassword changes a user's password and revokes the user's grants:
// every refresh token, and the access tokens issued with them.
func (s *Server) SetPassword(ctx context.Context, name, password string) error {
	u, err := s.st.UserByName(ctx, name)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	if err := s.st.SetPassword(ctx, u.ID, hash); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return s.st.RevokeUserGrants(ctx, u.ID)
}

// EnrolTOTP creates a TOTP secret for a user (RFC 6238: SHA-1, 6 digits,
// 30 s, 160-bit secret), stores it sealed, and returns the otpauth:// URI
// to show once. Enrolling again replaces the secret and revokes the user's
// grants.
func (s *Server) EnrolTOTP(ctx context.Context, name string) (string, error) {
	u, err := s.st.UserByName(ctx, name)
	if err != nil {
		return "", err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "trackgate", AccountName: name})
	if err != nil {
		return "", fmt.Errorf("totp: %w", err)
	}
	if err := s.setTOTP(ctx, u, key.Secret()); err != nil {
		return "", err
	}
	return key.URL(), nil
}

// totpOpts are the TOTP parameters (RFC 6238 defaults).
var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// CheckTOTP reports whether code is u's current TOTP code, allowing one
// step of clock skew either way. A code is accepted once: its time step is
// recorded, and a code of that step or an earlier one is refused after.
func (s *Server) CheckTOTP(ctx context.Context, u *store.User, code string, now time.Time) (bool, error) {
	if u.TOTPSecret == "" {
		return false, errors.New("totp: not enrolled")
	}
	secret, err := s.secrets.open(u.TOTPSecret)
	if err != nil {
		return false, fmt.Errorf("totp: %w", err)
	}
	step, err := totpStep(string(secret), code, now)
	if err != nil || step < 0 {
		return false, err
	}
	return s.st.UseTOTPStep(ctx, u.ID, step)
}

// AddDevice registers a device for user owner and returns its device
// token. With jwk set (a public JWK, ES256 or Ed25519) the device is a
// tracker with its own key instead (AUTH.md section L): it becomes a client
// of the same id that gets short-lived broker tokens with the client
// credentials grant and private_key_jwt, and no token is returned.
func (s *Server) AddDevice(ctx context.Context, owner, id, name string, jwk []byte) (string, error) {
	if err := topic.ValidDevice(id); err != nil {
		return "", fmt.Errorf("%w: %v", errDeviceID, err)
	}
	for _, p := range []string{userPrefix, ServicePrefix} {
		if strings.HasPrefix(id, p) {
			return "", fmt.Errorf("%w: %q: ids starting with %s are reserved", errDeviceID, id, p)
		}
	}
	u, err := s.st.UserByName(ctx, owner)
	if err != nil {
		return "", err
	}
	d := &store.Device{ID: id, OwnerID: u.ID, Name: name}
	if jwk != nil {
		key, err := parseClientJWK(jwk)
		if err != nil {
			return "", err
		}
		c := &store.Client{ID: id, Name: cmp.Or(name, id), GrantTypes: []string{GrantClientCredentials}, Scopes: []string{ScopeDevice}, JWK: key}
		return "", s.st.CreateDevice(ctx, d, c)
	}
	tok, c, err := s.issue(ctx, token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: id, Audience: jwt.ClaimStrings{AudienceMQTT}},
		ClientID:         id, Scope: ScopeDevice, Owner: u.Name,
	}, s.cfg.DeviceTokenTTL)
	if err != nil {
		return "", err
	}
	d.TokenID = c.ID
	if err := s.st.CreateDevice(ctx, d, nil); err != nil {
		return "", err
	}
	return tok, nil
}

// errDeviceID is a device id that cannot be registered.
var errDeviceID = errors.New("bad device id")

// RemoveDevice deletes a device and revokes its token.
func (s *Server) RemoveDevice(ctx context.Context, id string) error {
	if err := s.st.DeleteDevice(ctx, id, time.Now().Add(s.cfg.DeviceTokenTTL)); err != nil {
		return err
	}
	s.revoked()
	return nil
}

// revoked tells OnRevoke, if set, that a token was revoked.
func (s *Server) revoked() {
	if s.cfg.OnRevoke != nil {
		s.cfg.OnRevoke()
	}
}

// BrokerToken signs a broker token for one of the cloud's own services
// (sub svc:SERVICE) with the given broker scopes, for the access-token
// lifetime: the ingest bridge presents one at every connection.
func (s *Server) BrokerToken(ctx context.Context, service string, scopes ...string) (string, error) {
	for _, sc := range scopes {
		if !slices.Contains(mqttScopes, sc) {
			return "", fmt.Errorf("broker token: %q is not a broker scope", sc)
		}
	}
	tok, _, err := s.issue(ctx, token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: ServicePrefix + service, Audience: jwt.ClaimStrings{AudienceMQTT}},
		ClientID:         service, Scope: strings.Join(scopes, " "),
	}, s.cfg.AccessTokenTTL)
	return tok, err
}

func (s *Server) sign(ctx context.Context, c *token.Claims) (string, error) {
	k, err := s.keys.Signer(ctx, time.Now())
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return token.Sign(k, c)
}

// Mount registers the server's endpoints with handle (an http.ServeMux's
// Handle, say): the JWKS and metadata under /.well-known/; /authorize with
// the sign-in pages (/login, /login/totp, /logout); POST /token,
// /refresh, /introspect, /revoke and /device_authorization with its
// verification page /device; /userinfo; and the API's /api/v1/devices and
// GET /api/v1/revocations.
func (s *Server) Mount(handle func(pattern string, h http.Handler)) {
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /.well-known/jwks.json":                  s.jwks,
		"GET /.well-known/oauth-authorization-server": s.metadata,
		"GET /.well-known/openid-configuration":       s.metadata,
		"POST /token":                                 s.tokenEndpoint,
		"POST /introspect":                            s.introspect,
		"POST /revoke":                                s.revoke,
		"GET /api/v1/revocations":                     s.revocations,
		"GET /authorize":                              s.authorize,
		"GET /login":                                  s.loginPage,
		"POST /login":                                 s.login,
		"GET /login/totp":                             s.totpPage,
		"POST /login/totp":                            s.totpLogin,
		"GET /logout":                                 s.logoutPage,
		"POST /logout":                                s.logout,
		"POST /device_authorization":                  s.deviceAuthorization,
		"GET /device":                                 s.devicePage,
		"POST /device":                                s.deviceDecide,
		"POST /refresh":                               s.tokenEndpoint,
		"GET /userinfo":                               s.userinfo,
		"POST /userinfo":                              s.userinfo,
		"POST /api/v1/devices":                        s.addDevice,
		"DELETE /api/v1/devices/{id}":                 s.removeDevice,
		"GET /auth/callback":                          s.websiteCallback,
		"POST /auth/logout":                           s.websiteLogout,
		"GET /api/v1/account":                         s.account,
		"POST /api/v1/account/password":               s.changePassword,
		"POST /api/v1/account/totp":                   s.startTOTP,
		"POST /api/v1/account/totp/confirm":           s.confirmTOTP,
	} {
		handle(pattern, h)
	}
}

// Handler returns a handler serving the endpoints of Mount.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Mount(mux.Handle)
	return mux
}

// jwksMaxAge is how long clients may cache the JWKS: well under the
// rotation lead, so a new key is known before it signs.
const jwksMaxAge = 5 * time.Minute

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	keys, err := s.keys.Published(r.Context(), time.Now())
	if err != nil {
		s.log.Error("jwks", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	body, err := token.JWKS(keys)
	if err != nil {
		s.log.Error("jwks", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(jwksMaxAge.Seconds())))
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(body)
}

// isLoopback reports whether host (a name or an address) is a loopback
// address; "localhost" is not: a resolver may send it elsewhere.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validUserName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// newID returns 128 random bits, base64url: token ids and other handles.
func newID() string {
	b := make([]byte, 16)
	randRead(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randRead fills b from crypto/rand.
func randRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
}
