-- The pipeline caches profiles (and the excursion engines built from them) per process. A profile edited or
-- assigned through the API must reach every process that ingests (the collector, its ingest child, another
-- machine's collector), so each change bumps one counter that the pipeline reads inside every flush's write
-- transaction and, when it moved, forgets its cached profiles and engines (coldtrace/pipeline.py).
INSERT INTO meta (key, value) VALUES ('config_version', '0') ON CONFLICT (key) DO NOTHING;
CREATE OR REPLACE FUNCTION coldtrace_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE meta SET value = (CAST(value AS BIGINT) + 1)::text WHERE key = 'config_version';
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS profiles_config_ins ON profiles;
CREATE TRIGGER profiles_config_ins AFTER INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION coldtrace_config_changed();
DROP TRIGGER IF EXISTS profiles_config_upd ON profiles;
CREATE TRIGGER profiles_config_upd AFTER UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION coldtrace_config_changed();
DROP TRIGGER IF EXISTS profiles_config_del ON profiles;
CREATE TRIGGER profiles_config_del AFTER DELETE ON profiles FOR EACH ROW EXECUTE FUNCTION coldtrace_config_changed();
DROP TRIGGER IF EXISTS devices_config_profile ON devices;
CREATE TRIGGER devices_config_profile AFTER UPDATE OF profile_id ON devices
  FOR EACH ROW WHEN (OLD.profile_id IS DISTINCT FROM NEW.profile_id) EXECUTE FUNCTION coldtrace_config_changed();
