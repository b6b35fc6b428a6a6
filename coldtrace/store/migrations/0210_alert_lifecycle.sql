-- Alert lifecycle: the current handling state of each alert (alerts.state keeps open|acknowledged|resolved)
-- and the append-only history of every change with who and when.
CREATE TABLE IF NOT EXISTS alert_lifecycle (
  alert_id           TEXT PRIMARY KEY,
  assignee           TEXT,
  acknowledged_at    INTEGER,
  acknowledged_by    TEXT,
  ack_comment        TEXT,
  resolved_at        INTEGER,
  resolved_by        TEXT,                        -- a username, or 'system' for self-resolution
  resolution         TEXT,
  escalations        INTEGER NOT NULL DEFAULT 0,  -- alert.escalated events sent so far
  last_escalated_at  INTEGER,
  next_escalation_at INTEGER                      -- NULL: not (or no longer) escalating
);

CREATE TABLE IF NOT EXISTS alert_events (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id TEXT NOT NULL,
  at       INTEGER NOT NULL,                      -- epoch ms UTC
  actor    TEXT NOT NULL,                         -- username, token:<name>, or 'system'
  action   TEXT NOT NULL,                         -- acknowledged | assigned | commented | resolved | escalated | auto_resolved
  comment  TEXT,
  data     TEXT                                   -- JSON details (assignee, escalation level...)
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id, id);

CREATE TRIGGER IF NOT EXISTS alert_events_no_update BEFORE UPDATE ON alert_events
BEGIN
  SELECT RAISE(ABORT, 'alert_events is append-only');
END;

CREATE TRIGGER IF NOT EXISTS alert_events_no_delete BEFORE DELETE ON alert_events
BEGIN
  SELECT RAISE(ABORT, 'alert_events is append-only');
END;

CREATE INDEX IF NOT EXISTS alerts_state_sev ON alerts (state, severity);
CREATE INDEX IF NOT EXISTS alerts_excursion ON alerts (excursion_id);
