package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"trackgate/cloud/store"
	"trackgate/internal/token"
)

// GrantStore keeps what users granted clients: sign-in sessions,
// authorization codes, grants with their tokens, device authorizations.
type GrantStore interface {
	CreateSession(ctx context.Context, ss *store.Session) error
	Session(ctx context.Context, idHash string) (*store.Session, error)
	DeleteSession(ctx context.Context, idHash string) error
	CreateCode(ctx context.Context, c *store.Code) error
	RedeemCode(ctx context.Context, hash string) (*store.Code, error)
	Grant(ctx context.Context, id string) (*store.Grant, error)
	RevokeGrant(ctx context.Context, id string) error
	RevokeUserGrants(ctx context.Context, userID int64) error
	RefreshToken(ctx context.Context, hash string) (*store.RefreshToken, error)
	AddTokens(ctx context.Context, grantID string, iss store.Issued) error
	Rotate(ctx context.Context, oldHash, successor string, iss store.Issued) error
	CreateDeviceCode(ctx context.Context, d *store.DeviceCode) error
	DeviceCodeByUserCode(ctx context.Context, userCode string) (*store.DeviceCode, error)
	DecideDeviceCode(ctx context.Context, userCode string, g *store.Grant) error
	PollDeviceCode(ctx context.Context, hash, clientID string, now time.Time) (*store.DeviceCode, bool, error)
}

// ScopeOpenID asks for an ID token (OpenID Connect) and /userinfo.
const ScopeOpenID = "openid"

// userSubject is the sub of a user's tokens: user ids live apart from
// device ids, which may not start with "usr:".
func userSubject(name string) string { return userPrefix + name }

const userPrefix = "usr:"

// ServicePrefix starts the sub of a service's tokens ("svc:" and the client
// id), so that no device, user or service can pass for another: device ids
// may start with neither prefix.
const ServicePrefix = "svc:"

// serverError answers a failure of ours without detail.
func (s *Server) serverError(msg string, err error) *oauthError {
	s.log.Error(msg, "err", err)
	return &oauthError{Code: "server_error", status: http.StatusInternalServerError}
}

func invalidGrant(desc string) *oauthError { return errorf("invalid_grant", "%s", desc) }

// authorizationCode redeems an authorization code (RFC 6749 §4.1.3 with
// PKCE, RFC 7636 §4.6). The code is spent by the first attempt whatever
// its outcome; a second redemption revokes what the first one issued.
func (s *Server) authorizationCode(ctx context.Context, client *store.Client, form url.Values) (*tokenResponse, *oauthError) {
	raw := form.Get("code")
	if raw == "" {
		return nil, invalidRequest("code is missing")
	}
	c, err := s.st.RedeemCode(ctx, hashSecret(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, invalidGrant("unknown authorization code")
	case errors.Is(err, store.ErrUsed):
		if err := s.st.RevokeGrant(ctx, c.Grant.ID); err != nil {
			return nil, s.serverError("revoke grant of a reused code", err)
		}
		s.revoked()
		s.log.Warn("authorization code redeemed twice: its tokens are revoked", "client", c.Grant.ClientID, "user", c.Grant.User)
		return nil, invalidGrant("authorization code already used; the tokens issued for it are revoked")
	case err != nil:
		return nil, s.serverError("redeem code", err)
	}
	verifier := form.Get("code_verifier")
	switch {
	case !s.now().Before(c.ExpiresAt):
		return nil, invalidGrant("authorization code expired")
	case c.Grant.ClientID != client.ID:
		return nil, invalidGrant("authorization code issued to another client")
	case form.Get("redirect_uri") != c.RedirectURI:
		return nil, invalidGrant("redirect_uri differs from the authorization request's")
	case !validVerifier(verifier):
		return nil, invalidGrant("code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~")
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.Challenge)) != 1:
		return nil, invalidGrant("code_verifier does not match code_challenge")
	}
	return s.grantTokens(ctx, c.Grant, client, c.Grant.Scopes, c.Nonce, nil)
}

