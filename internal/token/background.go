package token

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// ErrNotReady is what a BackgroundVerifier returns while it has no signing
// keys yet (none fetched, none cached): the caller should answer
// "unavailable, try again", not "bad credentials".
var ErrNotReady = errors.New("token verifier not ready: no signing keys yet")

// BackgroundVerifier is a Verifier brought up in the background, for a
// process that must start while the issuer is unreachable (a gateway
// offline, a bridge started before the cloud). Until NewVerifier succeeds
// Verify returns ErrNotReady; Run keeps trying, with backoff, and keeps the
// revocation list, if any, fresh.
type BackgroundVerifier struct {
	cfg VerifierConfig
	rev *Revocations
	v   atomic.Pointer[Verifier]
}

// NewBackgroundVerifier returns a verifier of cfg that checks tokens
// against rev (when not nil) once Run has brought it up. It does no I/O.
func NewBackgroundVerifier(cfg VerifierConfig, rev *Revocations) *BackgroundVerifier {
	if rev != nil {
		cfg.Revoked = rev.Revoked
	}
	return &BackgroundVerifier{cfg: cfg, rev: rev}
}

// Run refreshes the revocation list until ctx ends, and brings the
// verifier up, retrying every 1 s to 30 s until the keys can be had.
func (b *BackgroundVerifier) Run(ctx context.Context) {
	if b.rev != nil {
		go b.rev.Run(ctx)
	}
	log := b.cfg.Logger
	wait := time.Second
	for {
		v, err := NewVerifier(ctx, b.cfg)
		if err == nil {
			b.v.Store(v)
			if log != nil {
				log.Info("verifying tokens", "issuer", b.cfg.Issuer, "jwks", b.cfg.JWKSURL)
			}
			return
		}
		if log != nil {
			log.Warn("no signing keys yet: tokens are refused as unavailable until the issuer answers", "jwks", b.cfg.JWKSURL, "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// Ready reports whether the verifier is up.
func (b *BackgroundVerifier) Ready() bool { return b.v.Load() != nil }

// Verify checks a token once the verifier is up; ErrNotReady before.
func (b *BackgroundVerifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	v := b.v.Load()
	if v == nil {
		return nil, ErrNotReady
	}
	return v.Verify(ctx, raw)
}
