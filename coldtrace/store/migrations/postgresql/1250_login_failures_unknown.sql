-- Failed sign-ins for usernames that do not exist: counted per window and client address instead of one
-- audit record each (an unauthenticated flood must not grow the permanent audit trail). Each ended window
-- becomes one audit record `auth.login_failed_unknown` (coldtrace.auth.flush_unknown_failures) and its rows
-- are removed; the open window stays here until then, so nothing is lost across a restart.
CREATE TABLE IF NOT EXISTS login_failures_unknown (
  window_start BIGINT NOT NULL,                  -- epoch ms, multiple of the window length
  client       TEXT NOT NULL,                     -- client address as seen through the trusted proxies
  attempts     BIGINT NOT NULL,
  first_ts     BIGINT NOT NULL,
  last_ts      BIGINT NOT NULL,
  PRIMARY KEY (window_start, client)
);
