-- Issue 12: a conflicting duplicate shows where each value came from. The received value's source is the
-- quarantine row's own `source`; the stored value's is `stored_source`. Readings keep no source per row (the
-- hot path stays four columns), so the store records which sources (mqtt, http, serial, lorawan...) have
-- delivered a device's readings, one row per (device, source) written the first time that pair is seen; the
-- stored value came from one of the sources recorded before the conflict ("mqtt", or "http or mqtt" when the
-- device has used several).
CREATE TABLE IF NOT EXISTS device_sources (
  device_id  TEXT NOT NULL,
  source     TEXT NOT NULL,
  first_seen INTEGER NOT NULL,                 -- epoch ms
  PRIMARY KEY (device_id, source)
);
ALTER TABLE quarantine ADD COLUMN stored_source TEXT;
