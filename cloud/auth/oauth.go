package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"trackgate/cloud/store"
	"trackgate/internal/token"
)

// oauthError is an error response of RFC 6749 §5.2.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
	basic       bool // the client tried HTTP Basic: answer with a challenge
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func invalidRequest(format string, a ...any) *oauthError {
	return &oauthError{Code: "invalid_request", Description: fmt.Sprintf(format, a...), status: http.StatusBadRequest}
}

func errorf(code, format string, a ...any) *oauthError {
	return &oauthError{Code: code, Description: fmt.Sprintf(format, a...), status: http.StatusBadRequest}
}

// noStore marks a response that carries a token or a credential.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) writeError(w http.ResponseWriter, e *oauthError) {
	status := e.status
	if e.Code == "invalid_client" {
		status = http.StatusUnauthorized
		if e.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="trackgate", charset="UTF-8"`)
		}
	}
	writeJSON(w, status, e)
}

// maxForm is the largest request body the form endpoints read.
const maxForm = 64 << 10

// readForm reads an application/x-www-form-urlencoded POST body. Nothing is
// taken from the query string, which must be empty, and a parameter given
// twice is an error (RFC 6749 §3.1, §3.2).
func readForm(r *http.Request) (url.Values, *oauthError) {
	if r.URL.RawQuery != "" {
		return nil, invalidRequest("parameters belong in the body, not the URL")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxForm+1))
	if err != nil {
		return nil, invalidRequest("read body: %v", err)
	}
	if len(body) > maxForm {
		return nil, invalidRequest("body larger than %d bytes", maxForm)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("malformed body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, invalidRequest("parameter %q given more than once", k)
		}
	}
	return form, nil
}

// authenticateClient identifies the calling client: HTTP Basic
// (client_secret_basic), client_id and client_secret in the body
// (client_secret_post), or client_id alone for a public client. Using two
// methods at once is an error.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*store.Client, *oauthError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, &oauthError{Code: "invalid_client", Description: "malformed Basic credentials", basic: true}
		}
		if form.Has("client_secret") || form.Has("client_assertion") {
			return nil, invalidRequest("use one client authentication method, not two")
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			return nil, invalidRequest("client_id differs from the authenticated client")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if form.Has("client_assertion") || form.Has("client_assertion_type") {
			if form.Has("client_secret") {
				return nil, invalidRequest("use one client authentication method, not two")
			}
			return s.assertionClient(ctx, form)
		}
	}
	fail := &oauthError{Code: "invalid_client", Description: "unknown client or wrong credentials", basic: basic}
	if id == "" {
		return nil, fail
	}
	c, err := s.st.Client(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("client lookup", "err", err)
		}
		// Spend the time of a secret check either way.
		secretMatches(hashSecret("x"), secret)
		return nil, fail
	}
	switch {
	case c.Public() && secret != "":
		return nil, fail
	case c.Public():
		return c, nil
	case c.JWK != "":
		return nil, &oauthError{Code: "invalid_client", Description: "this client authenticates with private_key_jwt", basic: basic}
	case !secretMatches(c.SecretHash, secret):
		return nil, fail
	}
	return c, nil
}

// formClient reads a form request and authenticates its client, answering
// the error itself when either fails.
func (s *Server) formClient(w http.ResponseWriter, r *http.Request) (url.Values, *store.Client, bool) {
	form, oerr := readForm(r)
	if oerr == nil {
		var client *store.Client
		if client, oerr = s.authenticateClient(r.Context(), r, form); oerr == nil {
			return form, client, true
		}
	}
	s.writeError(w, oerr)
	return nil, nil, false
}

// tokenParam returns the form's token parameter, answering invalid_request
// when it is missing.
func tokenParam(w http.ResponseWriter, s *Server, form url.Values) (string, bool) {
	raw := form.Get("token")
	if raw == "" {
		s.writeError(w, invalidRequest("token is missing"))
	}
	return raw, raw != ""
}

// tokenResponse is a successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// tokenEndpoint serves POST /token, and POST /refresh, where the grant
// type may be left out.
func (s *Server) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	form, client, ok := s.formClient(w, r)
	if !ok {
		return
	}
	grant := form.Get("grant_type")
	if r.URL.Path == "/refresh" && grant == "" {
		grant = GrantRefreshToken
	}
	switch {
	case grant == "":
		s.writeError(w, invalidRequest("grant_type is missing"))
		return
	case !slices.Contains(grants, grant) || r.URL.Path == "/refresh" && grant != GrantRefreshToken:
		s.writeError(w, errorf("unsupported_grant_type", "grant type %q is not supported here", grant))
		return
	case !slices.Contains(client.GrantTypes, grant):
		s.writeError(w, errorf("unauthorized_client", "client %s may not use the %s grant", client.ID, grant))
		return
	}
	var resp *tokenResponse
	var oerr *oauthError
	switch grant {
	case GrantClientCredentials:
		resp, oerr = s.clientCredentials(r.Context(), client, form)
	case GrantAuthorizationCode:
		resp, oerr = s.authorizationCode(r.Context(), client, form)
	case GrantRefreshToken:
		resp, oerr = s.refreshGrant(r.Context(), client, form)
	case GrantDeviceCode:
		resp, oerr = s.deviceCodeGrant(r.Context(), client, form)
	}
	if oerr != nil {
		s.writeError(w, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// grants lists the grant types the token endpoint supports.
var grants = []string{GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode, GrantClientCredentials}

// clientCredentials issues a token to a confidential client for itself
// (RFC 6749 §4.4): no refresh token.
func (s *Server) clientCredentials(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, *oauthError) {
	if c.Public() {
		return nil, errorf("unauthorized_client", "a public client cannot use client_credentials")
	}
	scopes := strings.Fields(form.Get("scope"))
	if len(scopes) == 0 {
		for _, sc := range c.Scopes {
			if sc != ScopeIntrospect {
				scopes = append(scopes, sc)
			}
		}
	}
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) || sc == ScopeIntrospect {
			return nil, errorf("invalid_scope", "scope %q is not allowed for client %s", sc, c.ID)
		}
	}
	if len(scopes) == 0 {
		return nil, errorf("invalid_scope", "no scope")
	}
	aud, ok := s.audienceOf(scopes)
	if !ok {
		return nil, errorf("invalid_scope", "ask for the scopes of one audience per token: %s are for the broker, the others for the API", strings.Join(mqttScopes, ", "))
	}
	sub := c.ID // a tracker: its device id
	if c.JWK == "" {
		sub = ServicePrefix + c.ID
	}
	tok, claims, err := s.issue(ctx, token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, Audience: jwt.ClaimStrings{aud}},
		ClientID:         c.ID, Scope: strings.Join(scopes, " "),
	}, s.cfg.AccessTokenTTL)
	if err == nil {
		err = s.st.AddClientToken(ctx, c.ID, claims.ID, claims.ExpiresAt.Time)
	}
	if err != nil {
		return nil, s.serverError("issue token", err)
	}
	return &tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(claims.ExpiresAt.Sub(claims.IssuedAt.Time).Seconds()),
		Scope: claims.Scope}, nil
}

// issue signs a token that lives ttl from the claims in c: the subject,
// client, audience, scope and sign-in of the caller's choosing; issue sets
// iss, iat, exp and a fresh jti.
func (s *Server) issue(ctx context.Context, c token.Claims, ttl time.Duration) (string, *token.Claims, error) {
	now := time.Now().Truncate(time.Second)
	c.Issuer = s.cfg.Issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	c.ID = newID()
	tok, err := s.sign(ctx, &c)
	return tok, &c, err
}

// verifyOwn checks a token the server issued, for any of its audiences.
func (s *Server) verifyOwn(ctx context.Context, raw string) (*token.Claims, error) {
	c, err := s.apiVerifier.Verify(ctx, raw)
	if errors.Is(err, token.ErrAudience) {
		c, err = s.mqttVerifier.Verify(ctx, raw)
	}
	return c, err
}

// introspect serves POST /introspect (RFC 7662) to resource servers: clients
// with the introspect scope. A caller that asks about too many inactive
// tokens in a minute is refused with 429 for the rest of it.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	form, client, ok := s.formClient(w, r)
	if !ok {
		return
	}
	if client.Public() || !slices.Contains(client.Scopes, ScopeIntrospect) {
		s.writeError(w, &oauthError{Code: "invalid_client", Description: "only resource servers may introspect"})
		return
	}
	if ok, wait := s.introspects.take(client.ID, s.now()); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		s.writeError(w, &oauthError{Code: "slow_down", Description: "too many lookups of inactive tokens", status: http.StatusTooManyRequests})
		return
	}
	raw, ok := tokenParam(w, s, form)
	if !ok {
		return
	}
	if c, err := s.verifyOwn(r.Context(), raw); err == nil {
		s.introspects.giveBack(client.ID)
		writeJSON(w, http.StatusOK, map[string]any{
			"active": true, "scope": c.Scope, "client_id": c.ClientID, "sub": c.Subject, "iss": c.Issuer,
			"aud": c.Audience, "exp": c.ExpiresAt.Unix(), "iat": c.IssuedAt.Unix(), "jti": c.ID, "token_type": "Bearer",
		})
		return
	}
	if rt := s.activeRefresh(r.Context(), raw); rt != nil {
		s.introspects.giveBack(client.ID)
		// A refresh token is for the authorization server alone: its
		// audience is the issuer, never a resource, so that a resource
		// server checking aud cannot take it for an access token.
		writeJSON(w, http.StatusOK, map[string]any{
			"active": true, "scope": strings.Join(rt.Grant.Scopes, " "), "client_id": rt.Grant.ClientID,
			"sub": userSubject(rt.Grant.User), "iss": s.cfg.Issuer, "aud": []string{s.cfg.Issuer},
			"exp": rt.ExpiresAt.Unix(), "iat": rt.IssuedAt.Unix(), "token_type": "refresh_token",
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"active": false})
}

// activeRefresh returns the refresh token raw when it is one that still
// works, nil otherwise.
func (s *Server) activeRefresh(ctx context.Context, raw string) *store.RefreshToken {
	rt := s.knownRefresh(ctx, raw)
	if rt == nil {
		return nil
	}
	now := s.now()
	if rt.RotatedAt != nil || rt.Grant.RevokedAt != nil || !now.Before(rt.ExpiresAt) || !now.Before(rt.Grant.ExpiresAt) {
		return nil
	}
	return rt
}

// knownRefresh returns the refresh token raw, active or not, or nil when
// there is none.
func (s *Server) knownRefresh(ctx context.Context, raw string) *store.RefreshToken {
	if !strings.HasPrefix(raw, "tgr_") {
		return nil
	}
	rt, err := s.st.RefreshToken(ctx, hashSecret(raw))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("refresh token lookup", "err", err)
		}
		return nil
	}
	return rt
}

// revoke serves POST /revoke (RFC 7009): a client revokes one of its own
// tokens; a refresh token takes its whole grant with it. Unknown, expired
// and already revoked tokens get 200 too.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	form, client, ok := s.formClient(w, r)
	if !ok {
		return
	}
	raw, ok := tokenParam(w, s, form)
	if !ok {
		return
	}
	var owner string
	var err error
	if c, verr := s.verifyOwn(r.Context(), raw); verr == nil {
		if owner = c.ClientID; owner == client.ID {
			if err = s.st.Revoke(r.Context(), c.ID, c.ExpiresAt.Time); err == nil {
				s.revoked()
			}
		}
	} else if rt := s.knownRefresh(r.Context(), raw); rt != nil && rt.Grant.RevokedAt == nil {
		// A rotated token too: its grant goes.
		if owner = rt.Grant.ClientID; owner == client.ID {
			// Its access tokens may be a broker's (the gateway's).
			if err = s.st.RevokeGrant(r.Context(), rt.Grant.ID); err == nil {
				s.revoked()
			}
		}
	} else {
		w.WriteHeader(http.StatusOK) // nothing to revoke, and no oracle
		return
	}
	switch {
	case owner != client.ID:
		s.writeError(w, errorf("unauthorized_client", "the token was not issued to client %s", client.ID))
	case err != nil:
		s.writeError(w, s.serverError("revoke", err))
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// metadata serves the authorization server metadata (RFC 8414), also as the
// OpenID configuration.
func (s *Server) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                           s.cfg.Issuer,
		"authorization_endpoint":                           s.url("/authorize"),
		"token_endpoint":                                   s.url("/token"),
		"device_authorization_endpoint":                    s.url("/device_authorization"),
		"introspection_endpoint":                           s.url("/introspect"),
		"revocation_endpoint":                              s.url("/revoke"),
		"userinfo_endpoint":                                s.url("/userinfo"),
		"jwks_uri":                                         s.url("/.well-known/jwks.json"),
		"grant_types_supported":                            grants,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{token.Alg},
		"token_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"ES256", "EdDSA"},
		"introspection_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":       []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"authorization_response_iss_parameter_supported":   true,
		"prompt_values_supported":                          []string{"none", "login"},
		"claims_supported":                                 []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "preferred_username"},
		"scopes_supported": []string{ScopeOpenID, ScopeTracksRead, ScopeTracksWrite, ScopeDevicesRead, ScopeDevicesWrite,
			ScopeRevocationsRead, ScopeIngest, ScopeDevice, ScopeGateway},
	})
}

// revocations serves GET /api/v1/revocations: the revoked token ids not yet
// expired, with their expiry, for the verifiers (brokers at the edge) that
// poll it every few seconds. Like a certificate revocation list it is public:
// a token id grants nothing, and a gateway checks revocations before it holds
// any credential of its own. An ETag makes an unchanged list a 304.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) {
	revs, err := s.st.Revocations(r.Context())
	if err != nil {
		s.log.Error("revocations", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if revs == nil {
		revs = []store.Revocation{}
	}
	body, err := json.Marshal(map[string]any{"revocations": revs})
	if err != nil {
		s.log.Error("revocations", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
