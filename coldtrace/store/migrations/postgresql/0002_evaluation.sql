-- Which readings of a device the excursion engine has evaluated (a rebuild is needed when it differs).
ALTER TABLE devices ADD COLUMN evaluated_ts BIGINT;
