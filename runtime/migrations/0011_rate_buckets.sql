-- Rate-limit buckets per tenant and connection (the seeds' queries_per_minute), shared by every
-- process serving the connection: each `airlock invoke` is a process of its own, so a bucket kept
-- in memory would start full every time. `tokens` as of `at_ms`; they refill continuously.
CREATE TABLE rate_buckets (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    per_minute BIGINT NOT NULL,
    tokens REAL NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, connection)
);
