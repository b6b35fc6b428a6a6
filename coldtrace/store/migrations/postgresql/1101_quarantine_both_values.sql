-- A conflicting duplicate (reason 'conflicting_duplicate') shows both values side by side: the one stored
-- first (kept in the series, with its seq) and the one received later (this row's source, topic and raw).
ALTER TABLE quarantine ADD COLUMN stored_temp_c DOUBLE PRECISION;
ALTER TABLE quarantine ADD COLUMN stored_seq BIGINT;
ALTER TABLE quarantine ADD COLUMN received_temp_c DOUBLE PRECISION;
ALTER TABLE quarantine ADD COLUMN received_seq BIGINT;
