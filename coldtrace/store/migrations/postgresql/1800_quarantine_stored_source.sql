-- PostgreSQL twin of ../1800_quarantine_stored_source.sql (times are epoch ms: BIGINT).
-- Issue 12: a conflicting duplicate shows where each value came from. The received value's source is the
-- quarantine row's own `source`; the stored value's is `stored_source`. Readings keep no source per row, so
-- the store records which sources have delivered a device's readings, one row per (device, source) written
-- the first time that pair is seen; the stored value came from one of the sources recorded before the conflict.
CREATE TABLE IF NOT EXISTS device_sources (
  device_id  TEXT NOT NULL,
  source     TEXT NOT NULL,
  first_seen BIGINT NOT NULL,
  PRIMARY KEY (device_id, source)
);
ALTER TABLE quarantine ADD COLUMN stored_source TEXT;