// s256 is the PKCE S256 transform of a code verifier.
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// validVerifier reports whether v is a code verifier of RFC 7636 §4.1.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// refreshGrant exchanges a refresh token for new tokens (RFC 6749 §6),
// rotating it: the old token stops working, and presenting it again
// revokes its grant (RFC 9700 §4.14.2) unless it comes within the grace
// window, which gets the same response again.
func (s *Server) refreshGrant(ctx context.Context, client *store.Client, form url.Values) (*tokenResponse, *oauthError) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, invalidRequest("refresh_token is missing")
	}
	rt, err := s.st.RefreshToken(ctx, hashSecret(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("unknown refresh token")
	}
	if err != nil {
		return nil, s.serverError("refresh token", err)
	}
	g, now := rt.Grant, s.now()
	switch {
	case g.ClientID != client.ID:
		return nil, invalidGrant("refresh token issued to another client")
	case g.RevokedAt != nil:
		return nil, invalidGrant("refresh token revoked")
	case !now.Before(g.ExpiresAt) || !now.Before(rt.ExpiresAt):
		return nil, invalidGrant("refresh token expired: sign in again")
	}
	// A rotated token outside the grace window revokes its grant whatever
	// else the request says: reuse detection must not hinge on the scope.
	if rt.RotatedAt != nil && !s.inGrace(rt, now) {
		return s.refreshReused(ctx, rt, now)
	}
	// No scope (or an empty one) is the grant's; a narrower one is honoured.
	scopes := g.Scopes
	if requested := strings.Fields(form.Get("scope")); len(requested) > 0 {
		for _, sc := range requested {
			if !slices.Contains(g.Scopes, sc) {
				return nil, errorf("invalid_scope", "scope %q was not granted", sc)
			}
		}
		slices.Sort(requested)
		scopes = slices.Compact(requested)
	}
	if rt.RotatedAt != nil {
		return s.refreshReused(ctx, rt, now)
	}
	resp, oerr := s.grantTokens(ctx, g, client, scopes, "", rt)
	if oerr == errRotated {
		// A concurrent refresh with the same token won.
		if rt, err = s.st.RefreshToken(ctx, rt.Hash); err != nil {
			return nil, s.serverError("refresh token", err)
		}
		return s.refreshReused(ctx, rt, now)
	}
	return resp, oerr
}

// errRotated tells refreshGrant that its token was rotated under it.
var errRotated = &oauthError{Code: "invalid_grant"}

// inGrace reports whether rotated refresh token rt, presented at now, is
// within the grace window that gets its successor again.
func (s *Server) inGrace(rt *store.RefreshToken, now time.Time) bool {
	return rt.Successor != "" && now.Sub(*rt.RotatedAt) <= s.cfg.RefreshGrace
}

// refreshReused answers a refresh token presented after its rotation.
func (s *Server) refreshReused(ctx context.Context, rt *store.RefreshToken, now time.Time) (*tokenResponse, *oauthError) {
	if s.inGrace(rt, now) {
		var resp tokenResponse
		plain, err := s.secrets.open(rt.Successor)
		if err == nil {
			err = json.Unmarshal(plain, &resp)
		}
		if err != nil {
			return nil, s.serverError("open successor", err)
		}
		return &resp, nil
	}
	if err := s.st.RevokeGrant(ctx, rt.Grant.ID); err != nil {
		return nil, s.serverError("revoke grant of a reused refresh token", err)
	}
	s.revoked()
	s.log.Warn("refresh token reused: its grant is revoked", "client", rt.Grant.ClientID, "user", rt.Grant.User)
	return nil, invalidGrant("refresh token already used; its grant is revoked: sign in again")
}

