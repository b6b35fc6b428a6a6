-- Pre-aggregated readings for the QA pages' charts: min/max/sum/count per device and 10-minute bucket.
-- A year of one-minute readings is 525,600 rows; grouping them on every chart request costs ~250 ms on SQLite,
-- grouping the 52,560 rollup rows ~15 ms. Kept exact by the reading store (inserts) and triggers (deletes,
-- updates). Buckets are epoch-aligned:
-- bucket = ts - ts % 600000 (timestamps are epoch ms >= 0). See coldtrace/store/rollup.py.
CREATE TABLE IF NOT EXISTS readings_rollup (
  device_id TEXT NOT NULL,
  bucket    BIGINT NOT NULL,                    -- epoch ms, a multiple of 600000
  min_c     DOUBLE PRECISION NOT NULL,
  max_c     DOUBLE PRECISION NOT NULL,
  sum_c     DOUBLE PRECISION NOT NULL,
  n         BIGINT NOT NULL,
  PRIMARY KEY (device_id, bucket)
);

INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
  SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*)
  FROM readings GROUP BY device_id, ts - ts % 600000
  ON CONFLICT (device_id, bucket) DO UPDATE SET min_c = excluded.min_c, max_c = excluded.max_c,
    sum_c = excluded.sum_c, n = excluded.n;

-- PostgreSQL: no per-row insert trigger (0910 drops SQLite's; the reading store folds each batch into the
-- rollup itself). Deletions and updates are rare (retention, corrections): one statement-independent row
-- trigger recomputes the touched buckets from the readings.
CREATE OR REPLACE FUNCTION readings_rollup_recompute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    DELETE FROM readings_rollup WHERE device_id = OLD.device_id AND bucket = OLD.ts - OLD.ts % 600000;
    INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
      SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings
      WHERE device_id = OLD.device_id AND ts >= OLD.ts - OLD.ts % 600000 AND ts < OLD.ts - OLD.ts % 600000 + 600000
      GROUP BY device_id, ts - ts % 600000;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    DELETE FROM readings_rollup WHERE device_id = NEW.device_id AND bucket = NEW.ts - NEW.ts % 600000;
    INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
      SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings
      WHERE device_id = NEW.device_id AND ts >= NEW.ts - NEW.ts % 600000 AND ts < NEW.ts - NEW.ts % 600000 + 600000
      GROUP BY device_id, ts - ts % 600000;
  END IF;
  RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS readings_rollup_del ON readings;
CREATE TRIGGER readings_rollup_del AFTER DELETE ON readings
  FOR EACH ROW EXECUTE FUNCTION readings_rollup_recompute();
DROP TRIGGER IF EXISTS readings_rollup_upd ON readings;
CREATE TRIGGER readings_rollup_upd AFTER UPDATE ON readings
  FOR EACH ROW EXECUTE FUNCTION readings_rollup_recompute();
