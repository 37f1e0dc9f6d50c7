package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"trackgate/internal/atomicfile"
)

// Defaults of a RevocationsConfig.
const (
	DefaultRevocationsInterval = 2 * time.Second
	// maxRevocationBytes bounds the revocation list read from the issuer
	// or the cache.
	maxRevocationBytes = 16 << 20
)

// RevocationsConfig configures a Revocations list.
type RevocationsConfig struct {
	// URL is the issuer's revocation list, GET /api/v1/revocations.
	URL string
	// Interval is how often the list is fetched; default 2 s. A fetch
	// whose list has not changed costs a 304.
	Interval time.Duration
	// CacheFile, if set, keeps the last list fetched (mode 0600, written
	// atomically) and is loaded at start, so that a gateway cut off from the
	// issuer still refuses the tokens it knew to be revoked.
	CacheFile string
	// HTTPClient fetches the list; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives fetch failures; default slog.Default().
	Logger *slog.Logger
}

// Revocation is one revoked token: its id and when it expires (after which
// no verifier accepts it anyway and the issuer drops it from the list).
type Revocation struct {
	TokenID   string    `json:"jti"`
	ExpiresAt time.Time `json:"exp"`
}

// revocationList is the issuer's JSON document.
type revocationList struct {
	Revocations []Revocation `json:"revocations"`
}

// Revocations keeps a verifier's copy of the issuer's list of revoked token
// ids fresh: it fetches it every Interval (and at once on Refresh) and calls
// the functions given to OnRevoke with every id that is new in it, so that a
// broker can disconnect the sessions those tokens opened. It is safe for
// concurrent use.
type Revocations struct {
	cfg  RevocationsConfig
	log  *slog.Logger
	set  atomic.Pointer[map[string]time.Time]
	kick chan struct{}

	mu       sync.Mutex
	onRevoke []func(jtis []string)
	etag     string
	fetched  time.Time // last successful fetch
	lastErr  error
}

// NewRevocations loads CacheFile, if there is one, and returns the list. It
// fetches nothing until Run.
func NewRevocations(cfg RevocationsConfig) (*Revocations, error) {
	if cfg.URL == "" {
		return nil, errors.New("revocations: no URL")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultRevocationsInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Revocations{cfg: cfg, log: cfg.Logger.With("revocations", cfg.URL), kick: make(chan struct{}, 1)}
	r.set.Store(&map[string]time.Time{})
	if cfg.CacheFile != "" {
		raw, err := readCache(cfg.CacheFile, maxRevocationBytes)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			r.log.Warn("revocation cache ignored", "file", cfg.CacheFile, "err", err)
		default:
			if set, err := parseRevocations(raw, time.Now()); err != nil {
				r.log.Warn("revocation cache ignored", "file", cfg.CacheFile, "err", err)
			} else {
				r.set.Store(&set)
				r.log.Info("revocation cache loaded", "file", cfg.CacheFile, "revoked", len(set))
			}
		}
	}
	return r, nil
}

// Revoked reports whether the token with id jti is in the list. It fits
// VerifierConfig.Revoked.
func (r *Revocations) Revoked(jti string) bool {
	_, ok := (*r.set.Load())[jti]
	return ok
}

// OnRevoke registers f to be called, from the fetching goroutine, with the ids
// a fetch found newly revoked.
func (r *Revocations) OnRevoke(f func(jtis []string)) {
	r.mu.Lock()
	r.onRevoke = append(r.onRevoke, f)
	r.mu.Unlock()
}

// Refresh asks for a fetch now, without waiting for it.
func (r *Revocations) Refresh() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// RevocationsStatus is the state of the list, for status pages.
type RevocationsStatus struct {
	Revoked int       `json:"revoked"`          // ids in the list
	Fetched time.Time `json:"fetched,omitzero"` // last successful fetch
	Error   string    `json:"error,omitempty"`  // why the last fetch failed
}

// Status returns the state of the list.
func (r *Revocations) Status() RevocationsStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RevocationsStatus{Revoked: len(*r.set.Load()), Fetched: r.fetched}
	if r.lastErr != nil {
		st.Error = r.lastErr.Error()
	}
	return st
}

// Run fetches the list at once, then every Interval and on Refresh, until
// ctx ends. Failures are logged once per streak and the list held is kept.
func (r *Revocations) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		err := r.fetch(ctx)
		r.mu.Lock()
		if err != nil && r.lastErr == nil {
			r.log.Warn("revocation list unreachable: checking tokens against the list held", "err", err)
		} else if err == nil && r.lastErr != nil {
			r.log.Info("revocation list reachable again")
		}
		r.lastErr = err
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// fetch gets the list, replaces the set when it changed, writes the cache
// and reports the new ids.
func (r *Revocations) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	r.mu.Lock()
	if r.etag != "" {
		req.Header.Set("If-None-Match", r.etag)
	}
	r.mu.Unlock()
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	now := time.Now()
	switch resp.StatusCode {
	case http.StatusNotModified:
		r.mu.Lock()
		r.fetched = now
		r.mu.Unlock()
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("GET %s: %s", r.cfg.URL, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRevocationBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", r.cfg.URL, err)
	}
	if len(raw) > maxRevocationBytes {
		return fmt.Errorf("GET %s: list larger than %d bytes", r.cfg.URL, maxRevocationBytes)
	}
	set, err := parseRevocations(raw, now)
	if err != nil {
		return fmt.Errorf("GET %s: %w", r.cfg.URL, err)
	}
	old := *r.set.Load()
	var added []string
	for jti := range set {
		if _, ok := old[jti]; !ok {
			added = append(added, jti)
		}
	}
	r.set.Store(&set)
	r.mu.Lock()
	r.etag = resp.Header.Get("ETag")
	r.fetched = now
	hooks := r.onRevoke
	r.mu.Unlock()
	if r.cfg.CacheFile != "" && (len(added) > 0 || len(set) != len(old)) {
		if err := atomicfile.Write(r.cfg.CacheFile, raw); err != nil {
			r.log.Warn("revocation cache not written", "err", err)
		}
	}
	if len(added) > 0 {
		r.log.Info("tokens revoked", "count", len(added))
		for _, f := range hooks {
			f(added)
		}
	}
	return nil
}

// parseRevocations decodes a revocation list, leaving out the entries that
// expired before now.
func parseRevocations(raw []byte, now time.Time) (map[string]time.Time, error) {
	var l revocationList
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	set := make(map[string]time.Time, len(l.Revocations))
	for _, rv := range l.Revocations {
		if rv.TokenID == "" {
			return nil, errors.New("revocation list: entry without jti")
		}
		if rv.ExpiresAt.IsZero() || rv.ExpiresAt.After(now.Add(-MaxLeeway)) {
			set[rv.TokenID] = rv.ExpiresAt
		}
	}
	return set, nil
}
