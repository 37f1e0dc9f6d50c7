package bridge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Device is a registered device as the bridge knows it.
type Device struct {
	// ID is the device's id: its positions are published under it.
	ID string `json:"device"`
	// Owner is the owner's user name.
	Owner string `json:"owner"`
	// SecretSHA256 is the hex SHA-256 of its protocol secret, "" for none.
	SecretSHA256 string `json:"secret_sha256"`
	// SpeedUnit is the unit of its OsmAnd speed parameter, "" for the
	// adapter's default.
	SpeedUnit string `json:"speed_unit"`
}

// HasSecret reports whether the device takes positions only with its
// secret.
func (d *Device) HasSecret() bool { return d.SecretSHA256 != "" }

// CheckSecret checks a presented secret against the device's, in constant
// time: nil when the device has none, ErrSecret when it is missing or
// wrong.
func (d *Device) CheckSecret(secret string) error {
	if !d.HasSecret() {
		return nil
	}
	want, err := hex.DecodeString(d.SecretSHA256)
	got := sha256.Sum256([]byte(secret))
	if err != nil || secret == "" || subtle.ConstantTimeCompare(got[:], want) != 1 {
		return ErrSecret
	}
	return nil
}

// Errors of Resolve and of the checks adapters make.
var (
	// ErrUnknown is an identifier no registered device has.
	ErrUnknown = errors.New("no registered device has this identifier")
	// ErrSecret is a missing or wrong device secret.
	ErrSecret = errors.New("missing or wrong device secret")
	// ErrNeedsSecret is a device with a secret reached through a protocol
	// that cannot carry one.
	ErrNeedsSecret = errors.New("the device has a secret, which this protocol cannot carry")
	// ErrUnavailable is a lookup the cloud did not answer, of an
	// identifier not in the cache.
	ErrUnavailable = errors.New("the cloud is unreachable and the identifier is not cached")
)

// Cache lifetimes of lookups.
const (
	defaultCacheTTL = time.Minute      // a found device is looked up again after this
	negativeTTL     = 15 * time.Second // an unknown identifier is asked about again after this
	maxStale        = 24 * time.Hour   // a found device is used this long while the cloud is unreachable
	maxCached       = 200_000          // identifiers kept
)

// entry is a cached lookup.
type entry struct {
	dev     *Device // nil: unknown
	fetched time.Time
}

// resolver finds devices by protocol identifier through the cloud's API
// (GET /api/v1/identifiers/{ident}), caching answers: a found device for
// ttl, an unknown identifier for negativeTTL. Past ttl the cached device
// is still used while the cloud does not answer, for up to maxStale, so
// that trackers keep reporting through an outage of the cloud.
type resolver struct {
	base   string
	ttl    time.Duration
	client *http.Client
	tokens *tokens
	log    *slog.Logger
	now    func() time.Time
	group  singleflight.Group

	mu    sync.Mutex // guards cache
	cache map[string]entry
}

func newResolver(cloud string, ttl time.Duration, tk *tokens, log *slog.Logger) *resolver {
	return &resolver{base: strings.TrimSuffix(cloud, "/") + "/api/v1/identifiers/", ttl: ttl, tokens: tk, log: log, now: time.Now,
		client: &http.Client{Timeout: 10 * time.Second}, cache: map[string]entry{}}
}

// resolve returns the device with identifier ident: ErrUnknown, or
// ErrUnavailable when the cloud cannot be asked and nothing is cached.
func (r *resolver) resolve(ctx context.Context, ident string) (*Device, error) {
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[ident]
	r.mu.Unlock()
	switch {
	case ok && e.dev != nil && now.Sub(e.fetched) < r.ttl:
		return e.dev, nil
	case ok && e.dev == nil && now.Sub(e.fetched) < negativeTTL:
		return nil, ErrUnknown
	}
	v, err, _ := r.group.Do(ident, func() (any, error) {
		// The caller's cancellation must not fail the lookup others share.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		return r.fetch(ctx, ident)
	})
	if err == nil || errors.Is(err, ErrUnknown) {
		d, _ := v.(*Device)
		r.store(ident, entry{dev: d, fetched: now})
		return d, err
	}
	if ok && e.dev != nil && now.Sub(e.fetched) < maxStale {
		r.log.Warn("cloud lookup failed: using the cached device", "ident", ident, "device", e.dev.ID, "err", err)
		return e.dev, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// store caches an answer, dropping the oldest half of the cache when it is
// full.
func (r *resolver) store(ident string, e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCached {
		cut := r.now().Add(-r.ttl)
		for k, old := range r.cache {
			if old.fetched.Before(cut) || len(r.cache) >= maxCached {
				delete(r.cache, k)
			}
		}
	}
	r.cache[ident] = e
}

// fetch asks the cloud about ident.
func (r *resolver) fetch(ctx context.Context, ident string) (*Device, error) {
	tok, err := r.tokens.token(ctx, tokenAPI)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+url.PathEscape(ident), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("look up %q: %w", ident, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if err != nil {
		return nil, fmt.Errorf("look up %q: %w", ident, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var d Device
		if err := json.Unmarshal(body, &d); err != nil || d.ID == "" {
			return nil, fmt.Errorf("look up %q: malformed answer", ident)
		}
		return &d, nil
	case http.StatusNotFound:
		return nil, ErrUnknown
	case http.StatusUnauthorized, http.StatusForbidden:
		r.tokens.drop(tokenAPI) // revoked, or the cloud's keys changed: ask for a new one next time
		return nil, fmt.Errorf("look up %q: %w: %s", ident, ErrCredentials, problemDetail(body))
	}
	return nil, fmt.Errorf("look up %q: %s: %s", ident, resp.Status, problemDetail(body))
}

// problemDetail is the detail of a problem+json body, or a short excerpt.
func problemDetail(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		return strings.TrimSpace(p.Title + ": " + p.Detail)
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}
