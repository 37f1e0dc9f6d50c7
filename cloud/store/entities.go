package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"trackgate/internal/token"
)

// User is a person who signs in.
type User struct {
	ID           int64
	Name         string
	PasswordHash string // argon2id, PHC string format
	TOTPSecret   string // empty: TOTP not enrolled
	TOTPLastStep int64  // the last TOTP time step accepted (replay guard)
	CreatedAt    time.Time
}

// CreateUser adds a user; ErrExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	u.CreatedAt = time.Now().UTC()
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, u.Name); err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO users (name, password_hash, totp_secret, created_at) VALUES (?, ?, ?, ?)`,
			u.Name, u.PasswordHash, u.TOTPSecret, u.CreatedAt)
		if err != nil {
			return fmt.Errorf("create user %q: %w", u.Name, err)
		}
		u.ID, err = res.LastInsertId()
		return err
	})
}

// UserByName returns the user called name, or ErrNotFound.
func (s *Store) UserByName(ctx context.Context, name string) (*User, error) {
	var u User
	err := s.db.QueryRowContext(ctx, `SELECT id, name, password_hash, totp_secret, totp_last_step, created_at FROM users WHERE name = ?`, name).
		Scan(&u.ID, &u.Name, &u.PasswordHash, &u.TOTPSecret, &u.TOTPLastStep, &u.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return &u, nil
}

// SetPassword changes a user's password hash.
func (s *Store) SetPassword(ctx context.Context, userID int64, hash string) error {
	return s.update(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, userID)
}

// SetTOTP enrols (or, with an empty secret, removes) a user's TOTP secret.
func (s *Store) SetTOTP(ctx context.Context, userID int64, secret string) error {
	return s.update(ctx, `UPDATE users SET totp_secret = ?, totp_last_step = 0 WHERE id = ?`, secret, userID)
}

// UseTOTPStep records that the TOTP code of time step step was accepted for
// a user. It reports false when that step (or a later one) was already
// used: the same code must not be accepted twice.
func (s *Store) UseTOTPStep(ctx context.Context, userID, step int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?`, step, userID, step)
	if err != nil {
		return false, fmt.Errorf("use TOTP step: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Device is a registered device: a phone, a tracker or a gateway's receiver.
type Device struct {
	ID      string
	OwnerID int64
	Owner   string // the owner's user name (read only)
	Name    string
	TokenID string // jti of the device token issued last
	// AutoSplit, when not 0, gives the device automatic tracks: a new one
	// after a gap in its positions longer than AutoSplit, closed after
	// AutoSplit without positions.
	AutoSplit time.Duration
	CreatedAt time.Time
	// Identifiers are further ids the firmware-bridge matches the device
	// by (an IMEI, an OsmAnd id), besides its own id; each belongs to one
	// device.
	Identifiers []string
	// SecretHash is the SHA-256 (hex) of the device's protocol secret (the
	// OsmAnd key), "" when it has none.
	SecretHash string
	// SpeedUnit is the unit of the OsmAnd speed parameter the device sends,
	// "" for the bridge's default.
	SpeedUnit string
}

// CreateDevice registers a device, and with it client c when not nil (a
// tracker that authenticates with its own key); ErrExists if the id is
// taken.
func (s *Store) CreateDevice(ctx context.Context, d *Device, c *Client) error {
	d.CreatedAt = time.Now().UTC()
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := exists(ctx, tx, `SELECT 1 FROM devices WHERE id = ? UNION ALL SELECT 1 FROM device_identifiers WHERE ident = ?`, d.ID, d.ID); err != nil {
			return fmt.Errorf("device %q: %w", d.ID, err)
		}
		if c != nil {
			if err := createClient(ctx, tx, c); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, owner_id, name, token_id, auto_split_s, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			d.ID, d.OwnerID, d.Name, d.TokenID, int64(d.AutoSplit/time.Second), d.CreatedAt)
		if err != nil {
			return fmt.Errorf("create device %q: %w", d.ID, err)
		}
		return nil
	})
}

