-- Keyed audit hashes (issue 14): a record with key_id holds HMAC-SHA256(key, content + prev_hash + key_id)
-- with a key kept outside the database (coldtrace/audit_keys.py); key_id is the key's public fingerprint.
-- Records written before keying began have key_id NULL and keep their plain SHA-256 hash; the key file (or
-- COLDTRACE_AUDIT__KEYED_FROM) names the first id that must be keyed, so an unkeyed record after it is a
-- rewrite. ALTER TABLE does not fire the append-only triggers and changes no existing row.
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
