package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"

	"trackgate/internal/atomicfile"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
)

// maxJWKSBytes is the largest JWKS document accepted, from the issuer or from
// the cache file.
const maxJWKSBytes = 1 << 20

// keySet is one parsed JWKS: immutable, replaced whole on refresh.
type keySet struct {
	algs map[string]string // kid → the JWK's alg
	kids []string          // sorted, for logs
	kf   keyfunc.Keyfunc
}

// parseKeySet turns a JWKS document into a keySet. It keeps each key that has
// a kid, an alg and use "sig" (or no use), and that jwkset can read; it drops
// the others with a warning. Private members, which a JWKS must not carry,
// are ignored (and warned about). It fails if no key is left.
func (v *Verifier) parseKeySet(raw []byte) (*keySet, error) {
	var doc jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	ks := &keySet{algs: make(map[string]string, len(doc.Keys))}
	store := jwkset.NewMemoryStorage()
	for i, m := range doc.Keys {
		skip := ""
		switch {
		case m.KID == "" || len(m.KID) > MaxKIDLen:
			skip = fmt.Sprintf("kid of %d bytes, want 1 to %d", len(m.KID), MaxKIDLen)
		case m.ALG == "":
			skip = "no alg"
		case m.USE != "" && m.USE != jwkset.UseSig:
			skip = fmt.Sprintf("use %q", m.USE)
		case ks.algs[m.KID] != "":
			skip = "kid appears twice"
		}
		if m.D != "" || m.K != "" || m.P != "" || m.Q != "" {
			v.log.Warn("JWKS key carries private key material: ignoring it", "index", i, "kid", truncate(m.KID))
		}
		if skip != "" {
			v.log.Warn("JWKS key skipped", "index", i, "kid", truncate(m.KID), "reason", skip)
			continue
		}
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			v.log.Warn("JWKS key skipped", "index", i, "kid", truncate(m.KID), "err", err)
			continue
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			return nil, fmt.Errorf("store JWK %q: %w", m.KID, err)
		}
		ks.algs[m.KID] = string(m.ALG)
		ks.kids = append(ks.kids, m.KID)
	}
	if len(ks.kids) == 0 {
		return nil, fmt.Errorf("JWKS has no usable key among %d", len(doc.Keys))
	}
	slices.Sort(ks.kids)
	kf, err := keyfunc.New(keyfunc.Options{Storage: store})
	if err != nil {
		return nil, fmt.Errorf("JWKS keyfunc: %w", err)
	}
	ks.kf = kf
	return ks, nil
}

// refresh fetches the JWKS, installs its keys and writes it to CacheFile. On
// error the keys held stay in use.
func (v *Verifier) refresh(ctx context.Context) error {
	raw, err := v.fetch(ctx)
	if err != nil {
		return err
	}
	ks, err := v.parseKeySet(raw)
	if err != nil {
		return fmt.Errorf("JWKS from %s: %w", v.cfg.JWKSURL, err)
	}
	if old := v.keys.Swap(ks); old == nil || !slices.Equal(old.kids, ks.kids) {
		v.log.Info("JWKS keys installed", "kids", ks.kids)
	}
	if v.cfg.CacheFile != "" && !bytes.Equal(raw, v.cached) {
		if err := atomicfile.Write(v.cfg.CacheFile, raw); err != nil {
			v.log.Warn("JWKS cache not written", "file", v.cfg.CacheFile, "err", err)
		} else {
			v.cached = raw
		}
	}
	return nil
}

// fetch GETs the JWKS document.
func (v *Verifier) fetch(ctx context.Context) ([]byte, error) {
	if v.cfg.Fetch != nil {
		return v.cfg.Fetch(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: %s", v.cfg.JWKSURL, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS %s: %w", v.cfg.JWKSURL, err)
	}
	if len(raw) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS %s: larger than %d bytes", v.cfg.JWKSURL, maxJWKSBytes)
	}
	return raw, nil
}

// loadCache installs the keys of CacheFile, if it is set and holds a usable
// JWKS in a file that only its owner can write. Anything else is logged and
// ignored: the fetch that follows decides.
func (v *Verifier) loadCache() {
	name := v.cfg.CacheFile
	if name == "" {
		return
	}
	log := v.log.With("file", name)
	raw, err := readCache(name, maxJWKSBytes)
	if errors.Is(err, fs.ErrNotExist) {
		log.Debug("no JWKS cache yet")
		return
	}
	if err != nil {
		log.Warn("JWKS cache ignored", "err", err)
		return
	}
	ks, err := v.parseKeySet(raw)
	if err != nil {
		log.Warn("JWKS cache ignored", "err", err)
		return
	}
	v.keys.Store(ks)
	v.cached = raw
	log.Info("JWKS cache loaded", "kids", ks.kids)
}

// readCache reads a cache file written by atomicfile.Write: a regular file of
// at most limit bytes that only its owner can write. A file that is missing
// gives an error wrapping fs.ErrNotExist.
func readCache(name string, limit int64) ([]byte, error) {
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular() || fi.Size() > limit:
		return nil, fmt.Errorf("not a regular file of at most %d bytes", limit)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("others can write it (mode %s)", fi.Mode().Perm())
	}
	return os.ReadFile(name)
}
