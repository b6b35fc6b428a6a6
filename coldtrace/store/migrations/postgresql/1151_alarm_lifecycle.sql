-- ISA-18.2 alarm lifecycle (docs/RULES.md "Alert handling"): the condition an alert reports (active while
-- it lasts, cleared once it has returned to normal) next to the workflow state (open | acknowledged |
-- resolved), and shelving (a person suppresses an alert for a while, with a reason; expiry returns it).
ALTER TABLE alerts ADD COLUMN condition TEXT NOT NULL DEFAULT 'active';   -- active | cleared
ALTER TABLE alerts ADD COLUMN cleared_at BIGINT;
ALTER TABLE alerts ADD COLUMN shelved_until BIGINT;                      -- NULL: not shelved
ALTER TABLE alert_lifecycle ADD COLUMN shelved_at BIGINT;
ALTER TABLE alert_lifecycle ADD COLUMN shelved_by TEXT;
ALTER TABLE alert_lifecycle ADD COLUMN shelve_reason TEXT;
CREATE INDEX IF NOT EXISTS alerts_inbox ON alerts (state, condition);

-- An excursion alert's condition is its excursion: active while it is open and not superseded. Alerts are
-- inserted after their excursion is stored in the same transaction, so the trigger sees the final state.
-- (PostgreSQL: the four SQLite triggers as PL/pgSQL functions with the same WHEN conditions.)
CREATE OR REPLACE FUNCTION alerts_condition_of_excursion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE alerts SET condition = 'cleared', cleared_at = NEW.created_at
  WHERE id = NEW.id AND (NEW.type = 'excursion.closed' OR NOT EXISTS (
    SELECT 1 FROM excursions e WHERE e.id = NEW.excursion_id AND e.end_ts IS NULL AND e.superseded = 0));
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS alerts_condition_of_excursion ON alerts;
CREATE TRIGGER alerts_condition_of_excursion AFTER INSERT ON alerts
  FOR EACH ROW WHEN (NEW.excursion_id IS NOT NULL) EXECUTE FUNCTION alerts_condition_of_excursion();

-- Events that report an end or a decision have no condition that could still be active.
CREATE OR REPLACE FUNCTION alerts_condition_of_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE alerts SET condition = 'cleared', cleared_at = NEW.created_at WHERE id = NEW.id;
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS alerts_condition_of_events ON alerts;
CREATE TRIGGER alerts_condition_of_events AFTER INSERT ON alerts
  FOR EACH ROW WHEN (NEW.excursion_id IS NULL AND NEW.type IN ('device.online', 'shipment.decided'))
  EXECUTE FUNCTION alerts_condition_of_events();

-- A device heard from again clears its offline alarm.
CREATE OR REPLACE FUNCTION alerts_online_clears_offline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE alerts SET condition = 'cleared', cleared_at = NEW.created_at
  WHERE type = 'device.offline' AND device_id = NEW.device_id AND condition = 'active';
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS alerts_online_clears_offline ON alerts;
CREATE TRIGGER alerts_online_clears_offline AFTER INSERT ON alerts
  FOR EACH ROW WHEN (NEW.type = 'device.online') EXECUTE FUNCTION alerts_online_clears_offline();

-- An excursion that ended or was withdrawn by late data clears the condition of its alerts.
CREATE OR REPLACE FUNCTION excursions_clear_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE alerts SET condition = 'cleared', cleared_at = NEW.updated_at
  WHERE excursion_id = NEW.id AND condition = 'active';
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS excursions_clear_alerts ON excursions;
CREATE TRIGGER excursions_clear_alerts AFTER UPDATE OF end_ts, superseded ON excursions
  FOR EACH ROW WHEN (NEW.end_ts IS NOT NULL OR NEW.superseded = 1) EXECUTE FUNCTION excursions_clear_alerts();

-- Alerts from before: the same rules applied once.
UPDATE alerts SET condition = 'cleared', cleared_at = created_at
WHERE (excursion_id IS NOT NULL AND (type = 'excursion.closed' OR NOT EXISTS (
         SELECT 1 FROM excursions e WHERE e.id = alerts.excursion_id AND e.end_ts IS NULL AND e.superseded = 0)))
   OR type IN ('device.online', 'shipment.decided')
   OR (type = 'device.offline' AND EXISTS (SELECT 1 FROM alerts o WHERE o.type = 'device.online'
         AND o.device_id = alerts.device_id AND o.created_at >= alerts.created_at));