// grantTokens issues the tokens of grant g to client: an access token with
// scopes, a refresh token when the client may refresh, and an ID token when
// scopes hold openid. The access token is the broker's when every scope is
// a broker scope, with the ids of the user's devices in its devices claim;
// otherwise it is the API's, with the API scopes alone (a broker token is
// had by refreshing with a scope parameter of broker scopes). With rotate
// set the refresh token replaces rotate (errRotated if another request
// replaced it first).
func (s *Server) grantTokens(ctx context.Context, g *store.Grant, client *store.Client, scopes []string, nonce string, rotate *store.RefreshToken) (*tokenResponse, *oauthError) {
	aud, ok := s.audienceOf(scopes)
	if !ok {
		aud = s.APIAudience()
		scopes = slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return slices.Contains(mqttScopes, sc) })
	}
	var devices []string
	if aud == AudienceMQTT {
		devs, err := s.st.Devices(ctx, g.UserID)
		if err != nil {
			return nil, s.serverError("devices of a broker token", err)
		}
		for _, d := range devs {
			devices = append(devices, d.ID)
		}
		slices.Sort(devices)
	}
	access, claims, err := s.issue(ctx, token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: userSubject(g.User), Audience: jwt.ClaimStrings{aud}},
		ClientID:         client.ID, Scope: strings.Join(scopes, " "), AMR: g.AMR, AuthTime: g.AuthTime.Unix(), Devices: devices,
	}, s.cfg.AccessTokenTTL)
	if err != nil {
		return nil, s.serverError("issue token", err)
	}
	resp := &tokenResponse{AccessToken: access, TokenType: "Bearer", Scope: claims.Scope,
		ExpiresIn: int64(claims.ExpiresAt.Sub(claims.IssuedAt.Time).Seconds())}
	issued := store.Issued{AccessID: claims.ID, AccessExpires: claims.ExpiresAt.Time}
	if slices.Contains(client.GrantTypes, GrantRefreshToken) {
		raw := "tgr_" + newSecret()
		now := s.now()
		expires := now.Add(s.cfg.RefreshIdle)
		if g.ExpiresAt.Before(expires) {
			expires = g.ExpiresAt
		}
		issued.Refresh = &store.RefreshToken{Hash: hashSecret(raw), IssuedAt: now, ExpiresAt: expires}
		resp.RefreshToken = raw
	}
	if slices.Contains(scopes, ScopeOpenID) {
		if resp.IDToken, err = s.idToken(ctx, g, client.ID, nonce, claims); err != nil {
			return nil, s.serverError("issue ID token", err)
		}
	}
	if rotate == nil {
		err = s.st.AddTokens(ctx, g.ID, issued)
	} else {
		var successor string
		if s.cfg.RefreshGrace > 0 {
			plain, _ := json.Marshal(resp)
			if successor, err = s.secrets.seal(plain); err != nil {
				return nil, s.serverError("seal successor", err)
			}
		}
		err = s.st.Rotate(ctx, rotate.Hash, successor, issued)
		if errors.Is(err, store.ErrUsed) {
			return nil, errRotated
		}
	}
	if errors.Is(err, store.ErrRevoked) {
		return nil, invalidGrant("the grant was revoked")
	}
	if err != nil {
		return nil, s.serverError("record tokens", err)
	}
	return resp, nil
}

// idToken signs the ID token that goes with access token claims at.
func (s *Server) idToken(ctx context.Context, g *store.Grant, clientID, nonce string, at *token.Claims) (string, error) {
	k, err := s.keys.Signer(ctx, time.Now())
	if err != nil {
		return "", err
	}
	return token.SignID(k, &token.IDClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: at.Subject, Audience: jwt.ClaimStrings{clientID},
			IssuedAt: at.IssuedAt, ExpiresAt: at.ExpiresAt, ID: newID()},
		AuthTime: g.AuthTime.Unix(), Nonce: nonce, AMR: g.AMR, AZP: clientID, PreferredUsername: g.User,
	})
}

// deviceCodeGrant answers a device's poll (RFC 8628 §3.4, §3.5).
func (s *Server) deviceCodeGrant(ctx context.Context, client *store.Client, form url.Values) (*tokenResponse, *oauthError) {
	raw := form.Get("device_code")
	if raw == "" {
		return nil, invalidRequest("device_code is missing")
	}
	now := s.now()
	d, slow, err := s.st.PollDeviceCode(ctx, hashSecret(raw), client.ID, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalidGrant("unknown device code")
	}
	if err != nil {
		return nil, s.serverError("poll device code", err)
	}
	switch {
	case d.ClientID != client.ID:
		return nil, invalidGrant("device code issued to another client")
	case d.Status == store.DeviceUsed:
		return nil, invalidGrant("device code already used")
	case !now.Before(d.ExpiresAt):
		return nil, errorf("expired_token", "the device code expired: start again")
	case slow:
		return nil, errorf("slow_down", "polling faster than every %d s: wait 5 s more between polls", int(d.Interval.Seconds()))
	case d.Status == store.DevicePending:
		return nil, errorf("authorization_pending", "waiting for the user to approve")
	case d.Status == store.DeviceDenied:
		return nil, errorf("access_denied", "the user denied the request")
	}
	g, err := s.st.Grant(ctx, d.GrantID)
	if err != nil {
		return nil, s.serverError("device grant", err)
	}
	return s.grantTokens(ctx, g, client, g.Scopes, "", nil)
}

