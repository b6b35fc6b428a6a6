-- The insert trigger of SQLite's 0900 doubled the cost of storing a reading; SQLite drops it here. The
-- PostgreSQL schema never had it (the reading store folds each batch into the rollup: coldtrace/store/rollup.py
-- record_inserts), so there is nothing to do: the file exists so both dialects apply the same migrations.
SELECT 1;
