-- Shipments (legs of a product lot's journey), their loggers, QA decisions with electronic signatures,
-- and the lot stability budget alerts already raised.
CREATE TABLE IF NOT EXISTS shipments (
  id           TEXT PRIMARY KEY,
  reference    TEXT NOT NULL UNIQUE,              -- the human reference, e.g. "SHP-2026-0042"
  origin       TEXT NOT NULL,
  destination  TEXT NOT NULL,
  product      TEXT NOT NULL,
  lot          TEXT NOT NULL,
  profile_id   TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'planned'
               CHECK (state IN ('planned', 'in_transit', 'delivered', 'under_review', 'released',
                                'quarantined', 'rejected')),
  start_ts     BIGINT,                           -- departure (series window start, inclusive)
  end_ts       BIGINT,                           -- delivery (series window end, exclusive)
  created_at   BIGINT NOT NULL,
  created_by   TEXT NOT NULL,
  updated_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS shipments_lot ON shipments (product, lot);
CREATE INDEX IF NOT EXISTS shipments_state ON shipments (state);

CREATE TABLE IF NOT EXISTS shipment_loggers (
  shipment_id  TEXT NOT NULL REFERENCES shipments (id),
  device_id    TEXT NOT NULL,
  start_ts     BIGINT,                           -- NULL: from the shipment's start
  end_ts       BIGINT,                           -- NULL: until the shipment's end
  attached_at  BIGINT NOT NULL,
  attached_by  TEXT NOT NULL,
  PRIMARY KEY (shipment_id, device_id)
);
CREATE INDEX IF NOT EXISTS shipment_loggers_device ON shipment_loggers (device_id);

-- 21 CFR 11.50/11.70: a signed decision is never edited or removed; a later one supersedes it.
CREATE TABLE IF NOT EXISTS shipment_decisions (
  id               TEXT PRIMARY KEY,
  shipment_id      TEXT NOT NULL REFERENCES shipments (id),
  meaning          TEXT NOT NULL CHECK (meaning IN ('released', 'rejected', 'quarantined')),
  reason           TEXT NOT NULL,
  signer_user_id   TEXT NOT NULL,
  signer_username  TEXT NOT NULL,
  printed_name     TEXT NOT NULL,
  signed_at        BIGINT NOT NULL,
  supersedes_id    TEXT REFERENCES shipment_decisions (id),
  supersede_reason TEXT,
  record_hash      TEXT NOT NULL,                 -- sha256 of the evaluation the signer saw (signature/record link)
  signature_hash   TEXT NOT NULL                  -- sha256 over the signature manifest and record_hash
);
CREATE INDEX IF NOT EXISTS shipment_decisions_shipment ON shipment_decisions (shipment_id, signed_at);

DROP TRIGGER IF EXISTS shipment_decisions_no_update ON shipment_decisions;
CREATE TRIGGER shipment_decisions_no_update BEFORE UPDATE ON shipment_decisions
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('signed decisions are never edited; sign a new decision that supersedes it');

DROP TRIGGER IF EXISTS shipment_decisions_no_delete ON shipment_decisions;
CREATE TRIGGER shipment_decisions_no_delete BEFORE DELETE ON shipment_decisions
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('signed decisions are never removed');
