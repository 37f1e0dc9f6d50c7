package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults and limits of a VerifierConfig.
const (
	DefaultLeeway            = 30 * time.Second // clock skew allowed on exp, nbf and iat
	MaxLeeway                = 60 * time.Second // policy: the most skew a config may allow
	DefaultMaxSize           = 8 << 10          // bytes of the longest token accepted
	DefaultRefresh           = 5 * time.Minute  // background JWKS refresh interval
	DefaultUnknownKIDRefresh = 30 * time.Second // shortest time between two fetches for unknown kids
	DefaultHTTPTimeout       = 10 * time.Second // timeout of the default JWKS HTTP client
)

// retryAfterFailure is how soon the background refresh tries again after a
// failed fetch, when that is sooner than the refresh interval.
const retryAfterFailure = 30 * time.Second

// VerifierConfig configures a Verifier. JWKSURL, Issuer and Audience are
// required; every other field has a default.
type VerifierConfig struct {
	// JWKSURL is the issuer's jwks_uri (http or https). Keys come only from
	// here: never from a token's jku, x5u, jwk or x5c header.
	JWKSURL string
	// Fetch, if set, supplies the JWKS instead of JWKSURL: for the issuer
	// itself, which verifies its own tokens against its key ring.
	Fetch func(ctx context.Context) ([]byte, error)
	// CacheFile, if set, is where the last good JWKS is written (mode 0600,
	// atomically: a temporary file renamed over it) and where it is loaded
	// from at start, so that an edge gateway keeps verifying while the
	// issuer is unreachable. A corrupt cache, or one that others can write,
	// is logged and ignored.
	CacheFile string
	// Issuer is the exact iss a token must carry.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// Type is the header typ a token must carry; default "at+jwt".
	Type string
	// Leeway is the clock skew allowed on exp, nbf and iat; default 30 s,
	// at most 60 s.
	Leeway time.Duration
	// MaxSize is the longest token accepted, in bytes; default 8 KiB. A
	// longer token is rejected before any decoding.
	MaxSize int
	// Refresh is the interval of the background JWKS refresh; default
	// 5 min. After a failed fetch the next try comes after 30 s if that is
	// sooner.
	Refresh time.Duration
	// UnknownKIDRefresh is the shortest time between two extra fetches
	// caused by tokens that name a kid the JWKS lacks; default 30 s.
	UnknownKIDRefresh time.Duration
	// Revoked, if set, reports whether the token with this jti is revoked.
	// It is called only for tokens that passed every other check.
	Revoked func(jti string) bool
	// HTTPClient fetches the JWKS; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives the refresh events; default slog.Default().
	Logger *slog.Logger
}

// withDefaults checks c and fills in its defaults.
func (c VerifierConfig) withDefaults() (VerifierConfig, error) {
	if c.Fetch == nil {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("token verifier: JWKSURL %q: want an http or https URL", c.JWKSURL)
		}
	}
	if c.Issuer == "" {
		return c, errors.New("token verifier: Issuer is required")
	}
	if c.Audience == "" {
		return c, errors.New("token verifier: Audience is required")
	}
	if c.Type == "" {
		c.Type = Type
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0 || c.Leeway > MaxLeeway:
		return c, fmt.Errorf("token verifier: Leeway %v: want 0 (default %v) up to %v", c.Leeway, DefaultLeeway, MaxLeeway)
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.UnknownKIDRefresh == 0 {
		c.UnknownKIDRefresh = DefaultUnknownKIDRefresh
	}
	if c.MaxSize < 0 || c.Refresh < 0 || c.UnknownKIDRefresh < 0 {
		return c, errors.New("token verifier: MaxSize, Refresh and UnknownKIDRefresh must not be negative")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Verifier checks access tokens against the keys the issuer publishes at its
// jwks_uri. It is safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	log    *slog.Logger
	parser *jwt.Parser
	keys   atomic.Pointer[keySet] // never nil once NewVerifier returned
	kick   chan struct{}          // asks the refresh loop for an unknown-kid fetch
	done   chan struct{}          // closed when the refresh loop has ended

	mu       sync.Mutex
	lastKick time.Time     // when the last unknown-kid fetch was asked for
	inflight chan struct{} // closed when the asked-for fetch is over; nil when none is

	cached []byte // the JWKS last written to CacheFile; owned by the refresh loop
}

// NewVerifier loads CacheFile if there is one, then fetches the JWKS once and
// starts refreshing it in the background until ctx ends. It returns an error
// only when neither gave a usable key: a verifier with a cache starts while
// the issuer is down, one without fails rather than reject every token.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		cfg: cfg,
		log: cfg.Logger.With("jwks_uri", cfg.JWKSURL),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Alg}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithStrictDecoding(),
		),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	if u, _ := url.Parse(cfg.JWKSURL); cfg.Fetch == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		v.log.Warn("JWKS fetched over plain HTTP: use https off this host")
	}
	v.loadCache()
	err = v.refresh(ctx)
	if err != nil {
		if v.keys.Load() == nil && cfg.CacheFile != "" {
			return nil, fmt.Errorf("token verifier: no keys: cache %s unusable and %w", cfg.CacheFile, err)
		}
		if v.keys.Load() == nil {
			return nil, fmt.Errorf("token verifier: no keys: %w", err)
		}
		v.log.Warn("JWKS unreachable at start: verifying with the cached keys", "err", err)
	}
	go v.run(ctx, err)
	return v, nil
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Done is closed when the background refresh has stopped, after the context
// given to NewVerifier ended. The Verifier still verifies with the keys it
// had.
func (v *Verifier) Done() <-chan struct{} { return v.done }

