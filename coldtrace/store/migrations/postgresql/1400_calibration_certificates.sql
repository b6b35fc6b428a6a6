-- Calibration certificates per ISO/IEC 17025:2017 7.8 (issue 16): what the session and the devices need
-- for a complete certificate, the "performed by" electronic signature of a session, and the issued
-- certificate revisions (each frozen at issue with its "approved by" signature; never edited or removed).

-- 7.8.2.1 e, f, and 7.8.4.1 a: customer, place of calibration, environmental conditions
ALTER TABLE calibration_sessions ADD COLUMN customer TEXT;
ALTER TABLE calibration_sessions ADD COLUMN location TEXT;
ALTER TABLE calibration_sessions ADD COLUMN ambient_c DOUBLE PRECISION;
ALTER TABLE calibration_sessions ADD COLUMN ambient_rh_pct DOUBLE PRECISION;

-- 7.8.2.1 e: unambiguous identification of the item (make, model, serial) besides our device id; for a
-- reference, the laboratory that issued its certificate (traceability, 7.8.4.1 a / 6.5)
ALTER TABLE device_calibration ADD COLUMN make TEXT;
ALTER TABLE device_calibration ADD COLUMN model TEXT;
ALTER TABLE device_calibration ADD COLUMN serial_number TEXT;
ALTER TABLE device_calibration ADD COLUMN calibrated_by TEXT;

-- "Performed by": the person responsible for the measurements signs the session once it is completed
-- (password re-entered, 21 CFR 11.200); bound to the session's results by record_hash.
CREATE TABLE IF NOT EXISTS calibration_signatures (
  id               TEXT PRIMARY KEY,
  session_id       TEXT NOT NULL REFERENCES calibration_sessions (id),
  role             TEXT NOT NULL CHECK (role IN ('performed')),
  meaning          TEXT NOT NULL,
  signer_user_id   TEXT NOT NULL,
  signer_username  TEXT NOT NULL,
  printed_name     TEXT NOT NULL,
  signed_at        BIGINT NOT NULL,
  record_hash      TEXT NOT NULL,
  signature_hash   TEXT NOT NULL,
  UNIQUE (session_id, role)
);

-- One row per issued revision of a certificate (number = CT-<session>-<device>). The body is everything the
-- certificate states, frozen at issue (so the issue date and every number stay the same on each download);
-- the "approved by" signature is the act of issuing. A re-issue is a new revision that states what changed.
CREATE TABLE IF NOT EXISTS calibration_certificates (
  number           TEXT NOT NULL,
  revision         BIGINT NOT NULL,
  session_id       TEXT NOT NULL REFERENCES calibration_sessions (id),
  device_id        TEXT NOT NULL,
  issued_at        BIGINT NOT NULL,
  approver_user_id TEXT NOT NULL,
  approver_username TEXT NOT NULL,
  approver_name    TEXT NOT NULL,
  changes          TEXT,                            -- revision > 1: what changed and why
  body             TEXT NOT NULL,                   -- JSON of the certificate's content
  body_hash        TEXT NOT NULL,                   -- sha256 of body
  signature_hash   TEXT NOT NULL,                   -- sha256 over the approval manifest and body_hash
  PRIMARY KEY (number, revision)
);
CREATE INDEX IF NOT EXISTS calibration_certificates_session ON calibration_certificates (session_id, device_id);

DROP TRIGGER IF EXISTS calibration_signatures_no_update ON calibration_signatures;
CREATE TRIGGER calibration_signatures_no_update BEFORE UPDATE ON calibration_signatures
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('signatures are never edited');
DROP TRIGGER IF EXISTS calibration_signatures_no_delete ON calibration_signatures;
CREATE TRIGGER calibration_signatures_no_delete BEFORE DELETE ON calibration_signatures
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('signatures are never removed');
DROP TRIGGER IF EXISTS calibration_certificates_no_update ON calibration_certificates;
CREATE TRIGGER calibration_certificates_no_update BEFORE UPDATE ON calibration_certificates
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('an issued certificate is never edited; issue a new revision');
DROP TRIGGER IF EXISTS calibration_certificates_no_delete ON calibration_certificates;
CREATE TRIGGER calibration_certificates_no_delete BEFORE DELETE ON calibration_certificates
  FOR EACH ROW EXECUTE FUNCTION coldtrace_refuse('an issued certificate is never removed');
