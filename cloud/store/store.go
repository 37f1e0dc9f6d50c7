// Package store is the cloud's SQL store: users, OAuth clients, devices,
// signing keys, token revocations, and tracks. It runs on an embedded SQLite
// database (modernc.org/sqlite: pure Go, no cgo) in the cloud's data
// directory, applying its versioned migrations at Open. The SQL is kept to
// what PostgreSQL also runs, and consumers depend on small interfaces of
// their own, so a PostgreSQL implementation can take its place.
//
// No bearer secret is stored in plaintext: passwords and client secrets are
// stored as argon2id hashes by their callers, refresh tokens as SHA-256
// hashes, and signing keys live in files of mode 0600 next to the database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// ErrNotFound is returned when a row asked for does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when a row to create already exists.
var ErrExists = errors.New("already exists")

// Store is the cloud's SQL store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// Open opens (creating it if need be) the store in data directory dir
// (mode 0700) and applies the migrations not yet applied.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "trackgate.db")
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrations are applied in order, each once; never edit one that has been
// released, add a new one.
var migrations = []string{
	// 1: users, clients, devices, signing keys, revocations.
	`CREATE TABLE users (
		id            INTEGER PRIMARY KEY,
		name          TEXT NOT NULL UNIQUE,
		password_hash TEXT NOT NULL,
		totp_secret   TEXT NOT NULL DEFAULT '',
		totp_last_step BIGINT NOT NULL DEFAULT 0,
		created_at    TIMESTAMP NOT NULL
	);
	CREATE TABLE clients (
		id            TEXT PRIMARY KEY,
		name          TEXT NOT NULL,
		secret_hash   TEXT NOT NULL DEFAULT '',
		redirect_uris TEXT NOT NULL DEFAULT '',
		grant_types   TEXT NOT NULL DEFAULT '',
		scopes        TEXT NOT NULL DEFAULT '',
		created_at    TIMESTAMP NOT NULL
	);
	CREATE TABLE devices (
		id         TEXT PRIMARY KEY,
		owner_id   INTEGER NOT NULL REFERENCES users(id),
		name       TEXT NOT NULL DEFAULT '',
		token_id   TEXT NOT NULL,
		created_at TIMESTAMP NOT NULL
	);
	CREATE INDEX devices_owner ON devices(owner_id);
	CREATE TABLE signing_keys (
		id         TEXT PRIMARY KEY,
		created_at TIMESTAMP NOT NULL,
		signs_from TIMESTAMP NOT NULL,
		retired_at TIMESTAMP
	);
	CREATE TABLE revocations (
		token_id   TEXT PRIMARY KEY,
		expires_at TIMESTAMP NOT NULL,
		revoked_at TIMESTAMP NOT NULL
	);`,
	// 2: browser sessions, authorization codes, grants with their refresh
	// tokens and access tokens, device codes.
	`CREATE TABLE sessions (
		id_hash    TEXT PRIMARY KEY,
		user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		amr        TEXT NOT NULL,
		auth_time  TIMESTAMP NOT NULL,
		csrf       TEXT NOT NULL,
		expires_at TIMESTAMP NOT NULL
	);
	CREATE INDEX sessions_expiry ON sessions(expires_at);
	CREATE TABLE grants (
		id         TEXT PRIMARY KEY,
		client_id  TEXT NOT NULL,
		user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		scopes     TEXT NOT NULL,
		amr        TEXT NOT NULL,
		auth_time  TIMESTAMP NOT NULL,
		created_at TIMESTAMP NOT NULL,
		expires_at TIMESTAMP NOT NULL,
		revoked_at TIMESTAMP
	);
	CREATE INDEX grants_user ON grants(user_id);
	CREATE TABLE auth_codes (
		hash         TEXT PRIMARY KEY,
		grant_id     TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
		redirect_uri TEXT NOT NULL,
		challenge    TEXT NOT NULL,
		nonce        TEXT NOT NULL,
		expires_at   TIMESTAMP NOT NULL,
		used_at      TIMESTAMP
	);
	CREATE TABLE refresh_tokens (
		hash       TEXT PRIMARY KEY,
		grant_id   TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
		issued_at  TIMESTAMP NOT NULL,
		expires_at TIMESTAMP NOT NULL,
		rotated_at TIMESTAMP,
		successor  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX refresh_tokens_grant ON refresh_tokens(grant_id);
	CREATE TABLE grant_access_tokens (
		jti        TEXT PRIMARY KEY,
		grant_id   TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
		expires_at TIMESTAMP NOT NULL
	);
	CREATE INDEX grant_access_tokens_grant ON grant_access_tokens(grant_id);
	CREATE TABLE device_codes (
		hash       TEXT PRIMARY KEY,
		user_code  TEXT NOT NULL UNIQUE,
		client_id  TEXT NOT NULL,
		scopes     TEXT NOT NULL,
		interval_s INTEGER NOT NULL,
		last_poll  TIMESTAMP,
		expires_at TIMESTAMP NOT NULL,
		status     TEXT NOT NULL,
		grant_id   TEXT NOT NULL DEFAULT ''
	);`,
	// 3: clients that authenticate with a key (private_key_jwt), the ids of
	// their assertions (replay guard), and the tokens issued to clients.
	`ALTER TABLE clients ADD COLUMN jwk TEXT NOT NULL DEFAULT '';
	CREATE TABLE assertion_ids (
		client_id  TEXT NOT NULL,
		jti        TEXT NOT NULL,
		expires_at TIMESTAMP NOT NULL,
		PRIMARY KEY (client_id, jti)
	);
	CREATE TABLE client_tokens (
		jti        TEXT PRIMARY KEY,
		client_id  TEXT NOT NULL,
		expires_at TIMESTAMP NOT NULL
	);
	CREATE INDEX client_tokens_client ON client_tokens(client_id);`,
	// 4: tracks (recording sessions: a device and a time span, with the
	// state of their summary), automatic tracks per device, and each
	// device's last position and status.
	`ALTER TABLE devices ADD COLUMN auto_split_s INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE tracks (
		id          TEXT PRIMARY KEY,
		owner_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		device_id   TEXT NOT NULL,
		name        TEXT NOT NULL DEFAULT '',
		auto        INTEGER NOT NULL DEFAULT 0,
		started_ns  BIGINT NOT NULL,
		stopped_ns  BIGINT,
		summary     TEXT NOT NULL DEFAULT '{}',
		dirty       INTEGER NOT NULL DEFAULT 0,
		version     BIGINT NOT NULL DEFAULT 1,
		touched_ns  BIGINT NOT NULL,
		created_at  TIMESTAMP NOT NULL
	);
	CREATE INDEX tracks_owner ON tracks(owner_id, started_ns DESC, id DESC);
	CREATE INDEX tracks_device ON tracks(device_id, started_ns);
	CREATE UNIQUE INDEX tracks_recording ON tracks(device_id) WHERE stopped_ns IS NULL;
	CREATE INDEX tracks_dirty ON tracks(dirty) WHERE dirty = 1;
	CREATE TABLE device_state (
		device_id   TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
		last_ns     BIGINT NOT NULL DEFAULT 0,
		position    TEXT NOT NULL DEFAULT '',
		status      TEXT NOT NULL DEFAULT '',
		status_ns   BIGINT NOT NULL DEFAULT 0
	);`,
	// 5: the website's sessions (its refresh tokens stay on the server).
	`CREATE TABLE web_sessions (
		id_hash    TEXT PRIMARY KEY,
		user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		refresh    TEXT NOT NULL,
		csrf       TEXT NOT NULL,
		expires_at TIMESTAMP NOT NULL
	);
	CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);`,
	// 6: jobs (imports of track files), their state and progress.
	`CREATE TABLE jobs (
		id               TEXT PRIMARY KEY,
		owner_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		kind             TEXT NOT NULL,
		device_id        TEXT NOT NULL,
		state            TEXT NOT NULL,
		name             TEXT NOT NULL DEFAULT '',
		file_name        TEXT NOT NULL DEFAULT '',
		format           TEXT NOT NULL DEFAULT '',
		size_bytes       BIGINT NOT NULL DEFAULT 0,
		sha256           TEXT NOT NULL DEFAULT '',
		progress         INTEGER NOT NULL DEFAULT 0,
		total_items      BIGINT NOT NULL DEFAULT -1,
		processed_items  BIGINT NOT NULL DEFAULT 0,
		skipped_items    BIGINT NOT NULL DEFAULT 0,
		track_id         TEXT NOT NULL DEFAULT '',
		error            TEXT NOT NULL DEFAULT '',
		cancel_requested INTEGER NOT NULL DEFAULT 0,
		created_ns       BIGINT NOT NULL,
		started_ns       BIGINT,
		ended_ns         BIGINT
	);
	CREATE INDEX jobs_owner ON jobs(owner_id, created_ns DESC, id DESC);
	CREATE INDEX jobs_open ON jobs(state, created_ns) WHERE state IN ('pending', 'running');`,
	// 7: what the firmware-bridge matches devices by: further protocol
	// identifiers (an IMEI, an OsmAnd id), a secret (its hash) and the unit
	// of the OsmAnd speed parameter.
	`CREATE TABLE device_identifiers (
		ident     TEXT PRIMARY KEY,
		device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE
	);
	CREATE INDEX device_identifiers_device ON device_identifiers(device_id);
	ALTER TABLE devices ADD COLUMN secret_hash TEXT NOT NULL DEFAULT '';
	ALTER TABLE devices ADD COLUMN speed_unit TEXT NOT NULL DEFAULT '';`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	var have int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("store: the database is at schema version %d, newer than this program's %d", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UTC())
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return nil
}

// tx runs f in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
