-- Access control: users (argon2 password hashes), API tokens, device tokens bound to devices, browser sessions.
-- Secrets are never stored: tokens and session ids as SHA-256 of a 256-bit random value, passwords as argon2id.
-- PostgreSQL: usernames compare without regard to case (SQLite's COLLATE NOCASE) as citext, a trusted
-- extension the database owner may create.
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE IF NOT EXISTS users (
  id              TEXT PRIMARY KEY,
  username        CITEXT NOT NULL UNIQUE,
  full_name       TEXT NOT NULL,                  -- the printed name of an electronic signature
  password_hash   TEXT NOT NULL,                  -- argon2id
  role            TEXT NOT NULL CHECK (role IN ('viewer', 'qa', 'admin')),
  active          BIGINT NOT NULL DEFAULT 1,
  failed_logins   BIGINT NOT NULL DEFAULT 0,     -- consecutive failures; reset on success
  locked_until    BIGINT,                        -- epoch ms; lockout after repeated failures
  created_at      BIGINT NOT NULL,
  updated_at      BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
  id           TEXT PRIMARY KEY,
  token_hash   TEXT NOT NULL UNIQUE,              -- sha256 hex of the whole token "ct_..."
  name         TEXT NOT NULL,
  user_id      TEXT REFERENCES users (id),        -- NULL: a service token with its own role
  role         TEXT NOT NULL CHECK (role IN ('viewer', 'qa', 'admin')),
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT,                           -- NULL: no expiry
  revoked_at   BIGINT,
  last_used_at BIGINT
);

CREATE TABLE IF NOT EXISTS device_tokens (
  id           TEXT PRIMARY KEY,
  token_hash   TEXT NOT NULL UNIQUE,              -- sha256 hex of the whole token "ctd_..."
  name         TEXT NOT NULL,
  created_at   BIGINT NOT NULL,
  revoked_at   BIGINT,
  last_used_at BIGINT
);

CREATE TABLE IF NOT EXISTS device_token_devices (
  token_id  TEXT NOT NULL REFERENCES device_tokens (id),
  device_id TEXT NOT NULL,
  PRIMARY KEY (token_id, device_id)
);

CREATE TABLE IF NOT EXISTS sessions (
  id_hash      TEXT PRIMARY KEY,                  -- sha256 hex of the cookie value
  user_id      TEXT NOT NULL REFERENCES users (id),
  csrf_token   TEXT NOT NULL,                     -- echoed in X-CSRF-Token by the pages on writes
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT NOT NULL,                  -- absolute limit
  last_seen_at BIGINT NOT NULL,                  -- idle timeout is measured from here
  revoked_at   BIGINT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
