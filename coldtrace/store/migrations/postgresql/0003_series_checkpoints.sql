-- Excursion engine checkpoints of live device series (SeriesEngine.snapshot() as JSON), taken about once an
-- hour of data. Late data and restarts re-evaluate from the last checkpoint before the earliest new reading
-- instead of from the start of the device's history. ``profile_hash`` ties a checkpoint to the profile it was
-- taken with: after a profile change none matches and the series is evaluated from its start.
CREATE TABLE IF NOT EXISTS series_checkpoints (
  series_id    TEXT NOT NULL,
  ts           BIGINT NOT NULL,      -- the last reading fed before the snapshot
  profile_hash TEXT NOT NULL,
  snapshot     TEXT NOT NULL,
  PRIMARY KEY (series_id, ts)
);
