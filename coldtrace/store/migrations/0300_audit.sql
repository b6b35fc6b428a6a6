-- Audit trail (21 CFR 11.10(e), EU GMP Annex 11 §9): append-only and hash-chained.
-- Each row's hash covers its content and the previous row's hash, so an edited, removed or reordered row
-- breaks the chain at that row; the triggers refuse UPDATE and DELETE through SQL.
CREATE TABLE IF NOT EXISTS audit_log (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  ts         INTEGER NOT NULL,                    -- epoch ms UTC, when the change was made
  actor      TEXT NOT NULL,                       -- username, token:<name>, device-token:<id>, system
  action     TEXT NOT NULL,                       -- e.g. shipment.create, decision.sign, user.create
  entity     TEXT NOT NULL,                       -- e.g. shipment, user, alert
  entity_id  TEXT,
  old_value  TEXT,                                -- JSON, NULL when created
  new_value  TEXT,                                -- JSON, NULL when removed
  reason     TEXT,
  prev_hash  TEXT NOT NULL,
  hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entity ON audit_log (entity, entity_id, id);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);

CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;
