package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrUsed is returned when a single-use credential (an authorization code,
// a refresh token) is presented again.
var ErrUsed = errors.New("already used")

// ErrRevoked is returned when tokens are to be issued on a revoked grant.
var ErrRevoked = errors.New("grant revoked")

// row is what QueryRow and Rows give: something to Scan.
type row interface{ Scan(...any) error }

// Session is a browser's signed-in session at the authorization server.
// Only a hash of the session id (the cookie's value) is stored.
type Session struct {
	IDHash    string
	UserID    int64
	User      string // the user's name (read only)
	TOTP      bool   // the user has TOTP enrolled (read only)
	AMR       []string
	AuthTime  time.Time
	CSRF      string // the session's anti-CSRF token, for its forms
	ExpiresAt time.Time
}

// CreateSession stores a session, forgetting the expired ones.
func (s *Store) CreateSession(ctx context.Context, ss *Session) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, time.Now().UTC()); err != nil {
			return fmt.Errorf("sweep sessions: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id_hash, user_id, amr, auth_time, csrf, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			ss.IDHash, ss.UserID, joinList(ss.AMR), ss.AuthTime.UTC(), ss.CSRF, ss.ExpiresAt.UTC())
		if err != nil {
			return fmt.Errorf("create session: %w", err)
		}
		return nil
	})
}

// Session returns the session whose id hashes to idHash, or ErrNotFound
// when there is none or it has expired.
func (s *Store) Session(ctx context.Context, idHash string) (*Session, error) {
	var ss Session
	var amr string
	err := s.db.QueryRowContext(ctx, `SELECT s.id_hash, s.user_id, u.name, u.totp_secret != '', s.amr, s.auth_time, s.csrf, s.expires_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?`, idHash).
		Scan(&ss.IDHash, &ss.UserID, &ss.User, &ss.TOTP, &amr, &ss.AuthTime, &ss.CSRF, &ss.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !time.Now().Before(ss.ExpiresAt) {
		return nil, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	ss.AMR = splitList(amr)
	return &ss, nil
}

// DeleteSession ends a session; there being none is not an error.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// Grant is what a user granted a client at one sign-in: the family of the
// refresh tokens and access tokens issued from it. Revoking the grant
// revokes them all.
type Grant struct {
	ID        string
	ClientID  string
	UserID    int64
	User      string // the user's name (read only)
	Scopes    []string
	AMR       []string
	AuthTime  time.Time
	CreatedAt time.Time
	ExpiresAt time.Time // absolute: no refresh after it
	RevokedAt *time.Time
}

const grantColumns = `g.id, g.client_id, g.user_id, u.name, g.scopes, g.amr, g.auth_time, g.created_at, g.expires_at, g.revoked_at`

func scanGrant(r row, more ...any) (*Grant, error) {
	var g Grant
	var scopes, amr string
	var revoked sql.NullTime
	err := r.Scan(append([]any{&g.ID, &g.ClientID, &g.UserID, &g.User, &scopes, &amr, &g.AuthTime, &g.CreatedAt, &g.ExpiresAt, &revoked}, more...)...)
	if err != nil {
		return nil, err
	}
	g.Scopes, g.AMR = splitList(scopes), splitList(amr)
	if revoked.Valid {
		g.RevokedAt = &revoked.Time
	}
	return &g, nil
}

// Grant returns the grant with id, or ErrNotFound.
func (s *Store) Grant(ctx context.Context, id string) (*Grant, error) {
	g, err := scanGrant(s.db.QueryRowContext(ctx, `SELECT `+grantColumns+` FROM grants g JOIN users u ON u.id = g.user_id WHERE g.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("grant: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	return g, nil
}

func createGrant(ctx context.Context, tx *sql.Tx, g *Grant) error {
	g.CreatedAt = time.Now().UTC()
	_, err := tx.ExecContext(ctx, `INSERT INTO grants (id, client_id, user_id, scopes, amr, auth_time, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.ClientID, g.UserID, joinList(g.Scopes), joinList(g.AMR), g.AuthTime.UTC(), g.CreatedAt, g.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create grant: %w", err)
	}
	return nil
}

// RevokeGrant revokes a grant: its refresh tokens stop working and its
// access tokens are listed as revoked. Revoking it again changes nothing.
func (s *Store) RevokeGrant(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return revokeGrants(ctx, tx, `id = ?`, id) })
}

// RevokeUserGrants revokes every grant of a user (at sign-out, password
// change or TOTP reset).
func (s *Store) RevokeUserGrants(ctx context.Context, userID int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return revokeGrants(ctx, tx, `user_id = ?`, userID) })
}