const deviceColumns = `d.id, d.owner_id, u.name, d.name, d.token_id, d.auto_split_s, d.created_at, d.secret_hash, d.speed_unit,
	COALESCE((SELECT group_concat(ident, ' ') FROM (SELECT ident FROM device_identifiers WHERE device_id = d.id ORDER BY ident)), '')
	FROM devices d JOIN users u ON u.id = d.owner_id`

func scanDevice(r row) (*Device, error) {
	var d Device
	var split int64
	var idents string
	err := r.Scan(&d.ID, &d.OwnerID, &d.Owner, &d.Name, &d.TokenID, &split, &d.CreatedAt, &d.SecretHash, &d.SpeedUnit, &idents)
	d.AutoSplit = time.Duration(split) * time.Second
	d.Identifiers = strings.Fields(idents)
	return &d, err
}

// DeviceByIdentifier returns the device whose id is ident, or else the one
// that lists ident among its identifiers; ErrNotFound when none does.
func (s *Store) DeviceByIdentifier(ctx context.Context, ident string) (*Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+`
		WHERE d.id = (SELECT id FROM devices WHERE id = ? UNION ALL SELECT device_id FROM device_identifiers WHERE ident = ? LIMIT 1)`, ident, ident))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("identifier %q: %w", ident, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("identifier %q: %w", ident, err)
	}
	return d, nil
}

// SetDeviceIdentifiers replaces the identifiers of device id; ErrExists
// when one is another device's id or identifier.
func (s *Store) SetDeviceIdentifiers(ctx context.Context, id string, idents []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, ident := range idents {
			if err := exists(ctx, tx, `SELECT 1 FROM devices WHERE id = ? AND id != ? UNION ALL SELECT 1 FROM device_identifiers WHERE ident = ? AND device_id != ?`,
				ident, id, ident, id); err != nil {
				return fmt.Errorf("identifier %q: %w", ident, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_identifiers WHERE device_id = ?`, id); err != nil {
			return fmt.Errorf("identifiers of device %q: %w", id, err)
		}
		for _, ident := range idents {
			if ident == id {
				continue // a device is always matched by its own id
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO device_identifiers (ident, device_id) VALUES (?, ?) ON CONFLICT (ident) DO NOTHING`, ident, id); err != nil {
				return fmt.Errorf("identifier %q of device %q: %w", ident, id, err)
			}
		}
		return nil
	})
}

// SetDeviceSecret sets the hash of device id's protocol secret ("" for
// none); ErrNotFound when there is no such device.
func (s *Store) SetDeviceSecret(ctx context.Context, id, hash string) error {
	if err := s.update(ctx, `UPDATE devices SET secret_hash = ? WHERE id = ?`, hash, id); err != nil {
		return fmt.Errorf("device %q: %w", id, err)
	}
	return nil
}

// SetDeviceSpeedUnit sets the unit of device id's OsmAnd speed parameter.
func (s *Store) SetDeviceSpeedUnit(ctx context.Context, id, unit string) error {
	if err := s.update(ctx, `UPDATE devices SET speed_unit = ? WHERE id = ?`, unit, id); err != nil {
		return fmt.Errorf("device %q: %w", id, err)
	}
	return nil
}

// Device returns the device with id, or ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (*Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceColumns+` WHERE d.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", id, err)
	}
	return d, nil
}

// Devices returns the devices of a user, by id.
func (s *Store) Devices(ctx context.Context, ownerID int64) ([]*Device, error) {
	out, err := collect(scanDevice)(s.db.QueryContext(ctx, `SELECT `+deviceColumns+` WHERE d.owner_id = ? ORDER BY d.id`, ownerID))
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	return out, nil
}

// collect returns a function that scans every row of a query's answer
// with scan, so that a query's results read as
// collect(scanThing)(db.QueryContext(…)).
func collect[T any](scan func(row) (T, error)) func(rows *sql.Rows, err error) ([]T, error) {
	return func(rows *sql.Rows, err error) ([]T, error) {
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []T
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, rows.Err()
	}
}

