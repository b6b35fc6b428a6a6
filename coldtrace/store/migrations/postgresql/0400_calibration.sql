-- Calibration (issue 7, docs/RULES.md "Calibration"): device calibration state, bench sessions, results,
-- the as-found history used for long-term drift, and live EWMA charts.

-- One row per device that has a calibration state (loggers and references), keyed by device id.
CREATE TABLE IF NOT EXISTS device_calibration (
  device_id          TEXT PRIMARY KEY,
  last_calibrated_at BIGINT,                     -- epoch ms of the last calibration (session end)
  interval_days      DOUBLE PRECISION NOT NULL DEFAULT 365,
  due_at             BIGINT,                     -- last_calibrated_at + interval
  status             TEXT NOT NULL DEFAULT 'unknown',  -- valid | failed | indeterminate | unknown
  certificate_ref    TEXT,                        -- our certificate id, or an external certificate number
  expanded_uncertainty_c DOUBLE PRECISION,                    -- references: U (k=2) from their certificate
  resolution_c       DOUBLE PRECISION,                        -- display/recording resolution of the device
  traceability       TEXT,                        -- references: chain to national standards (lab, cert no.)
  due_alerted        TEXT,                        -- last calibration.due stage raised for due_at
  updated_at         BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_calibration_due ON device_calibration (due_at);

CREATE TABLE IF NOT EXISTS calibration_sessions (
  id              TEXT PRIMARY KEY,
  reference_id    TEXT NOT NULL,
  set_points      TEXT NOT NULL,                  -- JSON list of °C, in bench order
  mpe_c           DOUBLE PRECISION NOT NULL,
  rule            TEXT NOT NULL DEFAULT 'guarded', -- guarded | simple
  kind            TEXT NOT NULL DEFAULT 'as_found', -- as_found | as_left
  capture_ms      BIGINT NOT NULL DEFAULT 600000,
  tolerance_c     DOUBLE PRECISION NOT NULL DEFAULT 1.0,       -- reference mean within this of the set point
  u_medium_c      DOUBLE PRECISION NOT NULL DEFAULT 0.0,
  u_ref_c         DOUBLE PRECISION NOT NULL,                   -- U_ref (k=2) used, copied at creation (the record)
  state           TEXT NOT NULL DEFAULT 'running', -- running | completed | cancelled
  point_index     BIGINT NOT NULL DEFAULT 0,      -- set point being sought/captured
  cursor_ms       BIGINT NOT NULL,                -- stability is sought in reference readings from here
  started_at      BIGINT NOT NULL,
  completed_at    BIGINT,
  created_at      BIGINT NOT NULL,
  created_by      TEXT,
  notes           TEXT
);
CREATE INDEX IF NOT EXISTS calibration_sessions_ref ON calibration_sessions (reference_id, started_at);

CREATE TABLE IF NOT EXISTS calibration_session_duts (
  session_id   TEXT NOT NULL REFERENCES calibration_sessions(id),
  device_id    TEXT NOT NULL,
  resolution_c DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (session_id, device_id)
);
CREATE INDEX IF NOT EXISTS calibration_session_duts_device ON calibration_session_duts (device_id);

-- One row per set point once its stable window is found.
CREATE TABLE IF NOT EXISTS calibration_points (
  session_id    TEXT NOT NULL REFERENCES calibration_sessions(id),
  point_index   BIGINT NOT NULL,
  set_point_c   DOUBLE PRECISION NOT NULL,
  stable_from   BIGINT NOT NULL,
  stable_at     BIGINT NOT NULL,                  -- capture window [stable_at, capture_end]
  capture_end   BIGINT NOT NULL,
  ref_mean_c    DOUBLE PRECISION NOT NULL,
  ref_std_c     DOUBLE PRECISION NOT NULL,
  ref_slope_c_per_min DOUBLE PRECISION NOT NULL,
  evaluated     BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (session_id, point_index)
);

CREATE TABLE IF NOT EXISTS calibration_results (
  session_id   TEXT NOT NULL REFERENCES calibration_sessions(id),
  device_id    TEXT NOT NULL,
  point_index  BIGINT NOT NULL,
  set_point_c  DOUBLE PRECISION NOT NULL,
  n            BIGINT NOT NULL,
  error_c      DOUBLE PRECISION,
  s_c          DOUBLE PRECISION,
  u_c          DOUBLE PRECISION,
  expanded_u_c DOUBLE PRECISION,
  decision     TEXT NOT NULL,                      -- pass | fail | indeterminate | no_data
  zone         TEXT NOT NULL,                      -- ILAC-G8 zone
  ref_mean_c   DOUBLE PRECISION,
  dut_mean_c   DOUBLE PRECISION,
  capture_from BIGINT NOT NULL,
  capture_to   BIGINT NOT NULL,
  created_at   BIGINT NOT NULL,
  PRIMARY KEY (session_id, device_id, point_index)
);
CREATE INDEX IF NOT EXISTS calibration_results_device ON calibration_results (device_id, set_point_c);

-- As-found errors over time per device and set point (sessions, plus imported external certificates).
CREATE TABLE IF NOT EXISTS calibration_history (
  device_id    TEXT NOT NULL,
  set_point_c  DOUBLE PRECISION NOT NULL,
  ts           BIGINT NOT NULL,
  error_c      DOUBLE PRECISION NOT NULL,
  expanded_u_c DOUBLE PRECISION NOT NULL,
  mpe_c        DOUBLE PRECISION NOT NULL,
  source       TEXT NOT NULL,                      -- session id, or 'import:<certificate>'
  PRIMARY KEY (device_id, set_point_c, ts)
);

-- Live EWMA chart per (session, device, set point): the baseline and the running state survive restarts.
CREATE TABLE IF NOT EXISTS calibration_ewma (
  session_id   TEXT NOT NULL,
  device_id    TEXT NOT NULL,
  point_index  BIGINT NOT NULL,
  mu0          DOUBLE PRECISION NOT NULL,
  sigma        DOUBLE PRECISION NOT NULL,
  n0           BIGINT NOT NULL,                   -- baseline pairs (mu0's standard error widens the limits)
  z            DOUBLE PRECISION NOT NULL,
  i            BIGINT NOT NULL,
  last_ts      BIGINT NOT NULL,                   -- newest paired DUT reading consumed
  drift_at     BIGINT,                            -- first paired reading where the chart signalled
  PRIMARY KEY (session_id, device_id, point_index)
);