// revokeGrants revokes the grants matching where.
func revokeGrants(ctx context.Context, tx *sql.Tx, where string, arg any) error {
	now := time.Now().UTC()
	if _, err := tx.ExecContext(ctx, `UPDATE grants SET revoked_at = ? WHERE revoked_at IS NULL AND `+where, now, arg); err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO revocations (token_id, expires_at, revoked_at)
		SELECT jti, expires_at, ? FROM grant_access_tokens WHERE expires_at > ? AND grant_id IN (SELECT id FROM grants WHERE `+where+`)
		ON CONFLICT (token_id) DO NOTHING`, now, now, arg)
	if err != nil {
		return fmt.Errorf("revoke grant access tokens: %w", err)
	}
	return nil
}

// Code is an authorization code: only its hash is stored, with the grant it
// was issued for.
type Code struct {
	Hash        string
	RedirectURI string
	Challenge   string // PKCE S256 code challenge
	Nonce       string // OpenID Connect nonce, for the ID token
	ExpiresAt   time.Time
	Grant       *Grant
}

// CreateCode stores an authorization code and creates its grant,
// forgetting expired codes.
func (s *Store) CreateCode(ctx context.Context, c *Code) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `DELETE FROM grants WHERE expires_at < ?`, now); err != nil {
			return fmt.Errorf("sweep grants: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM auth_codes WHERE expires_at < ?`, now.Add(-time.Hour)); err != nil {
			return fmt.Errorf("sweep codes: %w", err)
		}
		if err := createGrant(ctx, tx, c.Grant); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO auth_codes (hash, grant_id, redirect_uri, challenge, nonce, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			c.Hash, c.Grant.ID, c.RedirectURI, c.Challenge, c.Nonce, c.ExpiresAt.UTC())
		if err != nil {
			return fmt.Errorf("create code: %w", err)
		}
		return nil
	})
}

// RedeemCode spends the authorization code whose hash is hash and returns
// it. Of concurrent redemptions one wins; the others, and every later one,
// get the code with ErrUsed (so that its grant can be revoked). An unknown
// code is ErrNotFound. Expiry is the caller's to check.
func (s *Store) RedeemCode(ctx context.Context, hash string) (*Code, error) {
	var c *Code
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var used sql.NullTime
		c = &Code{}
		g, err := scanGrant(tx.QueryRowContext(ctx, `SELECT `+grantColumns+`, c.hash, c.redirect_uri, c.challenge, c.nonce, c.expires_at, c.used_at
			FROM auth_codes c JOIN grants g ON g.id = c.grant_id JOIN users u ON u.id = g.user_id WHERE c.hash = ?`, hash),
			&c.Hash, &c.RedirectURI, &c.Challenge, &c.Nonce, &c.ExpiresAt, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("code: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("code: %w", err)
		}
		c.Grant = g
		if used.Valid {
			return fmt.Errorf("code: %w", ErrUsed)
		}
		_, err = tx.ExecContext(ctx, `UPDATE auth_codes SET used_at = ? WHERE hash = ?`, time.Now().UTC(), hash)
		return err
	})
	if errors.Is(err, ErrUsed) {
		return c, err
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// RefreshToken is a refresh token of a grant: only its hash is stored.
type RefreshToken struct {
	Hash      string
	IssuedAt  time.Time
	ExpiresAt time.Time  // idle expiry: no refresh with it after
	RotatedAt *time.Time // when it was exchanged for its successor
	Successor string     // sealed response given at rotation, kept for a retry in the grace window
	Grant     *Grant
}

// RefreshToken returns the refresh token whose hash is hash with its grant,
// or ErrNotFound.
func (s *Store) RefreshToken(ctx context.Context, hash string) (*RefreshToken, error) {
	rt := &RefreshToken{}
	var rotated sql.NullTime
	g, err := scanGrant(s.db.QueryRowContext(ctx, `SELECT `+grantColumns+`, r.hash, r.issued_at, r.expires_at, r.rotated_at, r.successor
		FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id JOIN users u ON u.id = g.user_id WHERE r.hash = ?`, hash),
		&rt.Hash, &rt.IssuedAt, &rt.ExpiresAt, &rotated, &rt.Successor)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("refresh token: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	if rotated.Valid {
		rt.RotatedAt = &rotated.Time
	}
	rt.Grant = g
	return rt, nil
}

// Issued is what one token response of a grant issued: its access token's
// id and expiry, and the refresh token (nil when none).
type Issued struct {
	AccessID      string
	AccessExpires time.Time
	Refresh       *RefreshToken
}

// AddTokens records the tokens issued on grant grantID; ErrRevoked if the
// grant has been revoked meanwhile.
func (s *Store) AddTokens(ctx context.Context, grantID string, iss Issued) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return addTokens(ctx, tx, grantID, iss) })
}

