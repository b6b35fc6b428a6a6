-- Device roles (docs/RULES.md "Device roles"): what a device is for decides which rules judge its readings.
-- role NULL: not set by a person; the effective role then follows the device's kind (a reference thermometer
-- is a calibration reference) and, while it takes part in a running calibration session, that session.
-- judged_from: readings before this timestamp are not judged by a shipment profile (they were taken on a
-- calibration bench); set when a device leaves the bench.
ALTER TABLE devices ADD COLUMN role TEXT;
ALTER TABLE devices ADD COLUMN judged_from BIGINT;
