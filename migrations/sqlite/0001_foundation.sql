-- Accounts, roles, sessions with rotating refresh tokens, and signing keys.
-- Timestamps are microseconds since the Unix epoch; booleans are nullable timestamps.

CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    email             TEXT NOT NULL,
    email_key         TEXT NOT NULL UNIQUE,   -- lowercase email: identity is case-insensitive
    name              TEXT,
    password_hash     TEXT NOT NULL,
    email_verified_at INTEGER,
    disabled_at       INTEGER,
    last_login_at     INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    builtin    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

INSERT INTO roles (name, builtin, created_at) VALUES ('admin', 1, 0), ('user', 1, 0);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,            -- slides forward on every refresh
    revoked_at   INTEGER,
    revoked_reason TEXT,
    ip           TEXT,
    user_agent   TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

-- Every refresh token a session was ever given, by SHA-256, so that a used one is recognised.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    used_at    INTEGER
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_key  TEXT NOT NULL,                -- base64url, as published in the JWKS
    private_key TEXT NOT NULL,                -- AES-256-GCM sealed with a key derived from the secret key
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
