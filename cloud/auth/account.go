package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"

	"trackgate/cloud/problem"
	"trackgate/cloud/store"
)

// The account API lets people manage their own sign-in: GET
// /api/v1/account, POST /api/v1/account/password, and TOTP enrolment in two
// steps (POST /api/v1/account/totp, then /api/v1/account/totp/confirm with
// a code of the new key, so that a key that was never scanned does not lock
// anyone out). Every change asks for the current password again.

// totpEnrolTTL is how long an enrolment waits for its confirming code.
const totpEnrolTTL = 10 * time.Minute

// totpEnrolment is a TOTP key waiting for its first code, sealed and handed
// to the client (which shows the key anyway).
type totpEnrolment struct {
	User    int64     `json:"u"`
	Secret  string    `json:"s"`
	Expires time.Time `json:"e"`
}

// accountCall is the prologue of the account API's changes: the caller's
// user, and the JSON request body decoded into v; false once it answered an
// error.
func (s *Server) accountCall(w http.ResponseWriter, r *http.Request, v any) (*store.User, bool) {
	u, ok := s.APIUser(w, r, ScopeOpenID)
	if !ok {
		return nil, false
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem.Write(w, problem.InvalidRequest, "body: "+err.Error(), nil)
		return nil, false
	}
	return u, true
}

// account serves GET /api/v1/account.
func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	u, ok := s.APIUser(w, r, ScopeOpenID)
	if !ok {
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, map[string]any{"name": u.Name, "totp": u.TOTPSecret != ""})
}

// reauthenticate checks the current password of a change to u's sign-in,
// throttled as sign-ins are, answering 403 or 429 when it fails.
func (s *Server) reauthenticate(w http.ResponseWriter, r *http.Request, u *store.User, password string) bool {
	now, account := s.now(), strings.ToLower(u.Name)
	limits := []limit{{s.loginAddr, clientAddr(r)}, {s.loginAccount, account}}
	if msg := s.take(now, limits...); msg != "" {
		problem.Write(w, problem.TooManyAttempts, msg, nil)
		return false
	}
	good, err := CheckPassword(u.PasswordHash, password)
	if err != nil {
		s.log.Error("check password", "err", err)
	}
	if !good { // counted by take
		s.log.Info("account change: wrong password", "user", u.Name, "addr", clientAddr(r))
		problem.Write(w, problem.WrongPassword, "the current password is not right", nil)
		return false
	}
	giveBack(limits...)
	return true
}

// changePassword serves POST /api/v1/account/password {"current", "new"}.
// The user's grants are revoked (as by `cloud user passwd`): every client
// signs in again.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	u, ok := s.accountCall(w, r, &req)
	if !ok || !s.reauthenticate(w, r, u, req.Current) {
		return
	}
	if err := checkPassword(req.New); err != nil {
		problem.Write(w, problem.InvalidRequest, "new: "+err.Error(), nil)
		return
	}
	if err := s.SetPassword(r.Context(), u.Name, req.New); err != nil {
		s.apiServerError(w, "change password", err)
		return
	}
	s.revoked()
	s.log.Info("password changed", "user", u.Name)
	w.WriteHeader(http.StatusNoContent)
}

// startTOTP serves POST /api/v1/account/totp {"password"}: a new TOTP key
// (RFC 6238: SHA-1, 6 digits, 30 s, 160 bits) as its secret, its otpauth://
// URI and the sealed enrolment to confirm.
func (s *Server) startTOTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	u, ok := s.accountCall(w, r, &req)
	if !ok || !s.reauthenticate(w, r, u, req.Password) {
		return
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "trackgate", AccountName: u.Name})
	if err != nil {
		s.apiServerError(w, "totp key", err)
		return
	}
	b, _ := json.Marshal(totpEnrolment{User: u.ID, Secret: key.Secret(), Expires: s.now().Add(totpEnrolTTL)})
	sealed, err := s.secrets.seal(b)
	if err != nil {
		s.apiServerError(w, "seal totp enrolment", err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, map[string]string{"secret": key.Secret(), "uri": key.URL(), "enrolment": sealed})
}

// confirmTOTP serves POST /api/v1/account/totp/confirm {"enrolment",
// "code"}: with a right code of the new key, the key becomes the user's
// (replacing one revokes the user's grants, as `cloud user totp` does) and
// the code is spent.
func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Enrolment string `json:"enrolment"`
		Code      string `json:"code"`
	}
	u, ok := s.accountCall(w, r, &req)
	if !ok {
		return
	}
	var e totpEnrolment
	b, err := s.secrets.open(req.Enrolment)
	if err == nil {
		err = json.Unmarshal(b, &e)
	}
	now := s.now()
	if err != nil || e.User != u.ID || !now.Before(e.Expires) {
		problem.Write(w, problem.InvalidRequest, "enrolment: unknown or expired; start again", nil)
		return
	}
	lim := limit{s.totpUser, fmt.Sprint(u.ID)}
	if msg := s.take(now, lim); msg != "" {
		problem.Write(w, problem.TooManyAttempts, msg, nil)
		return
	}
	step, err := totpStep(e.Secret, strings.TrimSpace(req.Code), now)
	if err != nil {
		giveBack(lim)
		s.apiServerError(w, "check totp", err)
		return
	}
	if step < 0 { // counted by take
		problem.Write(w, problem.WrongPassword, "the code does not match the new key; check the device's clock and try the next code", nil)
		return
	}
	s.totpUser.reset(lim.key)
	if err := s.setTOTP(r.Context(), u, e.Secret); err != nil {
		s.apiServerError(w, "set totp", err)
		return
	}
	if _, err := s.st.UseTOTPStep(r.Context(), u.ID, step); err != nil {
		s.apiServerError(w, "spend totp code", err)
		return
	}
	s.log.Info("TOTP enrolled", "user", u.Name)
	w.WriteHeader(http.StatusNoContent)
}

// totpStep returns the time step at which code is secret's code, allowing
// one step of clock skew either way, or -1 when it is none of them.
func totpStep(secret, code string, now time.Time) (int64, error) {
	step := now.Unix() / int64(totpOpts.Period)
	for _, st := range [...]int64{step, step - 1, step + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(st*int64(totpOpts.Period), 0), totpOpts)
		if err != nil {
			return -1, fmt.Errorf("totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(code), []byte(want)) == 1 {
			return st, nil
		}
	}
	return -1, nil
}

// setTOTP stores secret, sealed, as u's TOTP key. Replacing a key revokes
// u's grants.
func (s *Server) setTOTP(ctx context.Context, u *store.User, secret string) error {
	sealed, err := s.secrets.seal([]byte(secret))
	if err != nil {
		return err
	}
	if err := s.st.SetTOTP(ctx, u.ID, sealed); err != nil {
		return fmt.Errorf("totp: %w", err)
	}
	if u.TOTPSecret != "" {
		if err := s.st.RevokeUserGrants(ctx, u.ID); err != nil {
			return fmt.Errorf("totp: %w", err)
		}
		s.revoked()
	}
	return nil
}
