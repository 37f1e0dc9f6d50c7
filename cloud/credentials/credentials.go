// Package credentials keeps trackctl's sign-ins to trackgate clouds on disk
// and hands out their access tokens, refreshing them shortly before they
// expire.
//
// The credentials file (DefaultPath: trackgate/credentials.json in the user's
// configuration directory) holds one profile per sign-in, and is kept
// private:
//
//   - The directory is created 0700 and the file 0600. A write goes to a
//     temporary file in the same directory, created 0600 (never wider, not
//     even briefly), which is synced and renamed over the file; then the
//     directory is synced. A reader sees the old file or the new one, never
//     a part of either.
//   - A file its group or others may access (any of the mode bits 0o077) is
//     refused with ErrInsecure and a hint to chmod it and sign in again,
//     since its tokens may have leaked. So is a directory its group or others
//     may write (mode bits 0o022), because they could put a file of their own
//     in its place; the hint is to chmod the directory. On Windows, where mode
//     bits do not describe who may open a file, neither is checked.
//   - Every change, and every refresh (which rotates the refresh token), is
//     made under an exclusive lock on a file beside it, named after it with
//     ".lock" appended, which is taken by every process. A refresh re-reads
//     the file under that lock, so no process presents a refresh token that
//     another has already used. The lock file stays when the credentials file
//     is deleted: deleting it would let two processes hold locks on two
//     different files at once.
package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"trackgate/internal/atomicfile"

	"github.com/gofrs/flock"
	"golang.org/x/oauth2"
)

// File is the credentials file: profiles, one per server/sign-in.
type File struct {
	// Default is the name of the profile used when none is named.
	Default string `json:"default,omitempty"`
	// Profiles are the sign-ins by profile name.
	Profiles map[string]*Profile `json:"profiles"`
}

// Profile is one sign-in.
type Profile struct {
	// Server is the cloud's base URL, e.g. http://127.0.0.1:8080 (the issuer).
	Server string `json:"server"`
	// ClientID is the OAuth client signed in as (trackctl's, a public client).
	ClientID string `json:"client_id"`
	// TokenURL is the server's token endpoint, used to refresh.
	TokenURL string `json:"token_url"`
	// RevokeURL is the server's revocation endpoint, used to sign out.
	RevokeURL string `json:"revocation_url,omitempty"`
	// User is the signed-in user's name, for display.
	User string `json:"user,omitempty"`
	// AccessToken is the current access token.
	AccessToken string `json:"access_token"`
	// RefreshToken is the current refresh token; it changes with every
	// refresh.
	RefreshToken string `json:"refresh_token,omitempty"`
	// TokenType is the access token's type, normally Bearer.
	TokenType string `json:"token_type,omitempty"`
	// Expiry is when the access token expires; zero when the server did not
	// say.
	Expiry time.Time `json:"expiry"`
	// Scope is the space-separated scopes the tokens carry.
	Scope string `json:"scope,omitempty"`
}

// ErrInsecure is wrapped by the error that refuses a credentials file, or
// its directory, whose mode lets others in.
var ErrInsecure = errors.New("credentials file is not private")

// ErrNotSignedIn is wrapped by the error for a profile that is not in the
// credentials file (never signed in, or signed out).
var ErrNotSignedIn = errors.New("not signed in")

// ErrSignInAgain is wrapped by the error for a sign-in the server has ended:
// its refresh token was refused (expired, revoked, or reused), or there is
// none and the access token has expired.
var ErrSignInAgain = errors.New("sign-in has ended")

// lockRetry is how often a lock held by another process is tried again.
const lockRetry = 10 * time.Millisecond

// DefaultPath returns os.UserConfigDir()/trackgate/credentials.json.
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("credentials: find the configuration directory: %w", err)
	}
	return filepath.Join(dir, "trackgate", "credentials.json"), nil
}

// Store is the credentials file at a path.
type Store struct {
	path string
}

// Open returns the store of the credentials file at path, which need not
// exist yet.
func Open(path string) *Store { return &Store{path: path} }

// Path returns the credentials file's path.
func (s *Store) Path() string { return s.path }

// Load reads the file; a missing file is an empty File (no error). It
// refuses a file whose group or others may access it, or a directory they
// may write, with an error wrapping ErrInsecure that says how to fix it.
func (s *Store) Load() (*File, error) {
	if err := checkDir(filepath.Dir(s.path)); err != nil {
		return nil, err
	}
	fh, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Profiles: map[string]*Profile{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials: open %s: %w", s.path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("credentials: stat %s: %w", s.path, err)
	}
	if err := checkFile(s.path, fi.Mode()); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return nil, fmt.Errorf("credentials: read %s: %w", s.path, err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("credentials file %s is damaged: remove it and sign in again with trackctl login: %w", s.path, err)
	}
	if f.Profiles == nil {
		f.Profiles = map[string]*Profile{}
	}
	return &f, nil
}

// checkFile refuses a credentials file at path whose mode lets its group or
// others in.
func checkFile(path string, mode fs.FileMode) error {
	perm := mode.Perm()
	if runtime.GOOS == "windows" || perm&0o077 == 0 {
		return nil
	}
	how := "accessible"
	switch {
	case perm&0o044 != 0:
		how = "readable"
	case perm&0o022 != 0:
		how = "writable"
	}
	return &hintError{
		msg:  fmt.Sprintf("credentials file %s is %s by others (mode %04o): run chmod 600 %s, then sign in again with trackctl login since the tokens may have leaked", path, how, perm, path),
		errs: []error{ErrInsecure},
	}
}

