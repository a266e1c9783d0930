-- Circuit breakers per tenant, connection and origin, shared by every process serving the
-- connection and kept across restarts. `until_ms`: for `open`, when one probe may go; for
-- `half-open`, when the probe's lease ends (a prober that died frees it then).
CREATE TABLE circuit_breakers (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half-open')),
    until_ms BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, connection, origin)
);