// DeleteDevice removes a device, stops the track it records, and revokes
// its token (which expires at tokenExpiry) in one transaction; ErrNotFound
// if there is no such device.
func (s *Store) DeleteDevice(ctx context.Context, id string, tokenExpiry time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var jti string
		err := tx.QueryRowContext(ctx, `SELECT token_id FROM devices WHERE id = ?`, id).Scan(&jti)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("device %q: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete device %q: %w", id, err)
		}
		// Its tracks stay, stopped: a device records nothing once removed.
		if _, err := tx.ExecContext(ctx, `UPDATE tracks SET stopped_ns = MAX(started_ns, ?), version = version + 1 WHERE device_id = ? AND stopped_ns IS NULL`,
			time.Now().UnixNano(), id); err != nil {
			return fmt.Errorf("stop the tracks of device %q: %w", id, err)
		}
		// A tracker's own client goes too, and the tokens it got.
		if _, err := tx.ExecContext(ctx, `DELETE FROM clients WHERE id = ? AND jwk != ''`, id); err != nil {
			return fmt.Errorf("delete device client %q: %w", id, err)
		}
		now := time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (token_id, expires_at, revoked_at)
			SELECT jti, expires_at, ? FROM client_tokens WHERE client_id = ? AND expires_at > ? ON CONFLICT (token_id) DO NOTHING`, now, id, now); err != nil {
			return fmt.Errorf("revoke device client tokens %q: %w", id, err)
		}
		if jti == "" {
			return nil
		}
		return revoke(ctx, tx, jti, tokenExpiry)
	})
}

// Revoke records a token id as revoked until the token expires.
func (s *Store) Revoke(ctx context.Context, tokenID string, expires time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return revoke(ctx, tx, tokenID, expires) })
}

func revoke(ctx context.Context, tx *sql.Tx, tokenID string, expires time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO revocations (token_id, expires_at, revoked_at) VALUES (?, ?, ?)
		ON CONFLICT (token_id) DO NOTHING`, tokenID, expires.UTC(), time.Now().UTC())
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// Revocation is a revoked token id, listed until the token expires: the
// entry of the revocation list verifiers read.
type Revocation = token.Revocation

// Revocations lists the revoked tokens that have not expired yet, and
// forgets the ones that have.
func (s *Store) Revocations(ctx context.Context) ([]Revocation, error) {
	now := time.Now().UTC()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < ?`, now); err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT token_id, expires_at FROM revocations ORDER BY token_id`)
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		if err := rows.Scan(&r.TokenID, &r.ExpiresAt); err != nil {
			return nil, fmt.Errorf("revocations: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Revoked reports whether a token id is revoked.
func (s *Store) Revoked(ctx context.Context, tokenID string) (bool, error) {
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM revocations WHERE token_id = ?`, tokenID).Scan(new(int))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("revoked: %w", err)
	}
	return true, nil
}

// SigningKey is the record of a signing key; its private half is in a file
// of the data directory.
type SigningKey struct {
	ID        string
	CreatedAt time.Time
	SignsFrom time.Time  // published before, used to sign from then on
	RetiredAt *time.Time // no longer signs; published until its tokens expired
}

// AddKey records a signing key.
func (s *Store) AddKey(ctx context.Context, k *SigningKey) error {
	k.CreatedAt = time.Now().UTC()
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (id, created_at, signs_from) VALUES (?, ?, ?)`, k.ID, k.CreatedAt, k.SignsFrom.UTC())
	if err != nil {
		return fmt.Errorf("add key %s: %w", k.ID, err)
	}
	return nil
}

// RetireKey marks a key as no longer signing from at.
func (s *Store) RetireKey(ctx context.Context, id string, at time.Time) error {
	return s.update(ctx, `UPDATE signing_keys SET retired_at = ? WHERE id = ? AND retired_at IS NULL`, at.UTC(), id)
}

// DeleteKey forgets a key's record.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	return s.update(ctx, `DELETE FROM signing_keys WHERE id = ?`, id)
}

