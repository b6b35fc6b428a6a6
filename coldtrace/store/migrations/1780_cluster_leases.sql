-- Issue 15 step 3: several ColdTrace processes on one database.
-- A delivery attempt is leased by one notifier (lease_holder until lease_expires_at, = next_attempt_at while
-- it runs): only that notifier records the attempt's outcome, and a notifier killed mid-attempt lets the
-- lease expire so another one sends it again. Each attempt says which notifier made it (sent_by).
ALTER TABLE webhook_deliveries ADD COLUMN lease_holder TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE webhook_attempts ADD COLUMN sent_by TEXT;

-- Named leases of the cluster, e.g. 'clock-tick': the leader that runs the clock tick (escalation, device
-- health, calibration, shipments) holds it until expires_at and renews it every tick; once it has expired
-- any process takes it over. term counts the changes of holder (a fencing number for logs and checks).
CREATE TABLE IF NOT EXISTS cluster_leases (
  name        TEXT PRIMARY KEY,
  holder      TEXT NOT NULL,
  term        INTEGER NOT NULL,
  acquired_at INTEGER NOT NULL,
  renewed_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL
);
