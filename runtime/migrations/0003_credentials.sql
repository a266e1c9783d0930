-- Credentials per connection (issue 4): the secret is sealed (tenant, connection and name bound),
-- `hosts` is a JSON list of grants the credential may be sent to, `placement` says how it is
-- injected.
CREATE TABLE IF NOT EXISTS credentials (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    placement TEXT NOT NULL,
    hosts TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, connection, name)
);
