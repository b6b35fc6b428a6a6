-- The insert trigger of 0900 doubled the cost of storing a reading (it upserts the rollup once per row).
-- SqliteReadingStore.write now folds each batch into the rollup itself, one upsert per (device, 10-minute
-- bucket) touched, in the same transaction (coldtrace/store/rollup.py: record_inserts). Deletes and updates
-- are rare and keep their triggers.
DROP TRIGGER IF EXISTS readings_rollup_ins;
