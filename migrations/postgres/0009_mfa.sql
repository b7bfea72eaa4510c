-- Second factors (auth/mfa.rs). The TOTP secret is sealed with the master key (purpose "totp",
-- bound to the user id); recovery codes are kept only as SHA-256 hashes.
CREATE TABLE mfa_totp (
    user_id      TEXT PRIMARY KEY REFERENCES users (id),
    secret       TEXT NOT NULL,                 -- sealed base32 secret
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT,                       -- NULL while enrolment waits for its first code
    last_step    BIGINT                        -- the last accepted time step: a code is accepted once
);

CREATE TABLE mfa_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,                   -- SHA-256 of the normalised code
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- A login that passed the password and waits for the second factor. Short-lived; not backed up.
CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,                -- SHA-256 of the mfa_token
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures   BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);
