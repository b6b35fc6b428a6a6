-- Predicted drift (docs/RULES.md "Calibration decisions"): the long-term regression's earliest predicted
-- out-of-tolerance date when it falls before the device's due date (NULL: none predicted), and when that
-- was last judged (the clock tick re-judges once a day; new history and a new due date at once).
ALTER TABLE device_calibration ADD COLUMN drift_predicted_ms BIGINT;
ALTER TABLE device_calibration ADD COLUMN drift_judged_at BIGINT;
