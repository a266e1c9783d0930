-- Approval policy per connection: per-operation risk raises and the lowest risk that waits for
-- an approver, as JSON; NULL takes the defaults.
ALTER TABLE connections ADD COLUMN approval_policy TEXT;

-- Approval requests. Every change of status is one conditional UPDATE, so two approvers, or two
-- processes resuming after a crash, cannot both win: an action runs at most once, and an
-- approved one that has not started runs exactly once.
CREATE TABLE approvals (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    connection TEXT NOT NULL,
    connector_digest TEXT NOT NULL,
    operation TEXT NOT NULL,
    -- The exact params, sealed with the master key (bound to tenant, connection and id).
    params_sealed BYTEA NOT NULL,
    -- SHA-256 over tenant, connection, digest, operation and params: what was approved.
    action_hash TEXT NOT NULL,
    risk TEXT NOT NULL,
    rationale TEXT,
    -- The requester, whose identity the action runs with.
    requested_by TEXT NOT NULL,
    requester_kind TEXT NOT NULL,
    requester_role TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'executing', 'executed', 'failed')),
    decided_by TEXT,
    decided_at BIGINT,
    reason TEXT,
    -- While executing: until when the executing process holds it.
    lease_until BIGINT,
    finished_at BIGINT,
    -- The output, sealed; or the error.
    output_sealed BYTEA,
    error TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX approvals_by_status ON approvals (status, tenant);
