-- Airlock state store, version 1. Written to run unchanged on SQLite and PostgreSQL: BYTEA is a
-- blob in both (SQLite stores blobs as given), timestamps are Unix milliseconds in BIGINT, JSON is
-- TEXT, and sequence numbers are assigned by the store inside a transaction.

CREATE TABLE IF NOT EXISTS components (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    bytes BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS connectors (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES components (digest),
    manifest TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id, version)
);
CREATE INDEX IF NOT EXISTS connectors_by_digest ON connectors (tenant, digest);

CREATE TABLE IF NOT EXISTS connector_history (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    connector TEXT NOT NULL,
    version TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX IF NOT EXISTS connector_history_by_connector ON connector_history (tenant, connector, seq);

CREATE TABLE IF NOT EXISTS connections (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    connector TEXT NOT NULL,
    -- NULL: follow the latest registered version.
    connector_version TEXT,
    config_sealed BYTEA NOT NULL,
    status TEXT NOT NULL,
    allowed_operations TEXT,
    allowed_objects TEXT,
    required_roles TEXT NOT NULL,
    writes_enabled BOOLEAN NOT NULL,
    limits TEXT NOT NULL,
    last_test_at BIGINT,
    last_test_ok BOOLEAN,
    last_test_message TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE IF NOT EXISTS agent_grants (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    agent TEXT NOT NULL,
    operation TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, connection, agent, operation)
);

CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, seq);

CREATE TABLE IF NOT EXISTS keyvalue (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, connection, bucket, key)
);
