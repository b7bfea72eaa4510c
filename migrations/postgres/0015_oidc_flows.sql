-- The OpenID Connect flows (oidc/): browser sessions, grants, authorization codes, consents.

-- A browser session (logged in on our pages) is a session with a cookie: browser_token_hash
-- is the SHA-256 hex of that cookie. A grant (tokens a client got through the code flow) is a
-- session with client_id set, a child of the browser session that authorized it (parent_id),
-- so that ending the browser session ends its grants too. auth_time is when the user last
-- authenticated (microseconds, like every time here), for max_age and the ID token.
ALTER TABLE sessions ADD COLUMN client_id TEXT REFERENCES oidc_clients (client_id) ON DELETE CASCADE;
ALTER TABLE sessions ADD COLUMN parent_id TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT;
ALTER TABLE sessions ADD COLUMN auth_time BIGINT;
ALTER TABLE sessions ADD COLUMN browser_token_hash TEXT;
CREATE UNIQUE INDEX sessions_by_browser_token ON sessions (browser_token_hash);
CREATE INDEX sessions_by_parent ON sessions (parent_id);
CREATE INDEX sessions_by_client ON sessions (client_id);

-- Authorization requests waiting for the user to log in or consent; params is the validated
-- request as JSON. Short-lived.
CREATE TABLE oidc_requests (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES oidc_clients (client_id) ON DELETE CASCADE,
    params     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_requests_by_expiry ON oidc_requests (expires_at);

-- Authorization codes by SHA-256, single use. A used code is kept until it expires with the
-- grant it produced, so that a second use can revoke that grant (RFC 6749 §4.1.2).
CREATE TABLE oidc_codes (
    code_hash          TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL REFERENCES oidc_clients (client_id) ON DELETE CASCADE,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    browser_session_id TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    code_challenge     TEXT,                          -- S256 only
    auth_time          BIGINT NOT NULL,
    mfa_method         TEXT,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT,
    grant_session_id   TEXT
);
CREATE INDEX oidc_codes_by_expiry ON oidc_codes (expires_at);

-- What a user allowed a client to see; a request within these scopes skips the consent page.
CREATE TABLE oidc_consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oidc_clients (client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Revoked client_credentials access tokens (they have no session to revoke), until they expire.
CREATE TABLE oidc_revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
