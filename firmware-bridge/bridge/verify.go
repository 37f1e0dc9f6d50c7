package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"trackgate/internal/token"
)

// ErrToken is a device token that does not verify, or is not a device's.
var ErrToken = errors.New("not a valid device token")

// deviceTokens verifies device tokens (the OwnTracks apps' password)
// against the cloud's keys, as the broker does: the key set and the
// revocation list are cached in the data directory, so that the check
// works while the cloud is unreachable. It comes up in the background.
type deviceTokens struct {
	cloud       string
	issuer      string
	data        string
	log         *slog.Logger
	revocations *token.Revocations
	verifier    atomic.Pointer[token.Verifier]
}

func newDeviceTokens(cloud, issuer, data string, log *slog.Logger) (*deviceTokens, error) {
	cloud = strings.TrimSuffix(cloud, "/")
	rev, err := token.NewRevocations(token.RevocationsConfig{URL: cloud + "/api/v1/revocations",
		CacheFile: filepath.Join(data, "revocations.json"), Logger: log})
	if err != nil {
		return nil, err
	}
	return &deviceTokens{cloud: cloud, issuer: issuer, data: data, log: log, revocations: rev}, nil
}

// run keeps the revocation list fresh and brings the verifier up, retrying
// until the keys can be had or ctx ends.
func (d *deviceTokens) run(ctx context.Context) {
	go d.revocations.Run(ctx)
	wait := time.Second
	for {
		v, err := token.NewVerifier(ctx, token.VerifierConfig{
			JWKSURL: d.cloud + "/.well-known/jwks.json", Issuer: d.issuer, Audience: "mqtt",
			CacheFile: filepath.Join(d.data, "jwks.json"), Revoked: d.revocations.Revoked, Logger: d.log,
		})
		if err == nil {
			d.verifier.Store(v)
			return
		}
		d.log.Warn("no signing keys yet: device tokens are refused until the cloud answers", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// verify checks a device token and returns its claims: a device's (scope
// device, a subject that is neither a user's nor a service's).
func (d *deviceTokens) verify(ctx context.Context, raw string) (*token.Claims, error) {
	v := d.verifier.Load()
	if v == nil {
		return nil, fmt.Errorf("%w: the cloud's signing keys are not known yet", ErrUnavailable)
	}
	c, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if !c.HasScope("device") || strings.HasPrefix(c.Subject, "svc:") || strings.HasPrefix(c.Subject, "usr:") {
		return nil, fmt.Errorf("%w: not a device's token", ErrToken)
	}
	return c, nil
}
