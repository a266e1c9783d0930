-- Protection state that every process serving a connection shares (issue 9): a breaker's
-- consecutive failures counted across processes, so that N processes failing against one
-- upstream open its circuit as one would; and OAuth2 access tokens, sealed, with a lease so
-- that one process at a time asks the token endpoint.
ALTER TABLE circuit_breakers ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;

CREATE TABLE oauth_tokens (
    tenant TEXT NOT NULL,
    connection TEXT NOT NULL,
    credential TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- The access token sealed by the vault; NULL until one was fetched.
    token_sealed BLOB,
    -- Unix ms after which the token is refreshed.
    refresh_at_ms BIGINT NOT NULL,
    -- Unix ms until which one process holds the right to fetch a token.
    lease_until_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, connection, credential, version)
);