func addTokens(ctx context.Context, tx *sql.Tx, grantID string, iss Issued) error {
	var revoked sql.NullTime
	if err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM grants WHERE id = ?`, grantID).Scan(&revoked); err != nil {
		return fmt.Errorf("grant %s: %w", grantID, err)
	}
	if revoked.Valid {
		return ErrRevoked
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO grant_access_tokens (jti, grant_id, expires_at) VALUES (?, ?, ?)`,
		iss.AccessID, grantID, iss.AccessExpires.UTC()); err != nil {
		return fmt.Errorf("record access token: %w", err)
	}
	if rt := iss.Refresh; rt != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, grant_id, issued_at, expires_at) VALUES (?, ?, ?, ?)`,
			rt.Hash, grantID, rt.IssuedAt.UTC(), rt.ExpiresAt.UTC()); err != nil {
			return fmt.Errorf("record refresh token: %w", err)
		}
	}
	return nil
}

// Rotate exchanges refresh token oldHash for the tokens in iss, keeping
// successor (the sealed response) on the old token. Of concurrent
// rotations of one token one wins; the others get ErrUsed. ErrRevoked if
// the grant has been revoked.
func (s *Store) Rotate(ctx context.Context, oldHash, successor string, iss Issued) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var grantID string
		err := tx.QueryRowContext(ctx, `UPDATE refresh_tokens SET rotated_at = ?, successor = ? WHERE hash = ? AND rotated_at IS NULL RETURNING grant_id`,
			time.Now().UTC(), successor, oldHash).Scan(&grantID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrUsed
		}
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		return addTokens(ctx, tx, grantID, iss)
	})
}

// Device code states.
const (
	DevicePending  = "pending"  // waiting for the user
	DeviceApproved = "approved" // the user approved; tokens not yet fetched
	DeviceDenied   = "denied"   // the user denied
	DeviceUsed     = "used"     // tokens were issued
)

// DeviceCode is a device authorization request (RFC 8628): only the device
// code's hash is stored; the user code is short and stored as typed
// (normalised).
type DeviceCode struct {
	Hash      string
	UserCode  string
	ClientID  string
	Scopes    []string
	Interval  time.Duration // the polling interval the client must keep
	LastPoll  *time.Time
	ExpiresAt time.Time
	Status    string
	GrantID   string // set at approval
}

const deviceCodeColumns = `hash, user_code, client_id, scopes, interval_s, last_poll, expires_at, status, grant_id FROM device_codes`

func scanDeviceCode(r row) (*DeviceCode, error) {
	var d DeviceCode
	var scopes string
	var interval int64
	var last sql.NullTime
	if err := r.Scan(&d.Hash, &d.UserCode, &d.ClientID, &scopes, &interval, &last, &d.ExpiresAt, &d.Status, &d.GrantID); err != nil {
		return nil, err
	}
	d.Scopes, d.Interval = splitList(scopes), time.Duration(interval)*time.Second
	if last.Valid {
		d.LastPoll = &last.Time
	}
	return &d, nil
}

// CreateDeviceCode stores a pending device authorization, forgetting the
// expired ones; ErrExists if its user code is taken.
func (s *Store) CreateDeviceCode(ctx context.Context, d *DeviceCode) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_codes WHERE expires_at < ?`, time.Now().UTC().Add(-time.Hour)); err != nil {
			return fmt.Errorf("sweep device codes: %w", err)
		}
		if err := exists(ctx, tx, `SELECT 1 FROM device_codes WHERE user_code = ?`, d.UserCode); err != nil {
			return fmt.Errorf("user code: %w", err)
		}
		d.Status = DevicePending
		_, err := tx.ExecContext(ctx, `INSERT INTO device_codes (hash, user_code, client_id, scopes, interval_s, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.Hash, d.UserCode, d.ClientID, joinList(d.Scopes), int64(d.Interval/time.Second), d.ExpiresAt.UTC(), d.Status)
		if err != nil {
			return fmt.Errorf("create device code: %w", err)
		}
		return nil
	})
}

// DeviceCodeByUserCode returns the device authorization with a user code,
// or ErrNotFound.
func (s *Store) DeviceCodeByUserCode(ctx context.Context, userCode string) (*DeviceCode, error) {
	d, err := scanDeviceCode(s.db.QueryRowContext(ctx, `SELECT `+deviceCodeColumns+` WHERE user_code = ?`, userCode))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user code: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("user code: %w", err)
	}
	return d, nil
}

// DecideDeviceCode records the user's answer to a pending, unexpired device
// authorization: approved with grant g (created here), or denied when g is
// nil. ErrNotFound when there is no such pending authorization.
func (s *Store) DecideDeviceCode(ctx context.Context, userCode string, g *Grant) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		d, err := scanDeviceCode(tx.QueryRowContext(ctx, `SELECT `+deviceCodeColumns+` WHERE user_code = ?`, userCode))
		if errors.Is(err, sql.ErrNoRows) || err == nil && (d.Status != DevicePending || !time.Now().Before(d.ExpiresAt)) {
			return fmt.Errorf("user code: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("user code: %w", err)
		}
		if g == nil {
			_, err = tx.ExecContext(ctx, `UPDATE device_codes SET status = ? WHERE hash = ?`, DeviceDenied, d.Hash)
			return err
		}
		if err := createGrant(ctx, tx, g); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_codes SET status = ?, grant_id = ? WHERE hash = ?`, DeviceApproved, g.ID, d.Hash)
		return err
	})
}

