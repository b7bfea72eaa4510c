-- Passkeys (auth/passkeys). A passkey row holds what webauthn-rs needs to verify the next
-- assertion: the public key, the signature counter and the backup flags, as JSON. Nothing
-- in it is secret; it is still deleted with the account.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    credential_id TEXT NOT NULL UNIQUE,          -- base64url of the raw credential id
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,                 -- webauthn-rs Passkey (JSON)
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys (user_id, created_at);

-- The server half of a WebAuthn ceremony between its two requests, so that any instance can
-- finish what another started. Single use and short-lived; not backed up.
CREATE TABLE webauthn_ceremonies (
    token_hash TEXT PRIMARY KEY,                 -- SHA-256 of the token the client holds
    kind       TEXT NOT NULL,                    -- register | login
    user_id    TEXT REFERENCES users (id),       -- NULL for a passwordless login not yet identified
    state      TEXT NOT NULL,                    -- webauthn-rs ceremony state (JSON)
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies (expires_at);

-- The passkey half of a second-factor challenge: the assertion request it was given.
ALTER TABLE mfa_challenges ADD COLUMN webauthn_state TEXT;
