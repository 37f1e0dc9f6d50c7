package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"trackgate/internal/token"
)

// ErrToken is a device token that does not verify, or is not a device's.
var ErrToken = errors.New("not a valid device token")

// deviceTokens verifies device tokens (the OwnTracks apps' password)
// against the cloud's keys, as the broker does: the key set and the
// revocation list are cached in the data directory, so that the check
// works while the cloud is unreachable. It comes up in the background.
type deviceTokens struct {
	*token.BackgroundVerifier
}

func newDeviceTokens(cloud, issuer, data string, log *slog.Logger) (*deviceTokens, error) {
	cloud = strings.TrimSuffix(cloud, "/")
	rev, err := token.NewRevocations(token.RevocationsConfig{URL: cloud + "/api/v1/revocations",
		CacheFile: filepath.Join(data, "revocations.json"), Logger: log})
	if err != nil {
		return nil, err
	}
	return &deviceTokens{token.NewBackgroundVerifier(token.VerifierConfig{
		JWKSURL: cloud + "/.well-known/jwks.json", Issuer: issuer, Audience: "mqtt",
		CacheFile: filepath.Join(data, "jwks.json"), Logger: log,
	}, rev)}, nil
}

// verify checks a device token and returns its claims: a device's (scope
// device, a subject that is neither a user's nor a service's).
func (d *deviceTokens) verify(ctx context.Context, raw string) (*token.Claims, error) {
	c, err := d.Verify(ctx, raw)
	if errors.Is(err, token.ErrNotReady) {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if !c.HasScope("device") || strings.HasPrefix(c.Subject, "svc:") || strings.HasPrefix(c.Subject, "usr:") {
		return nil, fmt.Errorf("%w: not a device's token", ErrToken)
	}
	return c, nil
}
