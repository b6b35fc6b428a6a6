-- The pipeline caches profiles (and the excursion engines built from them) per process. A profile edited or
-- assigned through the API must reach every process that ingests (the collector, its ingest child, another
-- machine's collector), so each change bumps one counter that the pipeline reads inside every flush's write
-- transaction and, when it moved, forgets its cached profiles and engines (coldtrace/pipeline.py).
INSERT OR IGNORE INTO meta (key, value) VALUES ('config_version', '0');
CREATE TRIGGER IF NOT EXISTS profiles_config_ins AFTER INSERT ON profiles
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER IF NOT EXISTS profiles_config_upd AFTER UPDATE ON profiles
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER IF NOT EXISTS profiles_config_del AFTER DELETE ON profiles
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
CREATE TRIGGER IF NOT EXISTS devices_config_profile AFTER UPDATE OF profile_id ON devices
WHEN OLD.profile_id IS NOT NEW.profile_id
BEGIN UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'; END;
