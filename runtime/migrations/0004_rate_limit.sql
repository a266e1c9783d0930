-- Invocations per minute allowed on a connection (the seeds' queries_per_minute); NULL: no limit.
ALTER TABLE connections ADD COLUMN queries_per_minute BIGINT;
