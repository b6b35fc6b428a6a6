-- Pre-aggregated readings for the QA pages' charts: min/max/sum/count per device and 10-minute bucket.
-- A year of one-minute readings is 525,600 rows; grouping them on every chart request costs ~250 ms on SQLite,
-- grouping the 52,560 rollup rows ~15 ms. Maintained by triggers, so every writer keeps it exact (the
-- readings table is INSERT OR IGNORE: an ignored duplicate fires no trigger). Buckets are epoch-aligned:
-- bucket = ts - ts % 600000 (timestamps are epoch ms >= 0). See coldtrace/store/rollup.py.
CREATE TABLE IF NOT EXISTS readings_rollup (
  device_id TEXT NOT NULL,
  bucket    INTEGER NOT NULL,                    -- epoch ms, a multiple of 600000
  min_c     REAL NOT NULL,
  max_c     REAL NOT NULL,
  sum_c     REAL NOT NULL,
  n         INTEGER NOT NULL,
  PRIMARY KEY (device_id, bucket)
) WITHOUT ROWID;

INSERT OR REPLACE INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
  SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*)
  FROM readings GROUP BY device_id, ts - ts % 600000;

CREATE TRIGGER IF NOT EXISTS readings_rollup_ins AFTER INSERT ON readings BEGIN
  INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
  VALUES (NEW.device_id, NEW.ts - NEW.ts % 600000, NEW.temp_c, NEW.temp_c, NEW.temp_c, 1)
  ON CONFLICT (device_id, bucket) DO UPDATE SET min_c = MIN(min_c, excluded.min_c),
    max_c = MAX(max_c, excluded.max_c), sum_c = sum_c + excluded.sum_c, n = n + 1;
END;

-- Deletions and updates are rare (retention, corrections): recompute the touched bucket from the readings.
CREATE TRIGGER IF NOT EXISTS readings_rollup_del AFTER DELETE ON readings BEGIN
  DELETE FROM readings_rollup WHERE device_id = OLD.device_id AND bucket = OLD.ts - OLD.ts % 600000;
  INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
    SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings
    WHERE device_id = OLD.device_id AND ts >= OLD.ts - OLD.ts % 600000 AND ts < OLD.ts - OLD.ts % 600000 + 600000
    GROUP BY device_id, ts - ts % 600000;
END;

CREATE TRIGGER IF NOT EXISTS readings_rollup_upd AFTER UPDATE ON readings BEGIN
  DELETE FROM readings_rollup WHERE (device_id = OLD.device_id AND bucket = OLD.ts - OLD.ts % 600000)
    OR (device_id = NEW.device_id AND bucket = NEW.ts - NEW.ts % 600000);
  INSERT INTO readings_rollup (device_id, bucket, min_c, max_c, sum_c, n)
    SELECT device_id, ts - ts % 600000, MIN(temp_c), MAX(temp_c), SUM(temp_c), COUNT(*) FROM readings
    WHERE (device_id = OLD.device_id AND ts >= OLD.ts - OLD.ts % 600000 AND ts < OLD.ts - OLD.ts % 600000 + 600000)
       OR (device_id = NEW.device_id AND ts >= NEW.ts - NEW.ts % 600000 AND ts < NEW.ts - NEW.ts % 600000 + 600000)
    GROUP BY device_id, ts - ts % 600000;
END;
