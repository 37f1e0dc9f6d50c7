package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// maxRenewMargin caps how long before its expiry a cached token is renewed.
const maxRenewMargin = 2 * time.Minute

// Store is a gateway's enrolment: it hands out access tokens for the
// scopes the gateway needs, refreshing them with the enrolment's refresh
// token, which it keeps saved. It is safe for concurrent use.
type Store struct {
	hc   *http.Client
	path string // the enrolment's file

	// lock holds one token while the cache is used or a refresh runs: it
	// serializes refreshes, and a caller waiting for it can give up when
	// its context ends.
	lock  chan struct{}
	rec   record                 // its RefreshToken changes with each refresh
	cache map[string]cachedToken // by normalized scope

	revoked atomic.Pointer[error] // why the enrolment is dead, once known
}

// cachedToken is an access token and when to renew it.
type cachedToken struct {
	tok     *oauth2.Token
	renewAt time.Time
}

// tokenResponse is a successful answer of the token endpoint.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// errorResponse is an error answer of the token endpoint (RFC 6749 §5.2).
type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func newStore(path string, hc *http.Client, rec record) *Store {
	return &Store{hc: hc, path: path, lock: make(chan struct{}, 1), rec: rec, cache: map[string]cachedToken{}}
}

// Cloud returns the base URL of the cloud the gateway is enrolled with.
func (s *Store) Cloud() string { return s.rec.Cloud }

// Owner returns the user name of the gateway's owner, who approved the
// enrolment.
func (s *Store) Owner() string { return s.rec.Owner }

// Revoked returns the error that revoked the enrolment (it wraps
// ErrRevoked), or nil while the cloud has not refused it.
func (s *Store) Revoked() error {
	if p := s.revoked.Load(); p != nil {
		return *p
	}
	return nil
}

// Token returns an access token for scope, a space-separated list of
// scopes such as "gateway" (a broker token) or "devices:read
// devices:write" (an API token). Tokens are cached per scope and renewed
// when less than a fifth of their lifetime, at most 2 minutes, is left;
// one without a lifetime is not cached. Refreshes run one at a time, and
// each rotates the refresh token, which is saved before the new access
// token is handed out.
//
// When the cloud refuses the refresh token, Token returns an error
// wrapping ErrRevoked, and so does every later call, without asking the
// cloud again. Other failures (the network, a server error) are returned
// wrapped and leave the enrolment as it was: try again later.
func (s *Store) Token(ctx context.Context, scope string) (*oauth2.Token, error) {
	key := scopeKey(scope)
	if key == "" {
		return nil, errors.New("token: no scope")
	}
	if err := s.Revoked(); err != nil {
		return nil, err
	}
	select {
	case s.lock <- struct{}{}:
		defer func() { <-s.lock }()
	case <-ctx.Done():
		return nil, fmt.Errorf("token %q: %w", key, ctx.Err())
	}
	if err := s.Revoked(); err != nil { // while this call waited
		return nil, err
	}
	if c, ok := s.cache[key]; ok && time.Now().Before(c.renewAt) {
		t := *c.tok
		return &t, nil
	}
	tok, err := s.refresh(ctx, key)
	if err != nil {
		if errors.Is(err, ErrRevoked) {
			s.revoked.Store(&err)
			return nil, err
		}
		return nil, fmt.Errorf("refresh the %q token: %w", key, err)
	}
	t := *tok
	return &t, nil
}

// scopeKey normalizes a scope list: sorted, without repeats.
func scopeKey(scope string) string {
	fields := strings.Fields(scope)
	slices.Sort(fields)
	return strings.Join(slices.Compact(fields), " ")
}

// Forget drops the cached token for scope: the next Token call gets a new
// one (the last was refused, or lacks a device registered since).
func (s *Store) Forget(ctx context.Context, scope string) error {
	select {
	case s.lock <- struct{}{}:
		defer func() { <-s.lock }()
	case <-ctx.Done():
		return fmt.Errorf("forget token: %w", ctx.Err())
	}
	delete(s.cache, scopeKey(scope))
	return nil
}

// refresh asks the token endpoint for an access token for scope, saves the
// rotated refresh token and caches the access token. s.lock is held.
func (s *Store) refresh(ctx context.Context, scope string) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.rec.RefreshToken},
		"client_id": {s.rec.ClientID}, "scope": {scope}}
	req, err := http.NewRequestWithContext(ctx, "POST", s.rec.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the token endpoint's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		json.Unmarshal(body, &e) // a body that is not an OAuth error leaves e empty
		if e.Error == "invalid_grant" && resp.StatusCode < 500 {
			desc := ""
			if e.Description != "" {
				desc = ": " + e.Description
			}
			return nil, fmt.Errorf("%w%s: run `gateway enroll --cloud %s` again", ErrRevoked, desc, s.rec.Cloud)
		}
		if e.Error != "" {
			return nil, fmt.Errorf("the token endpoint answered %s: %s %s", resp.Status, e.Error, e.Description)
		}
		return nil, fmt.Errorf("the token endpoint answered %s", resp.Status)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("the token endpoint's answer: %w", err)
	}
	if tr.AccessToken == "" {
		return nil, errors.New("the token endpoint's answer has no access token")
	}
	if tr.RefreshToken != "" && tr.RefreshToken != s.rec.RefreshToken {
		// The old refresh token is spent: keep the new one even if it
		// cannot be saved, so that the next refresh tries again.
		s.rec.RefreshToken = tr.RefreshToken
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType}
	if tr.ExpiresIn > 0 {
		life := time.Duration(tr.ExpiresIn) * time.Second
		tok.Expiry, tok.ExpiresIn = start.Add(life), tr.ExpiresIn
		s.cache[scope] = cachedToken{tok: tok, renewAt: tok.Expiry.Add(-min(life/5, maxRenewMargin))}
	}
	return tok, nil
}
