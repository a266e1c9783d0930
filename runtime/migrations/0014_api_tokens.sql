-- API tokens for the served control plane (HTTP API, MCP): a user's or an agent's bearer
-- token. Only a hash of the secret is kept; the token's id is public and names it in lists,
-- audit records and revocations.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'agent')),
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    label TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant, created_at);
