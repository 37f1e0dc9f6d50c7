package broker_test

import (
	"log/slog"
	"testing"
	"time"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/token"
)

// issuer is the test issuer (brokertest.Issuer) with the short names the
// broker's tests use.
type issuer struct{ *brokertest.Issuer }

func newIssuer(t testing.TB) *issuer { return &issuer{brokertest.NewIssuer(t)} }

// revoke adds a token id to the revocation list.
func (iss *issuer) revoke(jti string) { iss.Revoke(jti) }

// claims returns valid broker-token claims for sub with scope.
func (iss *issuer) claims(sub, scope string) *token.Claims { return iss.Claims(sub, scope) }

// sign signs c with the issuer's key.
func (iss *issuer) sign(t testing.TB, c *token.Claims) string {
	t.Helper()
	return iss.Sign(t, c)
}

// deviceToken is a device token for id (scope device).
func (iss *issuer) deviceToken(t testing.TB, id string) string {
	t.Helper()
	return iss.Sign(t, iss.Claims(id, broker.ScopeDevice))
}

// startBroker runs a broker that verifies the issuer's tokens (keys and
// revocations over HTTP, revocations fetched every 100 ms), with TCP and
// WebSocket listeners on loopback; edit may change the config first.
func startBroker(t testing.TB, iss *issuer, edit func(*broker.Config)) *brokertest.Broker {
	t.Helper()
	cfg := broker.Config{
		Auth:   broker.AuthConfig{Issuer: iss.URL, RevocationsInterval: 100 * time.Millisecond, Data: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&cfg)
	}
	return brokertest.Start(t, cfg)
}