// checkDir refuses a credentials directory that its group or others may
// write. A missing directory is fine: it holds no file yet.
func checkDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("credentials: stat %s: %w", dir, err)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &hintError{
			msg:  fmt.Sprintf("credentials directory %s is writable by others (mode %04o): run chmod 700 %s", dir, perm, dir),
			errs: []error{ErrInsecure},
		}
	}
	return nil
}

// Update takes the file lock, loads, calls fn, and saves atomically if fn
// returns nil. Creates the directory (0700) and file (0600) as needed. The
// temp file is created 0600 from the start (never briefly wider). When fn
// leaves no profile, the file is deleted instead.
func (s *Store) Update(fn func(*File) error) (err error) {
	unlock, err := s.lock(context.Background())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	f, err := s.Load()
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	return s.save(f)
}

// lock creates the directory as needed and takes the file lock, waiting
// until ctx ends; it returns the function that releases it.
func (s *Store) lock(ctx context.Context) (unlock func() error, err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("credentials: create directory: %w", err)
	}
	l := flock.New(s.path + ".lock")
	// TryLockContext reports false only with an error.
	if _, err := l.TryLockContext(ctx, lockRetry); err != nil {
		return nil, fmt.Errorf("credentials: lock %s: %w", l.Path(), err)
	}
	return func() error {
		if err := l.Unlock(); err != nil {
			return fmt.Errorf("credentials: unlock %s: %w", l.Path(), err)
		}
		return nil
	}, nil
}

// save writes f atomically, or deletes the file when f has no profile. The
// caller holds the lock.
func (s *Store) save(f *File) error {
	dir := filepath.Dir(s.path)
	if len(f.Profiles) == 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("credentials: remove %s: %w", s.path, err)
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		return nil
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("credentials: encode: %w", err)
	}
	if err := atomicfile.Write(s.path, append(data, '\n')); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// Put stores a profile (under Update), making it the default when there is
// none or makeDefault. It keeps a copy of p.
func (s *Store) Put(name string, p *Profile, makeDefault bool) error {
	if name == "" {
		return errors.New("credentials: a profile needs a name")
	}
	if p == nil {
		return fmt.Errorf("credentials: profile %s: no sign-in to store", name)
	}
	cp := *p
	return s.Update(func(f *File) error {
		f.Profiles[name] = &cp
		if makeDefault || f.Profiles[f.Default] == nil {
			f.Default = name
		}
		return nil
	})
}

// Remove deletes a profile (under Update), the default one when name is "",
// and returns it so that its refresh token can be revoked; the file itself
// is deleted when no profile is left. When the default profile goes, the
// profile left becomes the default if it is the only one; with more left
// there is no default until one is chosen. A profile that is not there is
// an error wrapping ErrNotSignedIn.
func (s *Store) Remove(name string) (*Profile, error) {
	var removed *Profile
	err := s.Update(func(f *File) error {
		n, p, err := f.lookup(name)
		if err != nil {
			return err
		}
		delete(f.Profiles, n)
		if f.Default == n {
			f.Default = ""
			if len(f.Profiles) == 1 {
				for only := range f.Profiles {
					f.Default = only
				}
			}
		}
		removed = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// Profile returns the named profile, or the default one when name is "",
// with its name. A profile that is not there is an error wrapping
// ErrNotSignedIn that says how to sign in, e.g. "not signed in: run trackctl
// login [--server URL]".
func (s *Store) Profile(name string) (string, *Profile, error) {
	f, err := s.Load()
	if err != nil {
		return "", nil, err
	}
	n, p, err := f.lookup(name)
	if err != nil {
		return "", nil, err
	}
	cp := *p
	return n, &cp, nil
}

// lookup returns the named profile, or the default one when name is "".
func (f *File) lookup(name string) (string, *Profile, error) {
	if name == "" && f.Default == "" && len(f.Profiles) > 0 {
		names := make([]string, 0, len(f.Profiles))
		for n := range f.Profiles {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", nil, fmt.Errorf("%w with a default profile: pass --profile with one of %s, or run trackctl login [--server URL]", ErrNotSignedIn, strings.Join(names, ", "))
	}
	n := name
	if n == "" {
		n = f.Default
	}
	p := f.Profiles[n]
	if p == nil {
		return "", nil, notSignedIn(name)
	}
	return n, p, nil
}

// notSignedIn is the error for a missing profile, name, or the default one
// when name is "".
func notSignedIn(name string) error {
	if name == "" {
		return fmt.Errorf("%w: run trackctl login [--server URL]", ErrNotSignedIn)
	}
	return fmt.Errorf("%w as profile %s: run trackctl login --profile %s [--server URL]", ErrNotSignedIn, name, name)
}

// token returns p's access token, without its refresh token: that one stays
// in the file.
func (p *Profile) token() *oauth2.Token {
	return &oauth2.Token{AccessToken: p.AccessToken, TokenType: p.TokenType, Expiry: p.Expiry}
}

// hintError is an error whose message is a complete instruction to the
// user, and that wraps errs.
type hintError struct {
	msg  string
	errs []error
}

func (e *hintError) Error() string   { return e.msg }
func (e *hintError) Unwrap() []error { return e.errs }
