package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"trackgate/cloud/store"
	"trackgate/internal/atomicfile"
	"trackgate/internal/token"
)

// KeyStore keeps the records of signing keys.
type KeyStore interface {
	AddKey(ctx context.Context, k *store.SigningKey) error
	RetireKey(ctx context.Context, id string, at time.Time) error
	DeleteKey(ctx context.Context, id string) error
	Keys(ctx context.Context) ([]store.SigningKey, error)
}

// KeyRing holds the issuer's signing keys: their records in the store, their
// private halves in files of mode 0600 under DIR/keys. One key signs at a
// time; keys due to sign later and keys retired recently are published too,
// so verifiers know a key before it signs and keep it while its tokens live.
// It is safe for concurrent use.
type KeyRing struct {
	st     KeyStore
	dir    string
	retain time.Duration // how long a retired key stays published

	mu     sync.Mutex
	keys   []ringKey // by SignsFrom
	loaded time.Time
}

type ringKey struct {
	rec store.SigningKey
	key token.Key
}

// reloadEvery is how often a KeyRing rereads the store, to see rotations
// made by another process (`cloud keys rotate` while `cloud serve` runs).
const reloadEvery = 10 * time.Second

// OpenKeyRing loads the keys of data directory dir, creating a first key
// that signs at once when there is none. retain is how long a retired key
// stays published: at least the longest lifetime of a token it signed.
func OpenKeyRing(ctx context.Context, st KeyStore, dir string, retain time.Duration) (*KeyRing, error) {
	r := &KeyRing{st: st, dir: filepath.Join(dir, "keys"), retain: retain}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(ctx); err != nil {
		return nil, err
	}
	if len(r.keys) == 0 {
		if _, err := r.addLocked(ctx, time.Now()); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *KeyRing) loadLocked(ctx context.Context) error {
	recs, err := r.st.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	keys := make([]ringKey, 0, len(recs))
	for _, rec := range recs {
		k, err := r.readKey(rec.ID)
		if err != nil {
			return err
		}
		keys = append(keys, ringKey{rec: rec, key: k})
	}
	r.keys, r.loaded = keys, time.Now()
	return nil
}

func (r *KeyRing) path(id string) string { return filepath.Join(r.dir, id+".pem") }

func (r *KeyRing) readKey(id string) (token.Key, error) {
	path := r.path(id)
	fi, err := os.Stat(path)
	if err != nil {
		return token.Key{}, fmt.Errorf("signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return token.Key{}, fmt.Errorf("signing key %s: mode %v lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return token.Key{}, fmt.Errorf("signing key: %w", err)
	}
	k, err := token.ParseKeyPEM(id, pem)
	if err != nil {
		return token.Key{}, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}

// addLocked creates a key that signs from signsFrom: its file first (mode
// 0600, written atomically), then its record.
func (r *KeyRing) addLocked(ctx context.Context, signsFrom time.Time) (store.SigningKey, error) {
	k, err := token.GenerateKey()
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("new signing key: %w", err)
	}
	pem, err := k.MarshalPEM()
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("new signing key: %w", err)
	}
	if err := atomicfile.Write(r.path(k.ID), pem); err != nil {
		return store.SigningKey{}, fmt.Errorf("new signing key: %w", err)
	}
	rec := store.SigningKey{ID: k.ID, SignsFrom: signsFrom.UTC()}
	if err := r.st.AddKey(ctx, &rec); err != nil {
		os.Remove(r.path(k.ID))
		return store.SigningKey{}, err
	}
	r.keys = append(r.keys, ringKey{rec: rec, key: k})
	return rec, nil
}

// refreshLocked rereads the store when the keys are older than reloadEvery.
func (r *KeyRing) refreshLocked(ctx context.Context) error {
	if time.Since(r.loaded) < reloadEvery {
		return nil
	}
	return r.loadLocked(ctx)
}

// ErrNoSigningKey is returned when no key may sign now.
var ErrNoSigningKey = errors.New("no signing key is active")

// Signer returns the key that signs at now: the newest one whose time has
// come and that is not retired.
func (r *KeyRing) Signer(ctx context.Context, now time.Time) (token.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(ctx); err != nil {
		return token.Key{}, err
	}
	for i := len(r.keys) - 1; i >= 0; i-- {
		k := r.keys[i]
		if !k.rec.SignsFrom.After(now) && (k.rec.RetiredAt == nil || k.rec.RetiredAt.After(now)) {
			return k.key, nil
		}
	}
	return token.Key{}, ErrNoSigningKey
}

// Published returns the keys verifiers must know at now: every key not
// retired longer than the retention ago.
func (r *KeyRing) Published(ctx context.Context, now time.Time) ([]token.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(ctx); err != nil {
		return nil, err
	}
	var out []token.Key
	for _, k := range r.keys {
		if k.rec.RetiredAt == nil || now.Sub(*k.rec.RetiredAt) < r.retain {
			out = append(out, k.key)
		}
	}
	return out, nil
}

// Rotate publishes a new key now that starts signing after lead (at least
// the verifiers' JWKS refresh interval, so they know it first); the key
// signing until then retires at that moment. Keys retired longer than the
// retention ago are deleted. It returns the new key's record.
func (r *KeyRing) Rotate(ctx context.Context, now time.Time, lead time.Duration) (store.SigningKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(ctx); err != nil {
		return store.SigningKey{}, err
	}
	from := now.Add(lead)
	for _, k := range r.keys {
		if k.rec.RetiredAt == nil {
			if err := r.st.RetireKey(ctx, k.rec.ID, from); err != nil {
				return store.SigningKey{}, fmt.Errorf("retire key %s: %w", k.rec.ID, err)
			}
		}
	}
	rec, err := r.addLocked(ctx, from)
	if err != nil {
		return store.SigningKey{}, err
	}
	for _, k := range r.keys {
		if k.rec.RetiredAt != nil && now.Sub(*k.rec.RetiredAt) >= r.retain {
			if err := r.st.DeleteKey(ctx, k.rec.ID); err != nil {
				return store.SigningKey{}, fmt.Errorf("delete key %s: %w", k.rec.ID, err)
			}
			if err := os.Remove(r.path(k.rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return store.SigningKey{}, fmt.Errorf("delete key %s: %w", k.rec.ID, err)
			}
		}
	}
	return rec, r.loadLocked(ctx)
}
