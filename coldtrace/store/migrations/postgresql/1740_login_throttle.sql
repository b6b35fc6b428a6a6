-- The sign-in throttle's counts (coldtrace/services/login_guard.py), in the database so that every API process
-- on it shares them: a client spraying passwords through several API processes behind a load balancer meets
-- one count, not one per process. One row per key: "c:<client address or IPv6 /64>" or "u:<case-folded
-- username>" (whether or not such a user exists); rows quiet for the forget time are pruned.
CREATE TABLE IF NOT EXISTS login_throttle (
  throttle_key TEXT PRIMARY KEY,
  attempts     BIGINT NOT NULL,                   -- unforgiven attempts (admitted, not given back)
  last_ms      BIGINT NOT NULL                    -- epoch ms of the last admitted attempt
);
CREATE INDEX IF NOT EXISTS login_throttle_last ON login_throttle (last_ms);
