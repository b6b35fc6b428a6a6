-- Core tables of the embedded store: readings, devices, profiles, quarantine, excursions, alerts, outbox.
CREATE TABLE IF NOT EXISTS readings (
  device_id TEXT NOT NULL,
  ts        INTEGER NOT NULL,           -- epoch ms UTC
  temp_c    REAL NOT NULL,
  seq       INTEGER,
  PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS devices (
  id            TEXT PRIMARY KEY,
  kind          TEXT NOT NULL DEFAULT 'logger',   -- logger | reference | gateway
  name          TEXT,
  profile_id    TEXT,
  monitored     INTEGER NOT NULL DEFAULT 1,
  registered_at INTEGER NOT NULL,
  last_seen_at  INTEGER,                          -- receive time of the last message
  last_ts       INTEGER,                          -- timestamp of the newest reading
  last_temp_c   REAL,
  battery_pct   REAL,
  last_seq      INTEGER,
  seq_gaps      INTEGER NOT NULL DEFAULT 0,       -- messages missing upstream (gaps in seq)
  online        INTEGER,                          -- NULL unknown, 1 online, 0 offline
  status_json   TEXT                              -- last status (birth / last will) message
);

CREATE TABLE IF NOT EXISTS profiles (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  body       TEXT NOT NULL,                       -- Profile.to_dict() as JSON
  builtin    INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  updated_by TEXT
);

CREATE TABLE IF NOT EXISTS quarantine (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  received_at INTEGER NOT NULL,
  source      TEXT NOT NULL,                      -- mqtt | http | serial:<port>
  topic       TEXT,
  device_id   TEXT,
  reason      TEXT NOT NULL,
  detail      TEXT NOT NULL,
  reading_index INTEGER,                          -- NULL: the whole message
  raw         BLOB
);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine (reason);

CREATE TABLE IF NOT EXISTS excursions (
  id             TEXT PRIMARY KEY,
  series_id      TEXT NOT NULL,
  device_id      TEXT NOT NULL,
  shipment_id    TEXT,
  limit_id       TEXT NOT NULL,
  direction      TEXT NOT NULL,
  threshold_c    REAL NOT NULL,
  severity       TEXT NOT NULL,
  start_ts       INTEGER NOT NULL,
  end_ts         INTEGER,
  duration_ms    INTEGER NOT NULL,
  peak_c         REAL NOT NULL,
  degree_minutes REAL NOT NULL,
  alarm_ts       INTEGER,
  alarm_kind     TEXT,
  superseded     INTEGER NOT NULL DEFAULT 0,      -- late data removed this episode (kept, never deleted)
  updated_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS excursions_series ON excursions (series_id, start_ts);
CREATE INDEX IF NOT EXISTS excursions_device ON excursions (device_id, start_ts);

CREATE TABLE IF NOT EXISTS alerts (
  id           TEXT PRIMARY KEY,
  type         TEXT NOT NULL,
  severity     TEXT NOT NULL,
  device_id    TEXT,
  shipment_id  TEXT,
  excursion_id TEXT,
  ts           INTEGER NOT NULL,                  -- when it happened (reading time)
  created_at   INTEGER NOT NULL,                  -- when ColdTrace raised it
  data         TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'open'       -- open | acknowledged | resolved
);
CREATE INDEX IF NOT EXISTS alerts_created ON alerts (created_at);
CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device_id, ts);

-- Transactional outbox: one row per event, written in the alert's transaction; the notifier fans it out.
CREATE TABLE IF NOT EXISTS outbox (
  event_id    TEXT PRIMARY KEY,                   -- webhook-id
  type        TEXT NOT NULL,
  alert_id    TEXT,
  payload     TEXT NOT NULL,                      -- the webhook body (JSON)
  created_at  INTEGER NOT NULL,
  dispatched  INTEGER NOT NULL DEFAULT 0          -- 1 once fanned out into deliveries
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (dispatched, created_at);

CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
