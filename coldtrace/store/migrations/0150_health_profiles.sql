-- Device health state (coldtrace.health.DeviceHealth as JSON), one row per device, written by the pipeline
-- in the transaction of the readings (or clock tick) that changed it.
CREATE TABLE IF NOT EXISTS device_health (
  device_id  TEXT PRIMARY KEY,
  state      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- Profiles are data: every version of a profile, with who changed it and when (never updated or deleted).
CREATE TABLE IF NOT EXISTS profile_changes (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  profile_id TEXT NOT NULL,
  body       TEXT NOT NULL,                       -- Profile.to_dict() as JSON
  changed_at INTEGER NOT NULL,
  changed_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profile_changes_profile ON profile_changes (profile_id, id);

-- Which profile a device is judged by, from when, and who decided it.
CREATE TABLE IF NOT EXISTS device_profile_assignments (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id           TEXT NOT NULL,
  profile_id          TEXT NOT NULL,
  previous_profile_id TEXT,
  assigned_at         INTEGER NOT NULL,
  assigned_by         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_profile_assignments_device ON device_profile_assignments (device_id, id);
