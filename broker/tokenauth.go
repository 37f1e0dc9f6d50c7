package broker

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"trackgate/internal/token"
)

// AuthConfig says where the broker gets the keys and the revocation list it
// checks tokens against: the cloud that issues them.
type AuthConfig struct {
	// Issuer is the cloud's base URL, the exact iss of its tokens.
	Issuer string
	// JWKS is the issuer's key set URL; default Issuer/.well-known/jwks.json.
	JWKS string
	// Revocations is the revocation list URL; default
	// Issuer/api/v1/revocations.
	Revocations string
	// RevocationsInterval is how often the list is fetched; default 2 s.
	RevocationsInterval time.Duration
	// Data is the data directory, where the keys and the list are cached so
	// that phones keep connecting while the cloud is unreachable.
	Data string
}

// RegisterFlags adds --issuer, --jwks, --revocations-url,
// --revocations-interval and --data to fs.
func (c *AuthConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Issuer, "issuer", "http://127.0.0.1:8080", "the cloud's base `URL`: the issuer of the tokens the broker accepts")
	fs.StringVar(&c.JWKS, "jwks", "", "`URL` of the issuer's signing keys (default ISSUER/.well-known/jwks.json)")
	fs.StringVar(&c.Revocations, "revocations-url", "", "`URL` of the issuer's revocation list (default ISSUER/api/v1/revocations)")
	fs.DurationVar(&c.RevocationsInterval, "revocations-interval", token.DefaultRevocationsInterval, "how often the revocation list is fetched")
	fs.StringVar(&c.Data, "data", c.Data, "data `directory`: the cached signing keys and revocation list")
}

func (c *AuthConfig) withDefaults() {
	base := strings.TrimSuffix(c.Issuer, "/")
	if c.JWKS == "" {
		c.JWKS = base + "/.well-known/jwks.json"
	}
	if c.Revocations == "" {
		c.Revocations = base + "/api/v1/revocations"
	}
}

// tokenAuth verifies the broker's clients' tokens. Its verifier comes up in
// the background: a broker that starts with neither the cloud nor a cached
// key set refuses token clients as "server unavailable" until the keys
// arrive, while a gateway's own receivers publish as usual.
type tokenAuth struct {
	cfg         AuthConfig
	revocations *token.Revocations
	*token.BackgroundVerifier
}

func newTokenAuth(cfg AuthConfig, log *slog.Logger) (*tokenAuth, error) {
	cfg.withDefaults()
	if cfg.Issuer == "" {
		return nil, errors.New("no issuer (--issuer) to verify tokens against")
	}
	if cfg.Data == "" {
		return nil, errors.New("no data directory (--data) to cache the keys in")
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	rev, err := token.NewRevocations(token.RevocationsConfig{
		URL: cfg.Revocations, Interval: cfg.RevocationsInterval,
		CacheFile: filepath.Join(cfg.Data, "revocations.json"), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	bv := token.NewBackgroundVerifier(token.VerifierConfig{
		JWKSURL: cfg.JWKS, Issuer: cfg.Issuer, Audience: "mqtt",
		CacheFile: filepath.Join(cfg.Data, "jwks.json"), Logger: log,
	}, rev)
	return &tokenAuth{cfg: cfg, revocations: rev, BackgroundVerifier: bv}, nil
}

// AuthStatus is the state of token verification, for status pages.
type AuthStatus struct {
	Issuer      string                  `json:"issuer"`
	KeysReady   bool                    `json:"keys_ready"`
	Revocations token.RevocationsStatus `json:"revocations"`
}

func (a *tokenAuth) status() AuthStatus {
	return AuthStatus{Issuer: a.cfg.Issuer, KeysReady: a.Ready(), Revocations: a.revocations.Status()}
}
