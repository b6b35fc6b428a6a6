-- Access control: users (argon2 password hashes), API tokens, device tokens bound to devices, browser sessions.
-- Secrets are never stored: tokens and session ids as SHA-256 of a 256-bit random value, passwords as argon2id.
CREATE TABLE IF NOT EXISTS users (
  id              TEXT PRIMARY KEY,
  username        TEXT NOT NULL UNIQUE COLLATE NOCASE,
  full_name       TEXT NOT NULL,                  -- the printed name of an electronic signature
  password_hash   TEXT NOT NULL,                  -- argon2id
  role            TEXT NOT NULL CHECK (role IN ('viewer', 'qa', 'admin')),
  active          INTEGER NOT NULL DEFAULT 1,
  failed_logins   INTEGER NOT NULL DEFAULT 0,     -- consecutive failures; reset on success
  locked_until    INTEGER,                        -- epoch ms; lockout after repeated failures
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
  id           TEXT PRIMARY KEY,
  token_hash   TEXT NOT NULL UNIQUE,              -- sha256 hex of the whole token "ct_..."
  name         TEXT NOT NULL,
  user_id      TEXT REFERENCES users (id),        -- NULL: a service token with its own role
  role         TEXT NOT NULL CHECK (role IN ('viewer', 'qa', 'admin')),
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER,                           -- NULL: no expiry
  revoked_at   INTEGER,
  last_used_at INTEGER
);

CREATE TABLE IF NOT EXISTS device_tokens (
  id           TEXT PRIMARY KEY,
  token_hash   TEXT NOT NULL UNIQUE,              -- sha256 hex of the whole token "ctd_..."
  name         TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  revoked_at   INTEGER,
  last_used_at INTEGER
);

CREATE TABLE IF NOT EXISTS device_token_devices (
  token_id  TEXT NOT NULL REFERENCES device_tokens (id),
  device_id TEXT NOT NULL,
  PRIMARY KEY (token_id, device_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sessions (
  id_hash      TEXT PRIMARY KEY,                  -- sha256 hex of the cookie value
  user_id      TEXT NOT NULL REFERENCES users (id),
  csrf_token   TEXT NOT NULL,                     -- echoed in X-CSRF-Token by the pages on writes
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,                  -- absolute limit
  last_seen_at INTEGER NOT NULL,                  -- idle timeout is measured from here
  revoked_at   INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
