-- Quarantine rows that need a person's decision (a conflicting duplicate: a second reading for an existing
-- (device, ts) with another value) carry the reading's timestamp and, once QA has looked at them, who
-- resolved them, when and how. A device's (or a shipment window's) evaluation is flagged "conflicting data"
-- while a row of reason 'conflicting_duplicate' in its window has resolved_at NULL.
ALTER TABLE quarantine ADD COLUMN reading_ts BIGINT;
ALTER TABLE quarantine ADD COLUMN resolved_at BIGINT;
ALTER TABLE quarantine ADD COLUMN resolved_by TEXT;
ALTER TABLE quarantine ADD COLUMN resolution TEXT;
CREATE INDEX IF NOT EXISTS quarantine_open_conflicts ON quarantine (device_id, reading_ts)
  WHERE reason = 'conflicting_duplicate' AND resolved_at IS NULL;