// PollDeviceCode records a poll of the device code whose hash is hash by
// client clientID at now and returns the authorization as it was before
// the poll, with slowDown true when the poll came sooner than the interval
// after the last one (the interval then grows by 5 s, RFC 8628 §3.5). A
// timely poll of an approved authorization marks it used: its tokens are
// issued once. A poll by a client other than the code's changes nothing:
// it neither spends the approval nor counts against the interval.
// ErrNotFound for an unknown code.
func (s *Store) PollDeviceCode(ctx context.Context, hash, clientID string, now time.Time) (d *DeviceCode, slowDown bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		d, err = scanDeviceCode(tx.QueryRowContext(ctx, `SELECT `+deviceCodeColumns+` WHERE hash = ?`, hash))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device code: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("device code: %w", err)
		}
		if d.ClientID != clientID {
			return nil
		}
		interval, status := d.Interval, d.Status
		slowDown = d.LastPoll != nil && now.Sub(*d.LastPoll) < d.Interval
		if slowDown {
			interval += 5 * time.Second
		} else if status == DeviceApproved && now.Before(d.ExpiresAt) {
			status = DeviceUsed
		}
		_, err = tx.ExecContext(ctx, `UPDATE device_codes SET last_poll = ?, interval_s = ?, status = ? WHERE hash = ?`,
			now.UTC(), int64(interval/time.Second), status, hash)
		return err
	})
	return d, slowDown, err
}

// WebSession is a sign-in at the website, the authorization server's own
// confidential client: the browser holds its id in a cookie, the server its
// refresh token (sealed) and anti-CSRF token.
type WebSession struct {
	IDHash    string
	UserID    int64
	User      string // the user's name (read only)
	Refresh   string // the website's refresh token, sealed
	CSRF      string
	ExpiresAt time.Time
}

// CreateWebSession stores a website session, forgetting the expired ones.
func (s *Store) CreateWebSession(ctx context.Context, ws *WebSession) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires_at < ?`, time.Now().UTC()); err != nil {
			return fmt.Errorf("sweep web sessions: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (id_hash, user_id, refresh, csrf, expires_at) VALUES (?, ?, ?, ?, ?)`,
			ws.IDHash, ws.UserID, ws.Refresh, ws.CSRF, ws.ExpiresAt.UTC())
		if err != nil {
			return fmt.Errorf("create web session: %w", err)
		}
		return nil
	})
}

// WebSession returns the website session whose id hashes to idHash, or
// ErrNotFound when there is none or it has expired.
func (s *Store) WebSession(ctx context.Context, idHash string) (*WebSession, error) {
	var ws WebSession
	err := s.db.QueryRowContext(ctx, `SELECT w.id_hash, w.user_id, u.name, w.refresh, w.csrf, w.expires_at
		FROM web_sessions w JOIN users u ON u.id = w.user_id WHERE w.id_hash = ?`, idHash).
		Scan(&ws.IDHash, &ws.UserID, &ws.User, &ws.Refresh, &ws.CSRF, &ws.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !time.Now().Before(ws.ExpiresAt) {
		return nil, fmt.Errorf("web session: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("web session: %w", err)
	}
	return &ws, nil
}

// SetWebSessionRefresh keeps a website session's rotated refresh token.
func (s *Store) SetWebSessionRefresh(ctx context.Context, idHash, refresh string) error {
	return s.update(ctx, `UPDATE web_sessions SET refresh = ? WHERE id_hash = ?`, refresh, idHash)
}

// DeleteWebSession ends a website session; there being none is not an
// error.
func (s *Store) DeleteWebSession(ctx context.Context, idHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete web session: %w", err)
	}
	return nil
}