// Keys lists the signing keys, oldest first.
func (s *Store) Keys(ctx context.Context) ([]SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, created_at, signs_from, retired_at FROM signing_keys ORDER BY signs_from, id`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer rows.Close()
	var out []SigningKey
	for rows.Next() {
		var k SigningKey
		var retired sql.NullTime
		if err := rows.Scan(&k.ID, &k.CreatedAt, &k.SignsFrom, &retired); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if retired.Valid {
			t := retired.Time
			k.RetiredAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// update runs a statement that must change exactly one row.
func (s *Store) update(ctx context.Context, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrNotFound
	}
	return nil
}

// exists returns ErrExists when query finds a row.
func exists(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	err := tx.QueryRowContext(ctx, query, args...).Scan(new(int))
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, sql.ErrNoRows):
		return nil
	}
	return err
}

// Client is a registered OAuth client.
type Client struct {
	ID           string
	Name         string
	SecretHash   string   // empty for a public client
	RedirectURIs []string // exact URIs; loopback ones match any port
	GrantTypes   []string
	Scopes       []string // the scopes it may ask for
	JWK          string   // the public key (a JWK) it signs its assertions with (private_key_jwt); empty for none
	CreatedAt    time.Time
}

// Public reports whether the client has no credentials: no secret, no key.
func (c *Client) Public() bool { return c.SecretHash == "" && c.JWK == "" }

// CreateClient registers a client; ErrExists if the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return createClient(ctx, tx, c) })
}

func createClient(ctx context.Context, tx *sql.Tx, c *Client) error {
	c.CreatedAt = time.Now().UTC()
	if err := exists(ctx, tx, `SELECT 1 FROM clients WHERE id = ?`, c.ID); err != nil {
		return fmt.Errorf("client %q: %w", c.ID, err)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scopes, jwk, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.SecretHash, joinList(c.RedirectURIs), joinList(c.GrantTypes), joinList(c.Scopes), c.JWK, c.CreatedAt)
	if err != nil {
		return fmt.Errorf("create client %q: %w", c.ID, err)
	}
	return nil
}

// AddClientToken records a token issued to a client itself (client
// credentials), so that removing the client can revoke it; expired records
// are forgotten.
func (s *Store) AddClientToken(ctx context.Context, clientID, jti string, expires time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `DELETE FROM client_tokens WHERE expires_at < ?`, now); err != nil {
			return fmt.Errorf("sweep client tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO client_tokens (jti, client_id, expires_at) VALUES (?, ?, ?)`, jti, clientID, expires.UTC()); err != nil {
			return fmt.Errorf("record client token: %w", err)
		}
		return nil
	})
}

// UseAssertionID records the jti of a client's assertion until it expires;
// ErrUsed if the client used it before (a replay).
func (s *Store) UseAssertionID(ctx context.Context, clientID, jti string, expires time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UTC()
		if _, err := tx.ExecContext(ctx, `DELETE FROM assertion_ids WHERE expires_at < ?`, now.Add(-time.Hour)); err != nil {
			return fmt.Errorf("sweep assertion ids: %w", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO assertion_ids (client_id, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, clientID, jti, expires.UTC())
		if err != nil {
			return fmt.Errorf("record assertion id: %w", err)
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = ErrUsed
		}
		return err
	})
}

// PutClient registers a client, or updates it to c when it exists.
func (s *Store) PutClient(ctx context.Context, c *Client) error {
	c.CreatedAt = time.Now().UTC()
	_, err := s.db.ExecContext(ctx, `INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris,
		grant_types = excluded.grant_types, scopes = excluded.scopes`,
		c.ID, c.Name, c.SecretHash, joinList(c.RedirectURIs), joinList(c.GrantTypes), joinList(c.Scopes), c.CreatedAt)
	if err != nil {
		return fmt.Errorf("put client %q: %w", c.ID, err)
	}
	return nil
}

// Client returns the client with id, or ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (*Client, error) {
	var c Client
	var uris, grants, scopes string
	err := s.db.QueryRowContext(ctx, `SELECT id, name, secret_hash, redirect_uris, grant_types, scopes, jwk, created_at FROM clients WHERE id = ?`, id).
		Scan(&c.ID, &c.Name, &c.SecretHash, &uris, &grants, &scopes, &c.JWK, &c.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("client %q: %w", id, err)
	}
	c.RedirectURIs, c.GrantTypes, c.Scopes = splitList(uris), splitList(grants), splitList(scopes)
	return &c, nil
}

// joinList stores a list of values without spaces as one space-separated
// column.
func joinList(v []string) string { return strings.Join(v, " ") }

func splitList(s string) []string { return strings.Fields(s) }
