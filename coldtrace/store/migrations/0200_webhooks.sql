-- Webhook subscriptions, one delivery per (subscription, outbox event), and every attempt of a delivery.
-- Secrets are stored as given: the notifier needs them to sign. The API returns a secret once (on
-- creation and on rotation) and never again; protect the database file like the secrets it holds.
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
  id                  TEXT PRIMARY KEY,
  url                 TEXT NOT NULL,
  description         TEXT NOT NULL DEFAULT '',
  secret              TEXT NOT NULL,                 -- whsec_...
  previous_secret     TEXT,                          -- still signed with until previous_expires_at
  previous_expires_at INTEGER,
  event_types         TEXT NOT NULL DEFAULT '[]',    -- JSON list; [] = every type ("excursion.*" allowed)
  min_severity        TEXT,                          -- info | warning | alarm | critical | NULL (all)
  device_ids          TEXT NOT NULL DEFAULT '[]',    -- JSON list; [] = every device
  enabled             INTEGER NOT NULL DEFAULT 1,
  escalation          INTEGER NOT NULL DEFAULT 0,    -- 1: receives alert.escalated (escalation contacts)
  disabled_reason     TEXT,                          -- e.g. "receiver answered 410 Gone"
  created_at          INTEGER NOT NULL,
  created_by          TEXT,
  updated_at          INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
  event_id        TEXT NOT NULL,                     -- outbox.event_id = webhook-id (same on every retry)
  event_type      TEXT NOT NULL,
  state           TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed | disabled
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,                           -- due time while pending (also the in-flight lease)
  created_at      INTEGER NOT NULL,
  delivered_at    INTEGER,
  last_status     INTEGER,
  last_error      TEXT,
  UNIQUE (subscription_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE IF NOT EXISTS webhook_attempts (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempt_no   INTEGER NOT NULL,
  trigger      TEXT NOT NULL DEFAULT 'scheduled',    -- scheduled | manual | ping
  started_at   INTEGER NOT NULL,
  status       INTEGER,                              -- HTTP status; NULL when no answer
  latency_ms   INTEGER,
  error        TEXT,                                 -- timeout, connection refused, HTTP 500...
  response     TEXT                                  -- first bytes of the answer, for diagnosis
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt_no);
