-- Master-key rotation (issue 9). Every sealed value now names the key that sealed it (see
-- control/vault.rs), so a rotation re-seals row by row, each batch in one transaction, and a
-- rerun re-seals only the rows still under another key. This table records each rotation: which
-- keys (by id, never the key), who started it, how many values it has re-sealed (counted in the
-- same transaction as each batch), and once done the rotation checkpoint: the audit chain
-- position the old key verified (`seq`, `hash`), signed with the new key (`signature`), and the
-- old key's signature over the new key's id and that position (`link`), the chain of custody.
-- (0012 is taken by another change.)
CREATE TABLE key_rotations (
    id BIGINT PRIMARY KEY,
    from_key TEXT NOT NULL,
    to_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('resealing', 'done')),
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    resealed BIGINT NOT NULL,
    seq BIGINT,
    hash TEXT,
    at BIGINT,
    signature TEXT,
    link TEXT
);
-- One rotation under way at a time: a second one started meanwhile is refused.
CREATE UNIQUE INDEX key_rotations_one_under_way ON key_rotations (status) WHERE status = 'resealing';

-- The id of the key that signed each checkpoint; NULL for checkpoints signed before key ids.
ALTER TABLE audit_checkpoints ADD COLUMN key_id TEXT;
