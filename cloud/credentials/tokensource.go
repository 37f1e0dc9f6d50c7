package credentials

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// When a token source hands out the access token it holds, and when it
// refreshes instead. The rule is:
//
//   - a token with no expiry, or with more than refreshMargin left, is used;
//   - a token this source obtained less than reuseWindow ago is used while
//     more than minLife of it is left, even inside refreshMargin;
//   - any other token is refreshed (after re-reading the file under the
//     lock), and the refreshed token is used whatever its lifetime.
//
// A token counts as obtained by the source when it refreshed it itself, and
// when it found under the lock that the file holds a different access token
// from the one it had: another process (or source) has just refreshed it.
// With access tokens living less than refreshMargin, the second rule makes
// the requests of one command share a refresh for up to reuseWindow instead
// of refreshing for each.
const (
	refreshMargin = 30 * time.Second
	reuseWindow   = time.Second
	minLife       = time.Second
)

// TokenSource returns an oauth2.TokenSource for the profile, the default one
// when name is "", that refreshes as described (30 s margin, lock, re-read,
// persist before returning). httpClient may be nil (http.DefaultClient), used
// for the refresh request via oauth2.HTTPClient context value.
//
// The source is safe for concurrent use. While its access token has more
// than 30 s left it does no file I/O; otherwise it takes the file lock
// (waiting until ctx ends), re-reads the file, and uses the token found
// there if another process has refreshed it meanwhile. A token the source
// has just obtained, by refreshing it or by finding it refreshed, is used
// for up to 1 s while more than 1 s of it is left, so that with access
// tokens living less than 30 s the requests of one command share a refresh
// instead of refreshing for each. Else it
// refreshes, writes the rotated refresh token and the new access token to
// the file, and only then returns the new access token. The lock is held
// during the refresh request, so httpClient should have a timeout.
//
// A profile deleted meanwhile (sign-out) is an error wrapping
// ErrNotSignedIn; a refresh token the server refuses (invalid_grant, or
// status 400 or 401) is an error wrapping ErrSignInAgain that says how to
// sign in again; any other failure, such as a network error, is returned as
// such, and the stored tokens are kept. The tokens returned carry no refresh
// token: the file keeps it.
//
// ctx, which must not be nil, is used for every refresh, as with
// oauth2.Config.TokenSource.
func (s *Store) TokenSource(ctx context.Context, name string, httpClient *http.Client) oauth2.TokenSource {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &tokenSource{ctx: ctx, store: s, name: name, client: httpClient}
}

// tokenSource is the refreshing token source of one profile.
type tokenSource struct {
	ctx    context.Context
	store  *Store
	name   string // as asked for: "" for the default profile
	client *http.Client

	mu       sync.Mutex
	profile  string        // the profile's name, once read
	tok      *oauth2.Token // the access token last read or obtained
	obtained time.Time     // when tok was obtained; zero when it was read unchanged
}

// Token returns an access token with enough life left, refreshing it as
// needed.
func (ts *tokenSource) Token() (*oauth2.Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok == nil {
		f, err := ts.store.Load()
		if err != nil {
			return nil, err
		}
		n, p, err := f.lookup(ts.name)
		if err != nil {
			return nil, err
		}
		ts.profile, ts.tok = n, p.token()
	}
	if ts.usable(time.Now()) {
		return ts.handOut(), nil
	}
	return ts.refresh()
}

// usable reports whether ts.tok may be handed out at now.
func (ts *tokenSource) usable(now time.Time) bool {
	if ts.tok.AccessToken == "" {
		return false
	}
	left := ts.tok.Expiry.Sub(now)
	return ts.tok.Expiry.IsZero() || left > refreshMargin ||
		(now.Sub(ts.obtained) < reuseWindow && left > minLife)
}

// handOut returns a copy of ts.tok.
func (ts *tokenSource) handOut() *oauth2.Token {
	t := *ts.tok
	return &t
}

// refresh takes the file lock, re-reads the profile, and uses the token
// there if another process has just refreshed it; else it refreshes, saves,
// and returns the new token.
func (ts *tokenSource) refresh() (tok *oauth2.Token, err error) {
	unlock, err := ts.store.lock(ts.ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := unlock(); uerr != nil {
			tok, err = nil, errors.Join(err, uerr)
		}
	}()
	f, err := ts.store.Load()
	if err != nil {
		return nil, err
	}
	p := f.Profiles[ts.profile]
	if p == nil {
		return nil, notSignedIn(ts.name)
	}
	now, seen := time.Now(), ts.tok.AccessToken
	ts.tok, ts.obtained = p.token(), time.Time{}
	if p.AccessToken != seen {
		ts.obtained = now
	}
	if ts.usable(now) {
		return ts.handOut(), nil
	}

	if p.RefreshToken == "" {
		return nil, signInAgain(p.Server, ts.profile, f.Default == ts.profile, nil)
	}
	conf := &oauth2.Config{
		ClientID: p.ClientID,
		Endpoint: oauth2.Endpoint{TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}
	ctx := context.WithValue(ts.ctx, oauth2.HTTPClient, ts.client)
	nt, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: p.RefreshToken}).Token()
	if err != nil {
		if grantGone(err) {
			return nil, signInAgain(p.Server, ts.profile, f.Default == ts.profile, err)
		}
		return nil, fmt.Errorf("credentials: refresh the sign-in to %s: %w", p.Server, err)
	}
	p.AccessToken, p.RefreshToken, p.TokenType, p.Expiry = nt.AccessToken, nt.RefreshToken, nt.TokenType, nt.Expiry
	if scope, ok := nt.Extra("scope").(string); ok && scope != "" {
		p.Scope = scope
	}
	// The old refresh token no longer works: the new one must be on disk
	// before the new access token is used. If saving fails, the old one on
	// disk can still be presented within the server's grace window.
	if err := ts.store.save(f); err != nil {
		return nil, fmt.Errorf("credentials: keep the refreshed sign-in to %s: %w", p.Server, err)
	}
	ts.tok, ts.obtained = p.token(), time.Now()
	return ts.handOut(), nil
}

// grantGone reports whether refresh error err means the grant is gone:
// invalid_grant, or status 400 or 401.
func grantGone(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	if re.ErrorCode == "invalid_grant" {
		return true
	}
	return re.Response != nil && (re.Response.StatusCode == http.StatusBadRequest || re.Response.StatusCode == http.StatusUnauthorized)
}

// signInAgain is the error for a sign-in to server that has ended, of
// profile name (isDefault when it is the default one), caused by cause when
// not nil.
func signInAgain(server, name string, isDefault bool, cause error) error {
	login := "trackctl login"
	if !isDefault {
		login += " --profile " + name
	}
	errs := []error{ErrSignInAgain}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &hintError{msg: fmt.Sprintf("your sign-in to %s has ended: run %s", server, login), errs: errs}
}