// Verify checks raw and returns its claims. In order: size, compact
// serialization, header (alg, crit, key-source parameters, typ, kid), key
// lookup (an unknown kid may cause one rate-limited JWKS fetch, waited for no
// longer than ctx allows), signature, iss, aud, exp, nbf, iat, the other
// required claims, and Revoked. Every error wraps one of the package's Err
// values.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > v.cfg.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), v.cfg.MaxSize)
	}
	if err := checkCompact(raw); err != nil {
		return nil, err
	}
	header, _, _ := strings.Cut(raw, ".")
	kid, err := checkHeader(header, v.cfg.Type)
	if err != nil {
		return nil, err
	}
	ks, err := v.keysFor(ctx, kid)
	if err != nil {
		return nil, err
	}
	c := new(Claims)
	if _, err := v.parser.ParseWithClaims(raw, c, ks.kf.KeyfuncCtx(ctx)); err != nil {
		return nil, fmt.Errorf("%w (%w)", classify(err, c), err)
	}
	if err := c.checkRequired(); err != nil {
		return nil, err
	}
	if v.cfg.Revoked != nil && v.cfg.Revoked(c.ID) {
		return nil, fmt.Errorf("%w: jti %s", ErrRevoked, clip(c.ID))
	}
	return c, nil
}

// classify maps an error of the JWT parser to the package's error for it. c
// holds the claims as far as the parser decoded them.
func classify(err error, c *Claims) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.Issuer == "":
			return ErrIssuer
		case !slices.ContainsFunc(c.Audience, func(a string) bool { return a != "" }):
			return ErrAudience
		}
		return ErrMissingClaim
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	}
	return ErrMalformed
}

// keysFor returns the key set that holds kid, after an unknown-kid refresh if
// the current one does not, and checks that the key is for EdDSA (RFC 8725
// §3.1: the header alg must match the key's).
func (v *Verifier) keysFor(ctx context.Context, kid string) (*keySet, error) {
	ks := v.keys.Load()
	if _, ok := ks.algs[kid]; !ok {
		v.awaitUnknownKIDRefresh(ctx)
		ks = v.keys.Load()
	}
	alg, ok := ks.algs[kid]
	if !ok {
		return nil, fmt.Errorf("%w: kid %s is not in the JWKS", ErrUnknownKey, clip(kid))
	}
	if alg != Alg {
		return nil, fmt.Errorf("%w: key %s is for alg %s, the token says %q", ErrAlgorithm, clip(kid), clip(alg), Alg)
	}
	return ks, nil
}

// awaitUnknownKIDRefresh asks the refresh loop for a fetch, unless one was
// asked for less than UnknownKIDRefresh ago, and waits for the fetch in
// flight, if any, until ctx ends. However many tokens name unknown kids, at
// most one extra fetch happens per UnknownKIDRefresh, and no request waits
// for it longer than its context allows.
func (v *Verifier) awaitUnknownKIDRefresh(ctx context.Context) {
	v.mu.Lock()
	wait := v.inflight
	if wait == nil {
		if !v.lastKick.IsZero() && time.Since(v.lastKick) < v.cfg.UnknownKIDRefresh {
			v.mu.Unlock()
			return
		}
		v.lastKick = time.Now()
		wait = make(chan struct{})
		v.inflight = wait
		v.kick <- struct{}{} // never blocks: one kick at most is pending while inflight is set
	}
	v.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
	case <-v.done:
	}
}

// run is the refresh loop: it fetches the JWKS every Refresh (sooner after a
// failure) and whenever awaitUnknownKIDRefresh asks, until ctx ends.
func (v *Verifier) run(ctx context.Context, lastErr error) {
	defer close(v.done)
	timer := time.NewTimer(v.nextRefresh(lastErr))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			err := v.refresh(ctx)
			if err != nil {
				v.log.Warn("JWKS refresh failed: verifying with the keys held", "err", err)
			}
			timer.Reset(v.nextRefresh(err))
		case <-v.kick:
			if err := v.refresh(ctx); err != nil {
				v.log.Warn("JWKS refresh for an unknown kid failed", "err", err)
			}
			v.mu.Lock()
			close(v.inflight)
			v.inflight = nil
			v.mu.Unlock()
		}
	}
}

// nextRefresh returns the time to the next background refresh after one that
// ended with err.
func (v *Verifier) nextRefresh(err error) time.Duration {
	if err != nil && retryAfterFailure < v.cfg.Refresh {
		return retryAfterFailure
	}
	return v.cfg.Refresh
}