// deviceAuthorization serves POST /device_authorization (RFC 8628 §3.1).
func (s *Server) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	form, client, ok := s.formClient(w, r)
	if !ok {
		return
	}
	if !slices.Contains(client.GrantTypes, GrantDeviceCode) {
		s.writeError(w, errorf("unauthorized_client", "client %s may not use the device grant", client.ID))
		return
	}
	scopes, oerr := userScopes(client, form.Get("scope"))
	if oerr != nil {
		s.writeError(w, oerr)
		return
	}
	raw := "tgd_" + newSecret()
	d := &store.DeviceCode{Hash: hashSecret(raw), ClientID: client.ID, Scopes: scopes, Interval: deviceInterval,
		ExpiresAt: s.now().Add(deviceCodeTTL)}
	var err error
	for range 5 { // a user code collides once in billions: retry a few times
		d.UserCode = newUserCode()
		if err = s.st.CreateDeviceCode(r.Context(), d); !errors.Is(err, store.ErrExists) {
			break
		}
	}
	if err != nil {
		s.writeError(w, s.serverError("create device code", err))
		return
	}
	verify := s.url("/device")
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code": raw, "user_code": formatUserCode(d.UserCode),
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + formatUserCode(d.UserCode),
		"expires_in":                int(deviceCodeTTL.Seconds()), "interval": int(deviceInterval.Seconds()),
	})
}

// url returns the absolute URL of path on the issuer.
func (s *Server) url(path string) string { return strings.TrimSuffix(s.cfg.Issuer, "/") + path }

// userScopes returns the scopes a user-facing client asked for (all it may
// have when it asked for none), or invalid_scope. A broker scope is allowed
// when the client lists it (the gateway's), introspect never.
func userScopes(client *store.Client, requested string) ([]string, *oauthError) {
	scopes := strings.Fields(requested)
	if len(scopes) == 0 {
		scopes = slices.Clone(client.Scopes)
	}
	for _, sc := range scopes {
		if !slices.Contains(client.Scopes, sc) || sc == ScopeIntrospect {
			return nil, errorf("invalid_scope", "scope %q is not allowed for client %s", sc, client.ID)
		}
	}
	slices.Sort(scopes)
	return slices.Compact(scopes), nil
}

// userCodeAlphabet has no vowels (no words) and no look-alike digits
// (RFC 8628 §6.1): 8 of them are 34.6 bits.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

const userCodeLen = 8

// newUserCode returns a random user code, uniform over the alphabet.
func newUserCode() string {
	out := make([]byte, 0, userCodeLen)
	buf := make([]byte, 16)
	for len(out) < userCodeLen {
		randRead(buf)
		for _, b := range buf {
			// 240 is the largest multiple of 20 ≤ 256: no modulo bias.
			if b < 240 && len(out) < userCodeLen {
				out = append(out, userCodeAlphabet[b%20])
			}
		}
	}
	return string(out)
}

// normalUserCode is a typed user code in stored form: upper case, without
// dashes or spaces; "" when it cannot be one.
func normalUserCode(typed string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(typed) {
		switch {
		case c == '-' || c == ' ':
		case strings.ContainsRune(userCodeAlphabet, c):
			b.WriteRune(c)
		default:
			return ""
		}
	}
	if b.Len() != userCodeLen {
		return ""
	}
	return b.String()
}

// formatUserCode shows a user code as XXXX-XXXX.
func formatUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}
