-- The audit trail as a hash chain: each record carries the hash of the one before and its own
-- hash over (previous hash, seq, time, tenant, record). Records written before this migration
-- have no hashes; verification reports them as predating the chain.
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;

-- Signed checkpoints: (seq, hash) pairs signed with a key derived from the master key, so a
-- rewritten chain or a truncated tail no longer matches them.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature TEXT NOT NULL
);
