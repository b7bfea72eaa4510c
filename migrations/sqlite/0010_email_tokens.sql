-- One-time tokens sent by email (auth/email_flows.rs): email verification and password reset.
-- Only the SHA-256 of a token is kept. A token is bound to the address it was sent to (a token
-- for an old address verifies nothing) and a reset token to the password it may replace (any
-- password change kills it). Short-lived; not backed up; erased with the account.
CREATE TABLE email_tokens (
    token_hash    TEXT PRIMARY KEY,             -- SHA-256 of the token
    purpose       TEXT NOT NULL,                -- 'verify_email' or 'password_reset'
    user_id       TEXT NOT NULL REFERENCES users (id),
    email_key     TEXT NOT NULL,                -- the address it was sent to
    password_mark TEXT,                         -- reset: SHA-256 of the password hash it may replace
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose, created_at);
