-- The excursion alert stream (coldtrace/alert_stream.py): per excursion, the revision number of the last
-- alert that announced it and the state that alert announced. Written in the same transaction as the
-- excursion and its alerts, so alert ids derived from (excursion, revision) stay idempotent across
-- redelivery and restarts, and the next change is diffed against what people were last told.
CREATE TABLE IF NOT EXISTS excursion_alert_state (
  excursion_id TEXT PRIMARY KEY,
  revision     BIGINT NOT NULL,                -- alerts announced so far (1, 2, 3...)
  state        TEXT NOT NULL,                   -- JSON: start/end/peak/duration/degree_minutes/alarm/superseded
  updated_at   BIGINT NOT NULL
);

-- Databases from before the revision numbers: their device excursions were announced by content-derived
-- ids; take the stored state as announced (revision = the number of its alerts), so nothing is re-raised.
INSERT INTO excursion_alert_state (excursion_id, revision, state, updated_at)
SELECT e.id, (SELECT COUNT(*) FROM alerts a WHERE a.excursion_id = e.id),
       json_build_object('start_ts', e.start_ts, 'end_ts', e.end_ts, 'peak_c', e.peak_c, 'duration_ms', e.duration_ms,
                         'degree_minutes', e.degree_minutes, 'alarm_ts', e.alarm_ts, 'alarm_kind', e.alarm_kind,
                         'superseded', e.superseded <> 0,
                         'alarm_announced', EXISTS (SELECT 1 FROM alerts a WHERE a.excursion_id = e.id
                                                    AND a.type = 'excursion.alarm'))::text,
       e.updated_at
FROM excursions e
WHERE e.shipment_id IS NULL AND EXISTS (SELECT 1 FROM alerts a WHERE a.excursion_id = e.id)
ON CONFLICT (excursion_id) DO NOTHING;
