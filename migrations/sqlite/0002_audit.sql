-- The audit log: append-only and hash-chained (the layout that is hashed is documented in
-- src/audit/chain.rs and README.md). Timestamps are microseconds since the Unix epoch.

CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,      -- position in the chain: 1, 2, 3, ... without gaps
    id              TEXT NOT NULL UNIQUE,     -- UUIDv7
    at              INTEGER NOT NULL,
    actor_id        TEXT,                     -- the authenticated user; NULL: the system
    action          TEXT NOT NULL,
    target_type     TEXT,
    target_id       TEXT,
    outcome         TEXT NOT NULL,            -- success | failure
    details         TEXT NOT NULL,            -- JSON object, hashed exactly as stored
    -- Personal data, erasable: hashed through personal_digest = SHA-256 over a random salt and
    -- these three, so that clearing them and the salt keeps the chain verifiable.
    ip              TEXT,
    user_agent      TEXT,
    personal        TEXT,                     -- JSON object (e.g. the email of a failed login)
    personal_salt   TEXT,
    personal_digest TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);

CREATE INDEX audit_log_by_at ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, at);
CREATE INDEX audit_log_by_target ON audit_log (target_type, target_id);

-- The end of the chain, HMAC-signed. Every append updates this one row, which serialises
-- appends (on PostgreSQL the row lock is held until commit).
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL                   -- empty only before the first entry
);

INSERT INTO audit_head (id, seq, hash, signature)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '');

-- Where the chain starts after pruning: the last pruned entry, HMAC-signed.
CREATE TABLE audit_checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    at        INTEGER NOT NULL,
    signature TEXT NOT NULL                   -- empty only while nothing was pruned
);

INSERT INTO audit_checkpoint (id, seq, hash, at, signature)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, '');
