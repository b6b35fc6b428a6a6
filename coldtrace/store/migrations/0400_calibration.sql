-- Calibration (issue 7, docs/RULES.md "Calibration"): device calibration state, bench sessions, results,
-- the as-found history used for long-term drift, and live EWMA charts.

-- One row per device that has a calibration state (loggers and references), keyed by device id.
CREATE TABLE IF NOT EXISTS device_calibration (
  device_id          TEXT PRIMARY KEY,
  last_calibrated_at INTEGER,                     -- epoch ms of the last calibration (session end)
  interval_days      REAL NOT NULL DEFAULT 365,
  due_at             INTEGER,                     -- last_calibrated_at + interval
  status             TEXT NOT NULL DEFAULT 'unknown',  -- valid | failed | indeterminate | unknown
  certificate_ref    TEXT,                        -- our certificate id, or an external certificate number
  expanded_uncertainty_c REAL,                    -- references: U (k=2) from their certificate
  resolution_c       REAL,                        -- display/recording resolution of the device
  traceability       TEXT,                        -- references: chain to national standards (lab, cert no.)
  due_alerted        TEXT,                        -- last calibration.due stage raised for due_at
  updated_at         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS device_calibration_due ON device_calibration (due_at);

CREATE TABLE IF NOT EXISTS calibration_sessions (
  id              TEXT PRIMARY KEY,
  reference_id    TEXT NOT NULL,
  set_points      TEXT NOT NULL,                  -- JSON list of °C, in bench order
  mpe_c           REAL NOT NULL,
  rule            TEXT NOT NULL DEFAULT 'guarded', -- guarded | simple
  kind            TEXT NOT NULL DEFAULT 'as_found', -- as_found | as_left
  capture_ms      INTEGER NOT NULL DEFAULT 600000,
  tolerance_c     REAL NOT NULL DEFAULT 1.0,       -- reference mean within this of the set point
  u_medium_c      REAL NOT NULL DEFAULT 0.0,
  u_ref_c         REAL NOT NULL,                   -- U_ref (k=2) used, copied at creation (the record)
  state           TEXT NOT NULL DEFAULT 'running', -- running | completed | cancelled
  point_index     INTEGER NOT NULL DEFAULT 0,      -- set point being sought/captured
  cursor_ms       INTEGER NOT NULL,                -- stability is sought in reference readings from here
  started_at      INTEGER NOT NULL,
  completed_at    INTEGER,
  created_at      INTEGER NOT NULL,
  created_by      TEXT,
  notes           TEXT
);
CREATE INDEX IF NOT EXISTS calibration_sessions_ref ON calibration_sessions (reference_id, started_at);

CREATE TABLE IF NOT EXISTS calibration_session_duts (
  session_id   TEXT NOT NULL REFERENCES calibration_sessions(id),
  device_id    TEXT NOT NULL,
  resolution_c REAL NOT NULL,
  PRIMARY KEY (session_id, device_id)
);
CREATE INDEX IF NOT EXISTS calibration_session_duts_device ON calibration_session_duts (device_id);

-- One row per set point once its stable window is found.
CREATE TABLE IF NOT EXISTS calibration_points (
  session_id    TEXT NOT NULL REFERENCES calibration_sessions(id),
  point_index   INTEGER NOT NULL,
  set_point_c   REAL NOT NULL,
  stable_from   INTEGER NOT NULL,
  stable_at     INTEGER NOT NULL,                  -- capture window [stable_at, capture_end]
  capture_end   INTEGER NOT NULL,
  ref_mean_c    REAL NOT NULL,
  ref_std_c     REAL NOT NULL,
  ref_slope_c_per_min REAL NOT NULL,
  evaluated     INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (session_id, point_index)
);

CREATE TABLE IF NOT EXISTS calibration_results (
  session_id   TEXT NOT NULL REFERENCES calibration_sessions(id),
  device_id    TEXT NOT NULL,
  point_index  INTEGER NOT NULL,
  set_point_c  REAL NOT NULL,
  n            INTEGER NOT NULL,
  error_c      REAL,
  s_c          REAL,
  u_c          REAL,
  expanded_u_c REAL,
  decision     TEXT NOT NULL,                      -- pass | fail | indeterminate | no_data
  zone         TEXT NOT NULL,                      -- ILAC-G8 zone
  ref_mean_c   REAL,
  dut_mean_c   REAL,
  capture_from INTEGER NOT NULL,
  capture_to   INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (session_id, device_id, point_index)
);
CREATE INDEX IF NOT EXISTS calibration_results_device ON calibration_results (device_id, set_point_c);

-- As-found errors over time per device and set point (sessions, plus imported external certificates).
CREATE TABLE IF NOT EXISTS calibration_history (
  device_id    TEXT NOT NULL,
  set_point_c  REAL NOT NULL,
  ts           INTEGER NOT NULL,
  error_c      REAL NOT NULL,
  expanded_u_c REAL NOT NULL,
  mpe_c        REAL NOT NULL,
  source       TEXT NOT NULL,                      -- session id, or 'import:<certificate>'
  PRIMARY KEY (device_id, set_point_c, ts)
);

-- Live EWMA chart per (session, device, set point): the baseline and the running state survive restarts.
CREATE TABLE IF NOT EXISTS calibration_ewma (
  session_id   TEXT NOT NULL,
  device_id    TEXT NOT NULL,
  point_index  INTEGER NOT NULL,
  mu0          REAL NOT NULL,
  sigma        REAL NOT NULL,
  n0           INTEGER NOT NULL,                   -- baseline pairs (mu0's standard error widens the limits)
  z            REAL NOT NULL,
  i            INTEGER NOT NULL,
  last_ts      INTEGER NOT NULL,                   -- newest paired DUT reading consumed
  drift_at     INTEGER,                            -- first paired reading where the chart signalled
  PRIMARY KEY (session_id, device_id, point_index)
);
